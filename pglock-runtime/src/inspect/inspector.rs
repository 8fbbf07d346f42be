//! Server-side views of locks and the sessions behind them: the `Inspector` and
//! its filters.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use tokio_postgres::types::Type;

use crate::error::Error;
use crate::inspect::tree::{blocking_tree, BlockingNode};
use crate::key::LockKey;
use crate::lock::holders::advisory_holders;
use crate::lock::{names, schema};
use crate::pool::connection::Connection;
use crate::pool::registry::DEFAULT_ALIAS;
use crate::rows::{Backend, BlockingPair, Holder, LockInfo};
use crate::sql;

/// Which locks to list. Every filter is optional; all given ones must match.
///
/// ```
/// use std::time::Duration;
/// use pglock_runtime::LockFilter;
///
/// let waiting_long = LockFilter::new().granted(false).min_duration(Duration::from_secs(5));
/// let on_accounts = LockFilter::new().relation("public.accounts").limit(20);
/// # let _ = (waiting_long, on_accounts);
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct LockFilter {
    pids: Vec<i32>,
    granted: Option<bool>,
    relation: Option<String>,
    key: Option<LockKey>,
    locktype: Option<String>,
    min_duration: Option<Duration>,
    application_name: Option<String>,
    limit: Option<i64>,
}

impl LockFilter {
    /// No filter: every lock of the database.
    pub fn new() -> LockFilter {
        LockFilter::default()
    }

    /// Only these backends.
    pub fn pids(mut self, pids: impl IntoIterator<Item = i32>) -> LockFilter {
        self.pids = pids.into_iter().collect();
        self
    }

    /// Only held (`true`) or only awaited (`false`) locks.
    pub fn granted(mut self, granted: bool) -> LockFilter {
        self.granted = Some(granted);
        self
    }

    /// Only locks on this relation (a name as `to_regclass` reads it:
    /// `accounts`, `public.accounts`, `"Odd Name"`).
    pub fn relation(mut self, name: impl Into<String>) -> LockFilter {
        self.relation = Some(name.into());
        self
    }

    /// Only this advisory key.
    pub fn key(mut self, key: LockKey) -> LockFilter {
        self.key = Some(key);
        self
    }

    /// Only this lock type (`advisory`, `relation`, `transactionid`, …).
    pub fn locktype(mut self, locktype: impl Into<String>) -> LockFilter {
        self.locktype = Some(locktype.into());
        self
    }

    /// Only locks waited for, or held, at least this long ([`LockInfo::duration`]).
    pub fn min_duration(mut self, d: Duration) -> LockFilter {
        self.min_duration = Some(d);
        self
    }

    /// Only backends with this `application_name`.
    pub fn application_name(mut self, name: impl Into<String>) -> LockFilter {
        self.application_name = Some(name.into());
        self
    }

    /// At most this many rows.
    pub fn limit(mut self, n: usize) -> LockFilter {
        self.limit = Some(i64::try_from(n).unwrap_or(i64::MAX));
        self
    }
}

/// Server-side views of locks and the sessions behind them, for one database
/// alias: django-pglock's `PGLock` / `BlockedPGLock` and django-mysql's lock
/// look-ups, for every lock type.
///
/// Each call checks out its own connection of the alias (never a scope
/// connection), and the inspecting session never lists itself.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// use pglock_runtime::{inspect, LockFilter};
///
/// for pair in inspect().blocking().await? {
///     println!("{} waits for {}", pair.blocked.pid, pair.blocking.pid);
/// }
/// let waiting = inspect().locks(&LockFilter::new().granted(false)).await?;
/// let stuck: Vec<i32> = waiting.iter().map(|l| l.pid()).collect();
/// let cancelled = inspect().cancel(&stuck).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Inspector {
    alias: Cow<'static, str>,
}

/// An [`Inspector`] of the `"default"` alias.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// let held = pglock_runtime::inspect().advisory_locks().await?;
/// let reports = pglock_runtime::inspect().using("reports").blocking().await?;
/// # Ok(()) }
/// ```
pub fn inspect() -> Inspector {
    Inspector {
        alias: Cow::Borrowed(DEFAULT_ALIAS),
    }
}

impl Inspector {
    /// Inspects a registered alias instead of `"default"`.
    pub fn using(mut self, alias: impl Into<Cow<'static, str>>) -> Inspector {
        self.alias = alias.into();
        self
    }

    async fn conn(&self) -> Result<Connection, Error> {
        Connection::checkout(&self.alias).await
    }

    /// The locks of the database matching `filter`, waiting ones first, then the
    /// longest-held.
    ///
    /// # Errors
    ///
    /// Checkout and query errors.
    pub async fn locks(&self, filter: &LockFilter) -> Result<Vec<LockInfo>, Error> {
        let conn = self.conn().await?;
        fetch_locks(&conn, filter).await
    }

    /// Every advisory lock held right now (django-mysql's `held_with_prefix`,
    /// for numeric keys).
    ///
    /// # Errors
    ///
    /// Checkout and query errors.
    pub async fn advisory_locks(&self) -> Result<Vec<LockInfo>, Error> {
        self.locks(&LockFilter::new().locktype("advisory").granted(true))
            .await
    }

    /// The sessions holding `key` (django-mysql's `holding_connection_id`).
    ///
    /// # Errors
    ///
    /// Checkout and query errors.
    pub async fn holders(&self, key: LockKey) -> Result<Vec<Holder>, Error> {
        let conn = self.conn().await?;
        let mut holders = advisory_holders(conn.exec(), key).await?;
        if !holders.is_empty() {
            let name = self.name_on(&conn, key).await;
            for h in &mut holders {
                h.lock_name.clone_from(&name);
            }
        }
        Ok(holders)
    }

    /// The name of `key`: the string it was made from, as this process or
    /// another one recorded it in pglock's schema; `None` for numeric keys and
    /// names never recorded.
    ///
    /// # Errors
    ///
    /// Checkout errors.
    pub async fn name(&self, key: LockKey) -> Result<Option<String>, Error> {
        let conn = self.conn().await?;
        Ok(self.name_on(&conn, key).await)
    }

    async fn name_on(&self, conn: &Connection, key: LockKey) -> Option<String> {
        let schema_name = conn.config().schema_name();
        names::lookup(conn.exec(), schema_name, [key])
            .await
            .remove(&key)
    }

    /// The advisory locks held right now whose name starts with `prefix`, by
    /// name, each with its holders (django-mysql's `held_with_prefix`). Only
    /// names recorded in pglock's schema are seen: those of string keys used by
    /// pglock in any process.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), pglock_runtime::Error> {
    /// for (name, holders) in pglock_runtime::inspect().held_with_prefix("billing.").await? {
    ///     println!("{name}: held by {:?}", holders.iter().map(|h| h.pid).collect::<Vec<_>>());
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// Checkout and query errors (none when pglock's schema is not installed:
    /// then no name was recorded, and the map is empty).
    pub async fn held_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<BTreeMap<String, Vec<Holder>>, Error> {
        let conn = self.conn().await?;
        let statements = schema::statements(conn.config().schema_name());
        let rows = match conn
            .exec()
            .query(&statements.held_with_prefix, &[(&prefix, Type::TEXT)])
            .await
        {
            Ok(rows) => rows,
            Err(e) if schema::is_missing(&e) => return Ok(BTreeMap::new()),
            Err(e) => return Err(schema::read_error(e, conn.config().schema_name())),
        };
        let mut held: BTreeMap<String, Vec<Holder>> = BTreeMap::new();
        for row in &rows {
            let name: String = row.get(10);
            if let Some(mut h) = Holder::from_row(row) {
                h.lock_name = Some(name.clone());
                held.entry(name).or_default().push(h);
            }
        }
        Ok(held)
    }

    /// Whether anyone holds `key` right now. Only a snapshot: acting on it races
    /// with other sessions, so take the lock with `timeout = 0` instead of checking
    /// first.
    ///
    /// # Errors
    ///
    /// Checkout and query errors.
    pub async fn is_held(&self, key: LockKey) -> Result<bool, Error> {
        Ok(!self.holders(key).await?.is_empty())
    }

    /// Blocked → blocking pairs.
    ///
    /// # Errors
    ///
    /// Checkout and query errors.
    pub async fn blocking(&self) -> Result<Vec<BlockingPair>, Error> {
        let conn = self.conn().await?;
        blocking_pairs(&conn).await
    }

    /// The blocking tree: roots are backends that block others without waiting
    /// themselves (or, in a cycle, the lowest pid of the cycle).
    ///
    /// # Errors
    ///
    /// Checkout and query errors.
    pub async fn tree(&self) -> Result<Vec<BlockingNode>, Error> {
        Ok(blocking_tree(&self.blocking().await?))
    }

    /// Cancels the current query of each backend (`pg_cancel_backend`). Returns
    /// the pids actually signalled.
    ///
    /// # Errors
    ///
    /// Checkout and query errors, including permission errors.
    pub async fn cancel(&self, pids: &[i32]) -> Result<Vec<i32>, Error> {
        self.signal(sql::CANCEL, pids).await
    }

    /// Terminates each backend (`pg_terminate_backend`), which releases every
    /// lock it holds. Returns the pids actually signalled.
    ///
    /// # Errors
    ///
    /// Checkout and query errors, including permission errors.
    pub async fn terminate(&self, pids: &[i32]) -> Result<Vec<i32>, Error> {
        self.signal(sql::TERMINATE, pids).await
    }

    async fn signal(&self, sql: &'static str, pids: &[i32]) -> Result<Vec<i32>, Error> {
        if pids.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.conn().await?;
        let rows = conn.exec().query(sql, &[(&pids, Type::INT4_ARRAY)]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

async fn fetch_locks(conn: &Connection, f: &LockFilter) -> Result<Vec<LockInfo>, Error> {
    let pids: Option<&Vec<i32>> = (!f.pids.is_empty()).then_some(&f.pids);
    let ids = f.key.map(LockKey::pg_locks_ids);
    let (c, o, s) = (ids.map(|i| i.0), ids.map(|i| i.1), ids.map(|i| i.2));
    let min = f.min_duration.map(|d| d.as_secs_f64());
    let limit = f.limit.unwrap_or(i64::MAX);
    let rows = conn
        .query(
            sql::LOCKS,
            &[
                &pids,
                &f.granted,
                &f.relation,
                &s,
                &c,
                &o,
                &f.application_name,
                &f.locktype,
                &min,
                &limit,
            ],
        )
        .await
        .map_err(Error::from_pg)?;
    let mut locks: Vec<LockInfo> = rows.iter().map(LockInfo::from_row).collect();
    let schema_name = conn.config().schema_name();
    let names = names::lookup(conn.exec(), schema_name, locks.iter().filter_map(|l| l.key)).await;
    for l in &mut locks {
        l.name = l.key.and_then(|k| names.get(&k).cloned());
    }
    Ok(locks)
}

async fn blocking_pairs(conn: &Connection) -> Result<Vec<BlockingPair>, Error> {
    let pairs: Vec<(i32, i32)> = conn
        .exec()
        .query(sql::BLOCKING_PAIRS, &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let mut pids: Vec<i32> = pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
    pids.sort_unstable();
    pids.dedup();
    let backends: HashMap<i32, Backend> = conn
        .exec()
        .query(sql::BACKENDS, &[(&pids, Type::INT4_ARRAY)])
        .await?
        .iter()
        .map(|r| {
            let b = Backend::from_row(r);
            (b.pid, b)
        })
        .collect();
    let waits: HashMap<i32, LockInfo> = fetch_locks(
        conn,
        &LockFilter::new()
            .pids(pairs.iter().map(|p| p.0))
            .granted(false),
    )
    .await?
    .into_iter()
    .map(|l| (l.pid(), l))
    .collect();
    Ok(pairs
        .into_iter()
        .filter_map(|(w, b)| {
            Some(BlockingPair {
                blocked: backends.get(&w)?.clone(),
                waiting_for: waits.get(&w).cloned(),
                blocking: backends.get(&b)?.clone(),
            })
        })
        .collect())
}
