//! `prioritize`, the public face: the builder of a watchdog that cancels or
//! terminates the sessions blocking a protected piece of work, with guard rails.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::error::Error;
use crate::lock::watchdog::{BlockerAction, PrioritizeAction, Rules, Sink};
use crate::pool::registry::DEFAULT_ALIAS;
use crate::scope::{self, Spec};

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
#[derive(Clone)]
#[must_use = "a Prioritize does nothing until `run` is called"]
pub struct Prioritize {
    rules: Rules,
}

impl fmt::Debug for Prioritize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.rules;
        f.debug_struct("Prioritize")
            .field("interval", &r.interval)
            .field("periodic", &r.periodic)
            .field("action", &r.action)
            .field("min_blocker_age", &r.min_blocker_age)
            .field("max_kills", &r.max_kills)
            .field("dry_run", &r.dry_run)
            .field("timeout", &r.timeout)
            .field("indirect", &r.indirect)
            .field("allow_application_names", &r.allow_application_names)
            .field("deny_application_names", &r.deny_application_names)
            .field("allow_users", &r.allow_users)
            .field("deny_users", &r.deny_users)
            .field("signal_superusers", &r.signal_superusers)
            .field("any_database", &r.any_database)
            .field("alias", &r.alias)
            .finish()
    }
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
    /// Every action the watchdog took, in order (refused signals included).
    pub actions: Vec<BlockerAction>,
    /// What kept the watchdog from its work, in order: a role that cannot see
    /// the blockers ([`ErrorKind::Permission`](crate::ErrorKind::Permission),
    /// naming the grants), a lost session, a failed look-up. The work ran
    /// either way, and [`output`](Prioritized::output) is its result; each
    /// problem was also an error event (`target: "pglock::prioritize"`).
    pub problems: Vec<Error>,
}

impl Prioritize {
    /// Every second, periodically, terminate direct blockers of any age, on the
    /// `"default"` alias.
    pub fn new() -> Prioritize {
        Prioritize {
            rules: Rules {
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
                signal_superusers: false,
                any_database: false,
                alias: Cow::Borrowed(DEFAULT_ALIAS),
            },
        }
    }

    /// What the watchdog of this builder does and spares.
    pub(crate) fn into_rules(self) -> Rules {
        self.rules
    }

    /// How often the watchdog looks (default 1 s; at least 10 ms).
    pub fn interval(mut self, d: Duration) -> Prioritize {
        self.rules.interval = d.max(Duration::from_millis(10));
        self
    }

    /// `false`: act once, one interval after the start, then stop watching.
    pub fn periodic(mut self, periodic: bool) -> Prioritize {
        self.rules.periodic = periodic;
        self
    }

    /// Terminate (default) or cancel blockers.
    pub fn action(mut self, action: PrioritizeAction) -> Prioritize {
        self.rules.action = action;
        self
    }

    /// Spare blockers whose transaction (or, outside one, current state) is younger
    /// than `d`.
    pub fn min_blocker_age(mut self, d: Duration) -> Prioritize {
        self.rules.min_blocker_age = Some(d);
        self
    }

    /// Signal at most `n` blockers per tick (the oldest first).
    pub fn max_kills(mut self, n: u32) -> Prioritize {
        self.rules.max_kills = Some(n);
        self
    }

    /// Report what would be done, signal nobody.
    pub fn dry_run(mut self, dry_run: bool) -> Prioritize {
        self.rules.dry_run = dry_run;
        self
    }

    /// A `lock_timeout` for the protected work (used when no `lock_timeout` scope
    /// is given): a timeout shorter than the interval fails the work before the
    /// watchdog acts.
    pub fn timeout(mut self, t: Option<Duration>) -> Prioritize {
        self.rules.timeout = t;
        self
    }

    /// Also signal the blockers of the blockers (default: direct blockers only).
    pub fn indirect(mut self, indirect: bool) -> Prioritize {
        self.rules.indirect = indirect;
        self
    }

    /// Only signal sessions with one of these `application_name`s.
    pub fn allow_application_names<I, S>(mut self, names: I) -> Prioritize
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rules.allow_application_names = names.into_iter().map(Into::into).collect();
        self
    }

    /// Never signal sessions with one of these `application_name`s.
    pub fn deny_application_names<I, S>(mut self, names: I) -> Prioritize
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rules.deny_application_names = names.into_iter().map(Into::into).collect();
        self
    }

    /// Only signal sessions of these roles.
    pub fn allow_users<I, S>(mut self, users: I) -> Prioritize
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rules.allow_users = users.into_iter().map(Into::into).collect();
        self
    }

    /// Never signal sessions of these roles.
    pub fn deny_users<I, S>(mut self, users: I) -> Prioritize
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rules.deny_users = users.into_iter().map(Into::into).collect();
        self
    }

    /// Signal superusers' sessions too. Off by default: a superuser's session
    /// (a DBA's console, a maintenance job) is spared with a debug event, and a
    /// role that is not a superuser could not signal it anyway (the refusal
    /// would be recorded in [`BlockerAction::refused`]).
    ///
    /// ```
    /// let p = pglock_runtime::Prioritize::new().signal_superusers(true);
    /// # let _ = p;
    /// ```
    pub fn signal_superusers(mut self, on: bool) -> Prioritize {
        self.rules.signal_superusers = on;
        self
    }

    /// Signal blockers connected to other databases too. Off by default: only
    /// sessions of the protected work's database are signalled (a lock on a
    /// shared catalog can make a session of another database a blocker).
    ///
    /// ```
    /// let p = pglock_runtime::Prioritize::new().any_database(true);
    /// # let _ = p;
    /// ```
    pub fn any_database(mut self, on: bool) -> Prioritize {
        self.rules.any_database = on;
        self
    }

    /// Protect work on a registered alias instead of `"default"`; the watchdog
    /// connects through the same alias.
    pub fn using(mut self, alias: impl Into<Cow<'static, str>>) -> Prioritize {
        self.rules.alias = alias.into();
        self
    }

    /// Runs `fut` on the scope connection of the alias with the watchdog
    /// protecting that connection.
    ///
    /// The watchdog uses a session of its own, opened before `fut` starts and
    /// outside the alias's pool (so a one-connection pool does not starve it),
    /// and never signals a session pglock has open in this process; a plain
    /// `tokio_postgres` connection of the same process is not recognised as
    /// its own.
    ///
    /// # Errors
    ///
    /// Checkout errors; the watchdog's session cannot be opened (before `fut`
    /// runs); errors restoring the `timeout`'s `lock_timeout`. The future's own
    /// output is in [`Prioritized::output`], and what went wrong with the
    /// watchdog while it ran in [`Prioritized::problems`].
    pub async fn run<F: Future>(&self, fut: F) -> Result<Prioritized<F::Output>, Error> {
        let sink = Sink::default();
        let mut spec = Spec::new(self.rules.alias.clone());
        spec.prioritize = Some((self.rules.clone(), Some(sink.clone())));
        let output = Box::pin(scope::run(spec, fut, |_| false))
            .await
            .into_result()?;
        let (actions, problems) = sink.take();
        Ok(Prioritized {
            output,
            actions,
            problems,
        })
    }
}
