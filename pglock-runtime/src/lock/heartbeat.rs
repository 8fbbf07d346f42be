//! Lock-loss detection: while a lock is held on a pooled connection, pglock checks
//! every interval, on that session, that the session is alive and answering
//! (within the alias's answer deadline: a prepared `SELECT 1`) and, for a
//! transaction-level lock on a connection handed to user code, that its
//! transaction is still open.
//!
//! That is all a held lock needs, without reading `pg_locks` (whose cost grows
//! with every lock held on the server): the server releases a session-level
//! advisory lock only when the session ends or the session itself unlocks it,
//! and a transaction-level one only when its transaction ends. While only
//! pglock's statements run on the session, the session never unlocks behind
//! pglock's back. Once user code has the connection (`connection()` in the body,
//! `AdvisoryGuard::client`), its own SQL could (`pg_advisory_unlock` of the key,
//! `pg_advisory_unlock_all()`, `DISCARD ALL`): the heartbeat does not see that,
//! the release does (the unlock returns `false`: `ErrorKind::LostBeforeRelease`).
//!
//! Each alias has one board of held locks (kept here, by alias name: the pool
//! knows nothing of heartbeats) and one ticker task on pglock's runtime that
//! looks at the board a few times per interval and checks the locks that are
//! due. Taking a lock only puts an entry on the board and releasing it takes the
//! entry off: no task, no timer and no thread hop per lock, so locks held for less
//! than an interval cost (almost) nothing.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_postgres::types::Type;

use crate::error::{Error, ErrorKind};
use crate::key::LockKey;
use crate::lock::txn::heartbeat_in_transaction;
use crate::metrics;
use crate::pool::connection::Connection;
use crate::wire::send_now::send_now;
use crate::{rt, sql};

/// Why a lock was found lost, once it was.
type Lost = watch::Sender<Option<Arc<str>>>;

/// Why a check found a lock lost.
type Why = Cow<'static, str>;

struct Entry {
    conn: Connection,
    key: LockKey,
    xact: bool,
    due: Instant,
    checking: bool,
    lost: Lost,
}

/// The locks held on one alias's connections, and how often to check them.
struct Board {
    every: Duration,
    state: Mutex<State>,
    ticker: OnceLock<()>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    entries: HashMap<u64, Entry>,
}

/// The board of each alias that has held a lock, by alias name. An alias is
/// never unregistered nor registered twice, so its board lives as long as it.
type Boards = RwLock<HashMap<Arc<str>, Arc<Board>>>;

fn boards() -> &'static Boards {
    static BOARDS: OnceLock<Boards> = OnceLock::new();
    BOARDS.get_or_init(Default::default)
}

impl Board {
    /// The board of `alias`, created on first use with its interval.
    fn of(alias: &str, every: Duration) -> Arc<Board> {
        if let Some(b) = boards()
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(alias)
        {
            return b.clone();
        }
        boards()
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(Arc::from(alias))
            .or_insert_with(|| {
                Arc::new(Board {
                    every,
                    state: Mutex::new(State::default()),
                    ticker: OnceLock::new(),
                })
            })
            .clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the ticker on first use. It runs for the life of the process (an
    /// alias is never unregistered) and wakes a few times per interval.
    fn ensure_ticker(self: &Arc<Board>) {
        self.ticker.get_or_init(|| {
            let board = self.clone();
            let tick = (self.every / 4).max(Duration::from_millis(5));
            rt::spawn(async move {
                let mut timer = tokio::time::interval(tick);
                timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    timer.tick().await;
                    board.check_due();
                }
            });
        });
    }

    /// Starts a check of every entry that is due and not being checked.
    fn check_due(self: &Arc<Board>) {
        let now = Instant::now();
        let mut state = self.state();
        for (&id, e) in state.entries.iter_mut() {
            if e.checking || e.due > now {
                continue;
            }
            e.checking = true;
            let (conn, xact) = (e.conn.clone(), e.xact);
            let board = self.clone();
            rt::spawn(async move {
                let why = check(&conn, xact).await;
                board.checked(id, why, &conn);
            });
        }
    }

    /// Records the outcome of a check of entry `id` (gone if released meanwhile).
    fn checked(&self, id: u64, why: Option<Why>, conn: &Connection) {
        let mut state = self.state();
        let Some(why) = why else {
            if let Some(e) = state.entries.get_mut(&id) {
                e.checking = false;
                e.due = Instant::now() + self.every;
            }
            return;
        };
        let Some(e) = state.entries.remove(&id) else {
            return;
        };
        drop(state);
        tracing::error!(target: "pglock", key = %e.key, pid = conn.backend_pid(), reason = %why,
            "advisory lock lost while held");
        let name = crate::lock::names::known(e.key);
        metrics::lost(conn.alias(), &metrics::lock_label(e.key, name.as_deref()));
        conn.discard();
        let _ = e.lost.send(Some(Arc::from(why.as_ref())));
    }
}

/// One check of a held lock: `Some(reason)` if it is lost.
///
/// Unless the body has the session (and may be running a long statement the
/// check queues behind), an answer later than the alias's answer deadline
/// counts as a loss: the path to the server is cut or the server frozen, and
/// the session is closed.
async fn check(conn: &Connection, xact: bool) -> Option<Why> {
    if conn.is_closed() {
        return Some("its connection is closed".into());
    }
    let look = async {
        // The lock is held for longer than an interval: from now on the server
        // ends the session if its client goes silent (behind a transaction
        // pooler session state is not ours to set).
        if !conn.session().has_server_timers() && !conn.session().behind_pooler() {
            let timers = server_timers(conn.answer_deadline());
            if conn
                .exec()
                .one(sql::SET_SERVER_TIMERS, &[(&timers, Type::TEXT)])
                .await
                .is_ok()
            {
                conn.session().set_server_timers(true);
            }
        }
        if xact && conn.is_exposed() {
            // User code may have ended pglock's transaction, and the lock with it.
            return heartbeat_in_transaction(conn.exec()).await;
        }
        // Only pglock's statements ran (or a session lock, which user code
        // could release only through this session: the release reports that):
        // an answer is all it takes.
        conn.exec().one(sql::HEARTBEAT, &[]).await.map(|_| true)
    };
    let answer = if conn.is_exposed() {
        look.await
    } else {
        conn.within_deadline("the heartbeat check", look).await
    };
    match answer {
        Ok(false) if xact => Some("its transaction has ended, and the lock with it".into()),
        Ok(_) => None,
        Err(e) if e.is_connection_lost() => Some(e.to_string().into()),
        // An aborted transaction, a cancelled statement: says nothing about the
        // lock; look again next time.
        Err(_) => None,
    }
}

/// The server's idle timers on a lock session: twice the client's answer
/// deadline, so that the holder always gives up first.
pub(crate) fn server_timers(deadline: Duration) -> String {
    format!("{}ms", deadline.saturating_mul(2).as_millis())
}

/// A lock on the board; taken off when dropped.
pub(crate) struct Heartbeat {
    board: Arc<Board>,
    id: u64,
    lost: watch::Receiver<Option<Arc<str>>>,
    key: LockKey,
}

impl Heartbeat {
    /// Puts `key`, held on `conn` (in a transaction when `xact`), on its alias's
    /// board, if the alias has a heartbeat. The first check is one interval from
    /// now.
    pub(crate) fn start(conn: &Connection, key: LockKey, xact: bool) -> Option<Heartbeat> {
        let board = Board::of(conn.alias(), conn.heartbeat_interval()?);
        board.ensure_ticker();
        let (tx, rx) = watch::channel(None);
        let id = {
            let mut state = board.state();
            state.next_id += 1;
            let id = state.next_id;
            state.entries.insert(
                id,
                Entry {
                    conn: conn.clone(),
                    key,
                    xact,
                    due: Instant::now() + board.every,
                    checking: false,
                    lost: tx,
                },
            );
            id
        };
        Some(Heartbeat {
            board,
            id,
            lost: rx,
            key,
        })
    }

    /// Whether the loss has been detected.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.borrow().is_some()
    }

    /// Resolves with the error once the loss is detected.
    pub(crate) async fn lost(&self) -> Error {
        let mut rx = self.lost.clone();
        // Clone out of the borrow before any other await: the future stays `Send`.
        let why = rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|v| v.clone());
        let Some(why) = why else {
            // Taken off the board without a loss: the lock is being released.
            return std::future::pending().await;
        };
        Error::new(
            ErrorKind::LockLost,
            format!("the lock was lost while held: {why}"),
        )
        .with_key(self.key)
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        let entry = self.board.state().entries.remove(&self.id);
        // The lock is being released: the session goes back to idling in the
        // pool, where the server's idle timers must not end it. Queued ahead of
        // the release, on the wire.
        if let Some(e) = &entry {
            let session = e.conn.session();
            if session.has_server_timers() {
                session.set_server_timers(false);
                send_now(session.client.batch_execute(sql::RESET_SERVER_TIMERS));
            }
        }
        // Dropped outside the lock: it may return the connection to its pool.
        drop(entry);
    }
}
