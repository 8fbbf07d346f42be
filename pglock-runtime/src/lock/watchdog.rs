//! The prioritize watchdog: while protected work runs, a task on a separate
//! connection of the same alias finds the sessions blocking the work's session
//! and cancels or terminates them, within its rules.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;
use tokio_postgres::types::Type;

use crate::error::{Error, ErrorKind};
use crate::pool::connection::Connection;
use crate::rows::Backend;
use crate::wire::session::own_pids;
use crate::{rt, sql};

/// What the watchdog does to a blocker.
///
/// ```
/// use pglock_runtime::{Prioritize, PrioritizeAction};
///
/// let gentle = Prioritize::new().action(PrioritizeAction::Cancel);
/// # let _ = gentle;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PrioritizeAction {
    /// `pg_terminate_backend`: ends the session, releasing every lock it holds.
    #[default]
    Terminate,
    /// `pg_cancel_backend`: cancels its current statement. An idle session holding
    /// a lock is not affected; a statement in a transaction rolls the transaction
    /// back.
    Cancel,
}

impl PrioritizeAction {
    fn sql(self) -> &'static str {
        match self {
            PrioritizeAction::Terminate => sql::TERMINATE,
            PrioritizeAction::Cancel => sql::CANCEL,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            PrioritizeAction::Terminate => "terminated",
            PrioritizeAction::Cancel => "cancelled",
        }
    }
}

/// What the watchdog did (or, in a dry run, would have done) to one blocker.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// let done = pglock_runtime::Prioritize::new().dry_run(true).run(async {}).await?;
/// for a in &done.actions {
///     println!("would have {:?} pid {} ({})", a.action, a.backend.pid, a.backend.query);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockerAction {
    /// The blocker.
    pub backend: Backend,
    /// What was done.
    pub action: PrioritizeAction,
    /// A dry run: nothing was signalled.
    pub dry_run: bool,
    /// Whether the server signalled the backend (false in a dry run, or if it had
    /// already gone).
    pub signalled: bool,
    /// When the watchdog acted.
    pub at: SystemTime,
}

/// What a watchdog looks for and what it spares: the state of the public
/// `Prioritize` builder, which documents each setting.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub(crate) interval: Duration,
    pub(crate) periodic: bool,
    pub(crate) action: PrioritizeAction,
    pub(crate) min_blocker_age: Option<Duration>,
    pub(crate) max_kills: Option<u32>,
    pub(crate) dry_run: bool,
    /// Not the watchdog's: the `lock_timeout` of the protected scope when it has
    /// none of its own.
    pub(crate) timeout: Option<Duration>,
    pub(crate) indirect: bool,
    pub(crate) allow_application_names: Vec<String>,
    pub(crate) deny_application_names: Vec<String>,
    pub(crate) allow_users: Vec<String>,
    pub(crate) deny_users: Vec<String>,
    /// The alias the watchdog connects through (the protected work's).
    pub(crate) alias: Cow<'static, str>,
}

impl Rules {
    /// Why `b` is spared, if it is.
    fn spares(&self, b: &Backend, own: &HashSet<i32>) -> Option<&'static str> {
        if !b.is_client() {
            return Some("not a client backend");
        }
        if own.contains(&b.pid) {
            return Some("a session of this process");
        }
        if let Some(min) = self.min_blocker_age {
            if b.held_for().is_none_or(|age| age < min) {
                return Some("younger than min_blocker_age");
            }
        }
        let app = &b.application_name;
        if !self.allow_application_names.is_empty() && !self.allow_application_names.contains(app) {
            return Some("application_name not allowed");
        }
        if self.deny_application_names.contains(app) {
            return Some("application_name denied");
        }
        let user = b.user.clone().unwrap_or_default();
        if !self.allow_users.is_empty() && !self.allow_users.contains(&user) {
            return Some("user not allowed");
        }
        if self.deny_users.contains(&user) {
            return Some("user denied");
        }
        None
    }
}

/// Where the watchdog records its actions for [`Prioritize::run`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Sink(Arc<Mutex<Vec<BlockerAction>>>);

impl Sink {
    fn push(&self, a: BlockerAction) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(a);
    }

    /// The actions recorded so far, in order.
    pub(crate) fn take(&self) -> Vec<BlockerAction> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A running watchdog.
pub(crate) struct Watchdog {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl Watchdog {
    /// Starts watching the session of `protected`.
    pub(crate) fn start(p: Rules, sink: Option<Sink>, protected: &Connection) -> Watchdog {
        let (stop, mut stopped) = oneshot::channel();
        let pid = protected.backend_pid();
        let task = rt::spawn(async move {
            let mut conn: Option<Connection> = None;
            loop {
                tokio::select! {
                    _ = &mut stopped => return Ok(()),
                    () = tokio::time::sleep(p.interval) => {}
                }
                if conn.is_none() {
                    conn = Some(Connection::checkout(&p.alias).await?);
                }
                // A tick in flight is finished even if stop comes meanwhile: the
                // blocker it signals is what lets the work finish, and its action
                // must be recorded.
                tick(
                    &p,
                    sink.as_ref(),
                    conn.as_ref().expect("checked out above"),
                    pid,
                )
                .await?;
                if !p.periodic {
                    let _ = stopped.await;
                    return Ok(());
                }
            }
        });
        Watchdog {
            stop: Some(stop),
            task,
        }
    }

    /// Stops watching; returns the watchdog's failure, if it had one.
    pub(crate) async fn stop(mut self) -> Result<(), Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(Error::new(
                ErrorKind::Database,
                format!("the prioritize watchdog failed: {e}"),
            )),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Stopped without `stop()` (the scope was abandoned): stop watching.
        self.task.abort();
    }
}

/// One look for blockers of `protected`, and what the rules say to do to them.
async fn tick(
    p: &Rules,
    sink: Option<&Sink>,
    conn: &Connection,
    protected: i32,
) -> Result<(), Error> {
    let rows = conn
        .exec()
        .query(
            sql::BLOCKERS,
            &[(&protected, Type::INT4), (&p.indirect, Type::BOOL)],
        )
        .await
        .map_err(|e| e.with_context_keeping_kind("prioritize watchdog: listing blockers"))?;
    let own = own_pids();
    let mut targets: Vec<Backend> = Vec::new();
    for row in &rows {
        let b = Backend::from_row(row);
        match p.spares(&b, &own) {
            Some(why) => tracing::debug!(target: "pglock::prioritize", pid = b.pid, reason = why,
                "prioritize: sparing a blocker"),
            None => targets.push(b),
        }
    }
    // Oldest first, then the cap.
    targets.sort_by_key(|b| std::cmp::Reverse(b.held_for()));
    if let Some(n) = p.max_kills {
        targets.truncate(n as usize);
    }
    if targets.is_empty() {
        return Ok(());
    }
    let signalled: Vec<i32> = if p.dry_run {
        Vec::new()
    } else {
        let pids: Vec<i32> = targets.iter().map(|b| b.pid).collect();
        conn.exec()
            .query(p.action.sql(), &[(&pids, Type::INT4_ARRAY)])
            .await
            .map_err(|e| e.with_context_keeping_kind("prioritize watchdog: signalling blockers"))?
            .iter()
            .map(|r| r.get(0))
            .collect()
    };
    for b in targets {
        let done = signalled.contains(&b.pid);
        let held_ms = b.held_for().map(|d| d.as_millis() as u64);
        if p.dry_run {
            tracing::info!(target: "pglock::prioritize", pid = b.pid, application_name = %b.application_name,
                query = %b.query, held_for_ms = held_ms, protected,
                "prioritize (dry run): would have {} a blocker", p.action.verb());
        } else {
            tracing::warn!(target: "pglock::prioritize", pid = b.pid, application_name = %b.application_name,
                query = %b.query, held_for_ms = held_ms, protected, signalled = done,
                "prioritize: {} a blocker", p.action.verb());
        }
        if let Some(sink) = sink {
            sink.push(BlockerAction {
                backend: b,
                action: p.action,
                dry_run: p.dry_run,
                signalled: done,
                at: SystemTime::now(),
            });
        }
    }
    Ok(())
}
