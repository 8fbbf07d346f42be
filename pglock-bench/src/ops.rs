//! The single-caller operations, each next to its baseline: a raw client's
//! statements, the pool, and pglock's builders and annotated functions on one
//! alias.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use pglock_runtime::{advisory, connection_for, Error};
use pglock_testkit::observe::session;
use tokio_postgres::{Client, Statement};

use crate::sample::{BoxFut, Op};
use crate::KEY;

/// The annotated functions of one alias pair, as plain function pointers.
pub(crate) struct Fns {
    empty: fn() -> BoxFut<'static, Result<(), Error>>,
    awaited: fn() -> BoxFut<'static, Result<(), Error>>,
    xact: fn() -> BoxFut<'static, Result<(), Error>>,
    skip_if_busy: fn(i64) -> BoxFut<'static, bool>,
    sync: fn() -> Result<(), Error>,
    /// `once_per = "1s"`, `timeout = 0, on_fail = skip` on a key given per call.
    once_per: fn(i64) -> BoxFut<'static, bool>,
    /// `once_per` with a slot of ~95 years on a fixed key: after its first call
    /// every call finds the lock free and the slot taken.
    already_ran: fn() -> BoxFut<'static, bool>,
    /// `slot = <expr>`, `timeout = 0, on_fail = skip`.
    slot: fn(String) -> BoxFut<'static, bool>,
    /// The same with `xact`.
    xact_slot: fn(String) -> BoxFut<'static, bool>,
}

/// Scheduled-slot keys and labels: unique per call across the whole run (both
/// aliases), so that every run-path call finds its slot free.
static SLOT_CALLS: AtomicI64 = AtomicI64::new(0);

fn next_call() -> i64 {
    SLOT_CALLS.fetch_add(1, Ordering::Relaxed)
}

/// A key no earlier call of this run used: its `once_per` slot is free.
fn fresh_key() -> i64 {
    KEY + 0x1000_0000 + next_call()
}

/// A slot label no earlier call (of this run, or of an earlier run against the
/// same cluster) used.
fn fresh_slot() -> String {
    use std::sync::OnceLock;
    static RUN: OnceLock<String> = OnceLock::new();
    let run = RUN.get_or_init(|| {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        format!("bench-{}-{}", t.as_nanos(), std::process::id())
    });
    format!("{run}-{}", next_call())
}

macro_rules! annotated {
    ($m:ident, $alias:tt, $awaited:tt) => {
        /// The measured annotated functions, on one alias.
        pub(crate) mod $m {
            use super::{BoxFut, Fns, KEY};
            use pglock_runtime::{advisory_lock, Error};

            #[advisory_lock(key = KEY + 1, using = $alias)]
            async fn empty() -> Result<(), Error> {
                Ok(())
            }

            #[advisory_lock(key = KEY + 5, using = $awaited)]
            async fn awaited() -> Result<(), Error> {
                Ok(())
            }

            #[advisory_lock(key = KEY + 2, xact, using = $alias)]
            async fn xact() -> Result<(), Error> {
                Ok(())
            }

            #[advisory_lock(key = key, timeout = 0, on_fail = skip, using = $alias)]
            async fn skip_if_busy(key: i64) -> bool {
                true
            }

            #[advisory_lock(key = KEY + 4, using = $alias)]
            fn sync() -> Result<(), Error> {
                Ok(())
            }

            #[advisory_lock(key = key, timeout = 0, on_fail = skip, once_per = "1s", using = $alias)]
            async fn once_per(key: i64) -> bool {
                true
            }

            #[advisory_lock(key = KEY + 6, timeout = 0, on_fail = skip, once_per = 3_000_000_000,
                using = $alias)]
            async fn already_ran() -> bool {
                true
            }

            #[advisory_lock(key = KEY + 7, timeout = 0, on_fail = skip, slot = slot, using = $alias)]
            async fn slot(slot: String) -> bool {
                true
            }

            #[advisory_lock(key = KEY + 8, xact, timeout = 0, on_fail = skip, slot = slot,
                using = $alias)]
            async fn xact_slot(slot: String) -> bool {
                true
            }

            pub(crate) const FNS: Fns = Fns {
                empty: || -> BoxFut<'static, _> { Box::pin(empty()) },
                awaited: || -> BoxFut<'static, _> { Box::pin(awaited()) },
                xact: || -> BoxFut<'static, _> { Box::pin(xact()) },
                skip_if_busy: |k| -> BoxFut<'static, _> { Box::pin(skip_if_busy(k)) },
                sync,
                once_per: |k| -> BoxFut<'static, _> { Box::pin(once_per(k)) },
                already_ran: || -> BoxFut<'static, _> { Box::pin(already_ran()) },
                slot: |s| -> BoxFut<'static, _> { Box::pin(slot(s)) },
                xact_slot: |s| -> BoxFut<'static, _> { Box::pin(xact_slot(s)) },
            };
        }
    };
}

annotated!(plain, "lat", "lat-awaited");
annotated!(counted, "counted", "counted-awaited");

/// What one set of operations runs against: a raw client and a pglock alias.
pub(crate) struct Env {
    raw: Client,
    select1: Statement,
    lock: Statement,
    unlock: Statement,
    /// `SELECT 1` prepared on the alias's one connection (by backend pid).
    pool_select1: tokio::sync::Mutex<Option<(i32, Statement)>>,
    alias: &'static str,
    busy_key: i64,
    fns: Fns,
}

impl Env {
    pub(crate) async fn new(raw_url: &str, alias: &'static str, busy_key: i64, fns: Fns) -> Env {
        let raw = session(raw_url, "bench-raw").await;
        // The first scheduled call of the alias installs pglock's schema (or
        // checks it): not what the rows measure. This one also takes the
        // long slot, so that every later call of `already_ran` skips.
        (fns.already_ran)().await;
        Env {
            select1: raw.prepare("SELECT 1").await.unwrap(),
            lock: raw.prepare("SELECT pg_advisory_lock($1)").await.unwrap(),
            unlock: raw.prepare("SELECT pg_advisory_unlock($1)").await.unwrap(),
            pool_select1: tokio::sync::Mutex::new(None),
            raw,
            alias,
            busy_key,
            fns,
        }
    }

    /// Every single-caller operation, by row name.
    pub(crate) fn ops(&self) -> Vec<(&'static str, Op<'_>)> {
        let e = self;
        let alias = e.alias;
        let fns = &e.fns;
        let busy = e.busy_key;
        let empty = fns.empty;
        let awaited = fns.awaited;
        let xact = fns.xact;
        let skip = fns.skip_if_busy;
        let sync = fns.sync;
        let once_per = fns.once_per;
        let already_ran = fns.already_ran;
        let slot = fns.slot;
        let xact_slot = fns.xact_slot;
        vec![
            (
                "raw SELECT 1",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        e.raw.query_one(&e.select1, &[]).await.unwrap();
                        None
                    })
                }) as Op<'_>,
            ),
            (
                "pool SELECT 1",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        let c = connection_for(alias).await.unwrap();
                        let mut cached = e.pool_select1.lock().await;
                        let stmt = match &*cached {
                            Some((pid, s)) if *pid == c.backend_pid() => s.clone(),
                            _ => {
                                let s = c.prepare("SELECT 1").await.unwrap();
                                *cached = Some((c.backend_pid(), s.clone()));
                                s
                            }
                        };
                        let t = Instant::now();
                        c.query_one(&stmt, &[]).await.unwrap();
                        let d = t.elapsed();
                        drop(c);
                        settle(alias).await;
                        Some(d)
                    })
                }),
            ),
            (
                "pool checkout + return",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        let t = Instant::now();
                        drop(connection_for(alias).await.unwrap());
                        let d = t.elapsed();
                        settle(alias).await;
                        Some(d)
                    })
                }),
            ),
            (
                "raw lock+unlock",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        let k = KEY + 10;
                        e.raw.query_one(&e.lock, &[&k]).await.unwrap();
                        e.raw.query_one(&e.unlock, &[&k]).await.unwrap();
                        None
                    })
                }),
            ),
            (
                "pglock acquire+release",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        let g = advisory(KEY + 11).using(alias).acquire().await.unwrap();
                        g.release().await.unwrap();
                        None
                    })
                }),
            ),
            (
                "pglock run(async {})",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        advisory(KEY + 14).using(alias).run(async {}).await.unwrap();
                        None
                    })
                }),
            ),
            (
                "annotated async fn",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        empty().await.unwrap();
                        None
                    })
                }),
            ),
            (
                "annotated async fn, awaited release",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        awaited().await.unwrap();
                        None
                    })
                }),
            ),
            (
                "annotated xact",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        xact().await.unwrap();
                        None
                    })
                }),
            ),
            (
                "timeout = 0, free",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        assert!(skip(KEY + 12).await);
                        None
                    })
                }),
            ),
            (
                "timeout = 0, busy (skip)",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        assert!(!skip(busy).await);
                        None
                    })
                }),
            ),
            (
                "no_wait, busy (raise, names holders)",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        let err = advisory(busy).using(alias).no_wait().acquire().await;
                        assert!(err.expect_err("busy").is_busy());
                        None
                    })
                }),
            ),
            (
                "annotated sync fn (block_in_place)",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        tokio::task::block_in_place(|| sync().unwrap());
                        None
                    })
                }),
            ),
            (
                "once_per, busy (skip)",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        assert!(!once_per(busy).await);
                        None
                    })
                }),
            ),
            (
                "once_per, already ran (skip)",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        assert!(!already_ran().await, "the slot was taken in Env::new");
                        None
                    })
                }),
            ),
            (
                "once_per, run (slot free)",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        let k = fresh_key();
                        assert!(once_per(k).await, "a fresh key's slot is free");
                        None
                    })
                }),
            ),
            (
                "slot = <expr>, run",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        let s = fresh_slot();
                        assert!(slot(s).await, "a fresh slot is free");
                        None
                    })
                }),
            ),
            (
                "xact + slot, run",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        let s = fresh_slot();
                        assert!(xact_slot(s).await, "a fresh slot is free");
                        None
                    })
                }),
            ),
            (
                "no_wait().slot(..).run(async {})",
                Box::new(move || -> BoxFut<'_, Option<Duration>> {
                    Box::pin(async move {
                        let s = fresh_slot();
                        advisory(KEY + 9)
                            .using(alias)
                            .no_wait()
                            .slot(s)
                            .run(async {})
                            .await
                            .unwrap();
                        None
                    })
                }),
            ),
        ]
    }
}

/// Waits until every connection of `alias` is back in its pool (after a checkout
/// whose return waits for a server-side check), so that the next operation does
/// not pay for it.
pub(crate) async fn settle(alias: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match pglock_runtime::pool_status(alias) {
            Some(s) if s.open == s.idle => return,
            _ => tokio::task::yield_now().await,
        }
    }
    panic!("the connections of alias `{alias}` did not come back to the pool");
}
