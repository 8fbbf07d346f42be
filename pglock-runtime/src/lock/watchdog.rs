//! The prioritize watchdog: while protected work runs, a task on a session of
//! its own (of the same alias, outside its pools, opened before the work
//! starts) finds the sessions blocking the work's session and cancels or
//! terminates them, within its rules. What goes wrong on the way (a role that
//! cannot see or signal the blockers, a refused signal, a lost session) is
//! recorded and reported; it never ends the watching, nor replaces the work's
//! own result.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;
use tokio_postgres::types::Type;

use crate::error::{Error, ErrorKind};
use crate::metrics;
use crate::pool::registry::dedicated_session;
use crate::rows::{query_excerpt, Backend};
use crate::wire::exec::Exec;
use crate::wire::session::{own_pids, Session};
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
            PrioritizeAction::Terminate => sql::TERMINATE_ONE,
            PrioritizeAction::Cancel => sql::CANCEL_ONE,
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
    /// Whether the server signalled the backend (false in a dry run, if it had
    /// already gone, or if the signal was refused).
    pub signalled: bool,
    /// Why the server refused the signal (a superuser's session, a role this
    /// one may not signal without `pg_signal_backend`), if it did.
    pub refused: Option<String>,
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
    /// Signal superusers' sessions too.
    pub(crate) signal_superusers: bool,
    /// Signal blockers in other databases too.
    pub(crate) any_database: bool,
    /// The alias the watchdog connects through (the protected work's).
    pub(crate) alias: Cow<'static, str>,
}

impl Rules {
    /// Why `b` is spared, if it is.
    fn spares(&self, b: &Blocker, own: &HashSet<i32>) -> Option<&'static str> {
        let Blocker {
            backend: b,
            superuser,
            this_database,
        } = b;
        if !b.is_client() {
            return Some("not a client backend");
        }
        if own.contains(&b.pid) {
            return Some("a session of this process");
        }
        if *superuser && !self.signal_superusers {
            return Some("a superuser's session (see Prioritize::signal_superusers)");
        }
        if !*this_database && !self.any_database {
            return Some("a session of another database (see Prioritize::any_database)");
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

/// Where the watchdog records its actions and problems for
/// [`Prioritize::run`](crate::Prioritize::run).
#[derive(Debug, Clone, Default)]
pub(crate) struct Sink(Arc<Mutex<Recorded>>);

#[derive(Debug, Default)]
struct Recorded {
    actions: Vec<BlockerAction>,
    problems: Vec<Error>,
}

impl Sink {
    fn push(&self, a: BlockerAction) {
        self.recorded().actions.push(a);
    }

    fn problem(&self, e: Error) {
        self.recorded().problems.push(e);
    }

    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The actions and problems recorded so far, in order.
    pub(crate) fn take(&self) -> (Vec<BlockerAction>, Vec<Error>) {
        let r = std::mem::take(&mut *self.recorded());
        (r.actions, r.problems)
    }
}

/// A blocker as the watchdog sees it.
struct Blocker {
    backend: Backend,
    superuser: bool,
    this_database: bool,
}

/// What one watchdog has reported already, so that a problem that lasts is
/// reported once.
#[derive(Default)]
struct Reported {
    hidden: bool,
    last_problem: Option<String>,
}

/// A running watchdog.
pub(crate) struct Watchdog {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watchdog {
    /// Opens the watchdog's own session and starts watching the session whose
    /// pid is `protected`. Fails (before the protected work starts) when the
    /// session cannot be opened.
    pub(crate) async fn start(
        p: Rules,
        sink: Option<Sink>,
        protected: i32,
    ) -> Result<Watchdog, Error> {
        let session = dedicated_session(&p.alias).await.map_err(|e| {
            e.with_context_keeping_kind(
                "prioritize: cannot open the watchdog's session (it uses one of its own, \
                 outside the alias's pool)",
            )
        })?;
        let (stop, mut stopped) = oneshot::channel();
        let task = rt::spawn(async move {
            let mut session = Some(session);
            let mut reported = Reported::default();
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(p.interval) => {}
                }
                if session.as_ref().is_none_or(|s| s.client.is_closed()) {
                    session = match dedicated_session(&p.alias).await {
                        Ok(s) => Some(s),
                        Err(e) => {
                            report(&p, sink.as_ref(), &mut reported, e);
                            continue;
                        }
                    };
                }
                let s = session.as_ref().expect("opened above");
                // A tick in flight is finished even if stop comes meanwhile: the
                // blocker it signals is what lets the work finish, and its action
                // must be recorded.
                if let Err(e) = tick(&p, sink.as_ref(), &mut reported, s, protected).await {
                    report(&p, sink.as_ref(), &mut reported, e);
                }
                if !p.periodic {
                    let _ = stopped.await;
                    return;
                }
            }
        });
        Ok(Watchdog {
            stop: Some(stop),
            task,
        })
    }

    /// Stops watching, after a tick in flight.
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        // Stopped without `stop()` (the scope was abandoned): stop watching.
        self.task.abort();
    }
}

/// A problem of the watchdog: an error event (once while it lasts) and, for
/// `Prioritize::run`, a recorded problem.
fn report(p: &Rules, sink: Option<&Sink>, reported: &mut Reported, e: Error) {
    let text = e.to_string();
    if reported.last_problem.as_deref() == Some(text.as_str()) {
        return;
    }
    tracing::error!(target: "pglock::prioritize", alias = %p.alias, error = %text,
        "prioritize: the watchdog could not do its work (it keeps watching)");
    reported.last_problem = Some(text);
    if let Some(sink) = sink {
        sink.problem(e);
    }
}

/// One look for blockers of `protected`, and what the rules say to do to them.
async fn tick(
    p: &Rules,
    sink: Option<&Sink>,
    reported: &mut Reported,
    session: &Session,
    protected: i32,
) -> Result<(), Error> {
    let exec = Exec::on(session);
    let rows = exec
        .query(
            sql::BLOCKERS,
            &[(&protected, Type::INT4), (&p.indirect, Type::BOOL)],
        )
        .await
        .map_err(|e| e.with_context_keeping_kind("prioritize watchdog: listing blockers"))?;
    let own = own_pids();
    let mut targets: Vec<Backend> = Vec::new();
    let mut hidden: Vec<i32> = Vec::new();
    for row in &rows {
        let b = Blocker {
            backend: Backend::from_row(row),
            superuser: row.get(15),
            this_database: row.get(16),
        };
        // A session of another role that this one may not see: everything but
        // its pid and role is NULL.
        if b.backend.backend_type.is_none() && !own.contains(&b.backend.pid) {
            hidden.push(b.backend.pid);
            continue;
        }
        match p.spares(&b, &own) {
            Some(why) => {
                tracing::debug!(target: "pglock::prioritize", pid = b.backend.pid, reason = why,
                "prioritize: sparing a blocker")
            }
            None => targets.push(b.backend),
        }
    }
    if !hidden.is_empty() && !reported.hidden {
        reported.hidden = true;
        report(
            p,
            sink,
            reported,
            Error::new(
                ErrorKind::Permission,
                format!(
                    "prioritize: the watchdog's role cannot see the sessions blocking the \
                     protected work (pids {hidden:?}: `pg_stat_activity` hides other roles' \
                     sessions from it), so it leaves them alone and the work stays blocked; \
                     grant the role `pg_read_all_stats` to see them and `pg_signal_backend` to \
                     signal them"
                ),
            ),
        );
    }
    // Oldest first, then the cap.
    targets.sort_by_key(|b| std::cmp::Reverse(b.held_for()));
    if let Some(n) = p.max_kills {
        targets.truncate(n as usize);
    }
    for b in targets {
        // One statement per blocker: a refusal fails only its own.
        let (signalled, refused) = if p.dry_run {
            (false, None)
        } else {
            match exec.one(p.action.sql(), &[(&b.pid, Type::INT4)]).await {
                Ok(row) => (row.get::<_, bool>(0), None),
                Err(e) if e.is_connection_lost() => return Err(e),
                Err(e) => (false, Some(e.to_string())),
            }
        };
        metrics::watchdog_action(
            &p.alias,
            match (&refused, p.dry_run) {
                (_, true) => "dry_run",
                (Some(_), _) => "refused",
                (None, _) => p.action.verb(),
            },
        );
        let held_ms = b.held_for().map(|d| d.as_millis() as u64);
        let query = query_excerpt(&b.query);
        if p.dry_run {
            tracing::info!(target: "pglock::prioritize", pid = b.pid, application_name = %b.application_name,
                query = %query, held_for_ms = held_ms, protected,
                "prioritize (dry run): would have {} a blocker", p.action.verb());
        } else if let Some(why) = &refused {
            tracing::warn!(target: "pglock::prioritize", pid = b.pid, application_name = %b.application_name,
                query = %query, held_for_ms = held_ms, protected, reason = %why,
                "prioritize: the server refused to signal a blocker");
        } else {
            tracing::warn!(target: "pglock::prioritize", pid = b.pid, application_name = %b.application_name,
                query = %query, held_for_ms = held_ms, protected, signalled,
                "prioritize: {} a blocker", p.action.verb());
        }
        if let Some(sink) = sink {
            sink.push(BlockerAction {
                backend: b,
                action: p.action,
                dry_run: p.dry_run,
                signalled,
                refused,
                at: SystemTime::now(),
            });
        }
    }
    Ok(())
}
