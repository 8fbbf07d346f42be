//! `prioritize`: a watchdog that cancels or terminates the sessions blocking a
//! protected piece of work, with guard rails.

use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;
use tokio_postgres::types::Type;

use crate::connection::Connection;
use crate::error::Error;
use crate::exec::Exec;
use crate::registry::{self, DEFAULT_ALIAS};
use crate::rows::Backend;
use crate::scope::{self, Spec};
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

/// Keeps a piece of work from waiting behind other sessions: while it runs, a
/// watchdog on a separate connection of the same alias looks, every `interval`,
/// for the sessions blocking the work's connection (`pg_blocking_pids`: relation
/// locks, advisory locks, row locks, …) and terminates or cancels them.
///
/// Guard rails: never a session of this process, never a non-client backend
/// (autovacuum, WAL senders), only direct blockers unless
/// [`indirect`](Prioritize::indirect), optional minimum blocker age, allow and deny
/// lists by `application_name` and user, a cap per tick, and a dry run. Every
/// action is a `tracing` event (target `pglock::prioritize`) and is returned by
/// [`run`](Prioritize::run). A watchdog failure (for instance, permission denied)
/// is reported when the work ends.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// use std::time::Duration;
/// use pglock_runtime::Prioritize;
///
/// let done = Prioritize::new()
///     .interval(Duration::from_secs(1))
///     .min_blocker_age(Duration::from_secs(5))
///     .max_kills(3)
///     .run(async {
///         let db = pglock_runtime::connection().await?;
///         db.batch_execute("ALTER TABLE big ADD COLUMN c int").await?;
///         Ok::<_, pglock_runtime::Error>(())
///     })
///     .await?;
/// done.output?;
/// for a in &done.actions {
///     println!("terminated pid {} ({})", a.backend.pid, a.backend.query);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a Prioritize does nothing until `run` is called"]
pub struct Prioritize {
    pub(crate) interval: Duration,
    pub(crate) periodic: bool,
    pub(crate) action: PrioritizeAction,
    pub(crate) min_blocker_age: Option<Duration>,
    pub(crate) max_kills: Option<u32>,
    pub(crate) dry_run: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) indirect: bool,
    pub(crate) allow_application_names: Vec<String>,
    pub(crate) deny_application_names: Vec<String>,
    pub(crate) allow_users: Vec<String>,
    pub(crate) deny_users: Vec<String>,
    pub(crate) alias: Cow<'static, str>,
}

impl Default for Prioritize {
    fn default() -> Self {
        Prioritize::new()
    }
}

/// The output of the protected work and what the watchdog did meanwhile; see
/// [`Prioritize::run`] for an example.
#[derive(Debug)]
#[non_exhaustive]
pub struct Prioritized<T> {
    /// What the work returned.
    pub output: T,
    /// Every action the watchdog took, in order.
    pub actions: Vec<BlockerAction>,
}

impl Prioritize {
    /// Every second, periodically, terminate direct blockers of any age, on the
    /// `"default"` alias.
    pub fn new() -> Prioritize {
        Prioritize {
            interval: Duration::from_secs(1),
            periodic: true,
            action: PrioritizeAction::Terminate,
            min_blocker_age: None,
            max_kills: None,
            dry_run: false,
            timeout: None,
            indirect: false,
            allow_application_names: Vec::new(),
            deny_application_names: Vec::new(),
            allow_users: Vec::new(),
            deny_users: Vec::new(),
            alias: Cow::Borrowed(DEFAULT_ALIAS),
        }
    }

    /// How often the watchdog looks (default 1 s; at least 10 ms).
    pub fn interval(mut self, d: Duration) -> Prioritize {
        self.interval = d.max(Duration::from_millis(10));
        self
    }

    /// `false`: act once, one interval after the start, then stop watching.
    pub fn periodic(mut self, periodic: bool) -> Prioritize {
        self.periodic = periodic;
        self
    }

    /// Terminate (default) or cancel blockers.
    pub fn action(mut self, action: PrioritizeAction) -> Prioritize {
        self.action = action;
        self
    }

    /// Spare blockers whose transaction (or, outside one, current state) is younger
    /// than `d`.
    pub fn min_blocker_age(mut self, d: Duration) -> Prioritize {
        self.min_blocker_age = Some(d);
        self
    }

    /// Signal at most `n` blockers per tick (the oldest first).
    pub fn max_kills(mut self, n: u32) -> Prioritize {
        self.max_kills = Some(n);
        self
    }

    /// Report what would be done, signal nobody.
    pub fn dry_run(mut self, dry_run: bool) -> Prioritize {
        self.dry_run = dry_run;
        self
    }

    /// A `lock_timeout` for the protected work (used when no `lock_timeout` scope
    /// is given): a timeout shorter than the interval fails the work before the
    /// watchdog acts.
    pub fn timeout(mut self, t: Option<Duration>) -> Prioritize {
        self.timeout = t;
        self
    }

    /// Also signal the blockers of the blockers (default: direct blockers only).
    pub fn indirect(mut self, indirect: bool) -> Prioritize {
        self.indirect = indirect;
        self
    }

    /// Only signal sessions with one of these `application_name`s.
    pub fn allow_application_names<I, S>(mut self, names: I) -> Prioritize
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allow_application_names = names.into_iter().map(Into::into).collect();
        self
    }

    /// Never signal sessions with one of these `application_name`s.
    pub fn deny_application_names<I, S>(mut self, names: I) -> Prioritize
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.deny_application_names = names.into_iter().map(Into::into).collect();
        self
    }

    /// Only signal sessions of these roles.
    pub fn allow_users<I, S>(mut self, users: I) -> Prioritize
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allow_users = users.into_iter().map(Into::into).collect();
        self
    }

    /// Never signal sessions of these roles.
    pub fn deny_users<I, S>(mut self, users: I) -> Prioritize
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.deny_users = users.into_iter().map(Into::into).collect();
        self
    }

    /// Protect work on a registered alias instead of `"default"`; the watchdog
    /// connects through the same alias.
    pub fn using(mut self, alias: impl Into<Cow<'static, str>>) -> Prioritize {
        self.alias = alias.into();
        self
    }

    /// Runs `fut` on the scope connection of the alias with the watchdog
    /// protecting that connection.
    ///
    /// # Errors
    ///
    /// Checkout errors; the watchdog's own failure (reported after `fut` has
    /// finished); errors restoring the `timeout`'s `lock_timeout`. The future's own
    /// output is in [`Prioritized::output`].
    pub async fn run<F: Future>(&self, fut: F) -> Result<Prioritized<F::Output>, Error> {
        let sink = Sink::default();
        let mut spec = Spec::new(self.alias.clone());
        spec.prioritize = Some((self.clone(), Some(sink.clone())));
        let output = Box::pin(scope::run(spec, fut, |_| false))
            .await
            .into_result()?;
        Ok(Prioritized {
            output,
            actions: sink.take(),
        })
    }

    fn spares(&self, b: &Backend, own: &std::collections::HashSet<i32>) -> Option<&'static str> {
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

    fn take(&self) -> Vec<BlockerAction> {
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
    pub(crate) fn start(p: Prioritize, sink: Option<Sink>, protected: &Connection) -> Watchdog {
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
                    conn = Some(registry::alias(&p.alias)?.checkout().await?);
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
                crate::ErrorKind::Database,
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

async fn tick(
    p: &Prioritize,
    sink: Option<&Sink>,
    conn: &Connection,
    protected: i32,
) -> Result<(), Error> {
    let rows = Exec::pooled(conn)
        .query(
            sql::BLOCKERS,
            &[(&protected, Type::INT4), (&p.indirect, Type::BOOL)],
        )
        .await
        .map_err(|e| e.reclassify_context("prioritize watchdog: listing blockers"))?;
    let own = registry::own_pids();
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
        Exec::pooled(conn)
            .query(p.action.sql(), &[(&pids, Type::INT4_ARRAY)])
            .await
            .map_err(|e| e.reclassify_context("prioritize watchdog: signalling blockers"))?
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
