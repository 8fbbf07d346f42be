//! The error type of every fallible pglock operation.

use std::fmt;
use std::time::Duration;

use crate::key::LockKey;
use crate::rows::{Holder, LockWait};
use crate::run::PreviousRun;

/// What went wrong, as a closed set callers can branch on.
///
/// Use the predicates on [`Error`] (`is_busy()`, `is_timeout()`, …) or match on
/// [`Error::kind`]. New kinds may be added in minor releases.
///
/// ```
/// use pglock_runtime::{Error, ErrorKind};
///
/// fn retry_later(e: &Error) -> bool {
///     matches!(e.kind(), ErrorKind::Busy | ErrorKind::LockTimeout)
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The lock is held by someone else and the caller asked not to wait
    /// (`timeout = 0`). [`Error::holders`] says who holds it.
    Busy,
    /// The server gave up waiting after the configured `lock_timeout` (SQLSTATE
    /// 55P03). [`Error::holders`] says who held the lock.
    LockTimeout,
    /// The server detected a deadlock and chose this statement as the victim
    /// (SQLSTATE 40P01).
    Deadlock,
    /// The statement was cancelled (SQLSTATE 57014): by `pg_cancel_backend`, a
    /// statement timeout, or pglock cancelling a wait whose future was dropped.
    Cancelled,
    /// The connection to the server was lost, or the server shut down or terminated
    /// this session. Any session lock held on it is gone.
    ConnectionLost,
    /// `pg_advisory_unlock` reported that the lock was no longer held when it was
    /// released: it was lost (for instance by `pg_advisory_unlock_all`) while the
    /// protected work ran.
    LostBeforeRelease,
    /// The lock was lost while it was held: its session died (terminated, server
    /// restarted, network cut) or stopped answering, or the transaction of an
    /// `xact` lock ended behind pglock's back. Detected by the heartbeat
    /// ([`Config::heartbeat`](crate::Config::heartbeat)). A session lock that
    /// user code released through its own session is reported by the release
    /// instead ([`LostBeforeRelease`](ErrorKind::LostBeforeRelease)).
    LockLost,
    /// A registry alias is unknown or misconfigured, or an argument is invalid
    /// (a zero `lock_timeout`, a malformed URL, an empty table list, …).
    Configuration,
    /// The alias points at a hot standby: a lock taken there excludes nobody on the
    /// primary, so pglock refuses it unless the alias allows standbys explicitly.
    Standby,
    /// No connection of the alias could be checked out, or opened, in time.
    Pool,
    /// The connection goes through a transaction-pooling proxy (PgBouncer with
    /// `pool_mode = transaction`): consecutive statements run on different server
    /// sessions, so session-level state (session locks, a session `lock_timeout`)
    /// would not stay with it. Use transaction-level (`xact`) locks, or session
    /// pooling. Also a connection through a pooler whose mode is not declared
    /// (see [`Pooling`](crate::Pooling)): the message says how to declare it.
    Pooler,
    /// An operation that the lock's kind does not allow, such as releasing a
    /// transaction-level lock by hand or taking one outside a transaction.
    Usage,
    /// A scheduled call (`once_per`, `slot`) did not run its body: its slot had
    /// already run, here or on another instance. [`Error::previous_run`] says who
    /// ran it and when. Not a failure of the fleet: with `on_fail = skip` it is a
    /// skip, logged at debug level.
    AlreadyRan,
    /// The role lacks a privilege pglock needs (for pglock's own schema: `CREATE`
    /// on the database); the message names the grant, or prints the SQL an
    /// administrator can run instead.
    Permission,
    /// [`shutdown`](crate::shutdown) was called: no new lock is taken, and a
    /// wait that was in progress was cancelled.
    ShuttingDown,
    /// Any other error reported by the server.
    Database,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            ErrorKind::Busy => "lock is held by another session",
            ErrorKind::LockTimeout => "lock timeout",
            ErrorKind::Deadlock => "deadlock detected",
            ErrorKind::Cancelled => "statement cancelled",
            ErrorKind::ConnectionLost => "connection lost",
            ErrorKind::LostBeforeRelease => "lock was lost before it was released",
            ErrorKind::LockLost => "lock was lost while held",
            ErrorKind::Configuration => "configuration error",
            ErrorKind::Standby => "refusing to lock on a hot standby",
            ErrorKind::Pool => "no connection available",
            ErrorKind::Pooler => {
                "session-level state does not work behind a transaction pooler (or a pooler of \
                 undeclared mode)"
            }
            ErrorKind::Usage => "invalid use",
            ErrorKind::AlreadyRan => "this slot already ran",
            ErrorKind::Permission => "permission denied",
            ErrorKind::ShuttingDown => "pglock is shutting down",
            ErrorKind::Database => "database error",
        }
    }
}

/// The error returned by pglock operations.
///
/// It is small (one pointer) and carries: its [`ErrorKind`], the registry alias and
/// lock key involved when known, the sessions that held the lock when acquiring
/// failed ([`Error::holders`]), and the underlying `tokio_postgres` error as
/// [`source`](std::error::Error::source).
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// use std::time::Duration;
///
/// match pglock_runtime::advisory("nightly").timeout(Duration::ZERO).acquire().await {
///     Ok(guard) => guard.release().await?,
///     Err(e) if e.is_busy() => {
///         for h in e.holders() {
///             println!("held by pid {} ({})", h.pid, h.application_name);
///         }
///     }
///     Err(e) => return Err(e),
/// }
/// # Ok(()) }
/// ```
pub struct Error(Box<Inner>);

struct Inner {
    kind: ErrorKind,
    message: String,
    alias: Option<String>,
    key: Option<LockKey>,
    holders: Vec<Holder>,
    previous_run: Option<PreviousRun>,
    lock_name: Option<std::sync::Arc<str>>,
    waited: Option<Duration>,
    /// What a statement that hit `lock_timeout` waited for (its blockers are
    /// `holders`).
    wait: Option<LockWait>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error(Box::new(Inner {
            kind,
            message: message.into(),
            alias: None,
            key: None,
            holders: Vec::new(),
            previous_run: None,
            lock_name: None,
            waited: None,
            wait: None,
            source: None,
        }))
    }

    pub(crate) fn config(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Configuration, message)
    }

    pub(crate) fn pooler() -> Error {
        Error::new(
            ErrorKind::Pooler,
            "this connection goes through a transaction-pooling proxy (such as PgBouncer with \
             `pool_mode = transaction`): its statements run on different server sessions, so a \
             session-level lock would not stay with it and would exclude nobody reliably; use a \
             transaction-level lock (`xact`), or session pooling, and set \
             `Config::transaction_pooling(true)` for this alias",
        )
    }

    /// A session-level lock or setting on a connection through a pooler whose
    /// pool mode pglock cannot tell (`wire/pooler.rs`).
    pub(crate) fn pooler_undeclared() -> Error {
        Error::new(
            ErrorKind::Pooler,
            "this connection goes through a connection pooler (the server's cancel key was \
             replaced by the pooler's), and pglock cannot tell whether it pools by session or \
             by transaction; behind a transaction pooler (PgBouncer `pool_mode = transaction`) a \
             session-level lock would not stay with the connection and would exclude nobody \
             reliably, so it is refused. Transaction-level locks (`xact`) work either way. \
             Declare the pooler's mode for this alias: \
             `Config::pooling(pglock_runtime::Pooling::Session)` if it keeps one server session \
             per client (`pool_mode = session`; session locks then work), or \
             `Config::transaction_pooling(true)` if it pools by transaction",
        )
    }

    pub(crate) fn usage(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Usage, message)
    }

    /// Classifies a `tokio_postgres` error by its SQLSTATE or transport failure.
    pub(crate) fn from_pg(e: tokio_postgres::Error) -> Error {
        use tokio_postgres::error::SqlState;
        let kind = match e.code() {
            Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE => ErrorKind::LockTimeout,
            Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED => ErrorKind::Deadlock,
            Some(c) if *c == SqlState::QUERY_CANCELED => ErrorKind::Cancelled,
            Some(c)
                if *c == SqlState::ADMIN_SHUTDOWN
                    || *c == SqlState::CRASH_SHUTDOWN
                    || *c == SqlState::CANNOT_CONNECT_NOW
                    || c.code().starts_with("08") =>
            {
                ErrorKind::ConnectionLost
            }
            Some(_) => ErrorKind::Database,
            None if e.is_closed() => ErrorKind::ConnectionLost,
            None if is_io(&e) => ErrorKind::ConnectionLost,
            None => ErrorKind::Database,
        };
        let message = match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => with_causes(&e),
        };
        Error::new(kind, message).with_source(e)
    }

    pub(crate) fn with_source(
        mut self,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        self.0.source = Some(Box::new(source));
        self
    }

    /// Changes the kind and puts `context` before the message.
    pub(crate) fn reclassify(mut self, kind: ErrorKind, context: &str) -> Error {
        self.0.kind = kind;
        self.0.message = format!("{context}: {}", self.0.message);
        self
    }

    /// Keeps `other`'s source (the server's error) under a new kind.
    pub(crate) fn with_source_of(mut self, other: Error) -> Error {
        self.0.source = other.0.source;
        if self.0.message.is_empty() {
            self.0.message = other.0.message;
        }
        self
    }

    /// Puts `context` before the message, keeping the kind.
    pub(crate) fn with_context_keeping_kind(self, context: &str) -> Error {
        let kind = self.0.kind;
        self.reclassify(kind, context)
    }

    pub(crate) fn with_alias(mut self, alias: &str) -> Error {
        if self.0.alias.is_none() {
            self.0.alias = Some(alias.to_owned());
        }
        self
    }

    pub(crate) fn with_key(mut self, key: LockKey) -> Error {
        self.0.key = Some(key);
        self
    }

    pub(crate) fn with_holders(mut self, holders: Vec<Holder>) -> Error {
        self.0.holders = holders;
        self
    }

    /// What a statement that hit `lock_timeout` was seen waiting for; its
    /// blockers become the holders.
    pub(crate) fn with_lock_wait(mut self, mut wait: LockWait) -> Error {
        self.0.holders = std::mem::take(&mut wait.blockers);
        self.0.wait = Some(wait);
        self
    }

    pub(crate) fn with_waited(mut self, waited: Duration) -> Error {
        self.0.waited = Some(waited);
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The registry alias involved, when the operation went through the registry.
    pub fn alias(&self) -> Option<&str> {
        self.0.alias.as_deref()
    }

    /// The advisory lock key involved, if any.
    pub fn key(&self) -> Option<LockKey> {
        self.0.key
    }

    /// The sessions holding the lock when acquiring it failed ([`ErrorKind::Busy`],
    /// [`ErrorKind::LockTimeout`]). Empty when the holder had already gone when
    /// pglock looked, or for other kinds.
    ///
    /// For a statement of a `lock_timeout` scope's body that hit the limit: the
    /// sessions that blocked it (holding a conflicting lock, or queued ahead for
    /// one), each with its [`mode`](Holder::mode) on what the statement waited
    /// for ([`Error::relation`]), when pglock saw the wait.
    pub fn holders(&self) -> &[Holder] {
        &self.0.holders
    }

    /// The relation a statement of a `lock_timeout` scope's body waited for when
    /// it hit the limit (schema-qualified: `public.orders`), also when it waited
    /// for a row of it. `None` when pglock did not see the wait (see
    /// [`LockTimeout`](crate::LockTimeout)), when the wait was not for a
    /// relation or a row (an advisory lock, …), and for other errors.
    pub fn relation(&self) -> Option<&str> {
        self.0.wait.as_ref().and_then(|w| w.relation.as_deref())
    }

    /// For [`ErrorKind::AlreadyRan`]: the run that had the slot (its session,
    /// host and process, when it started, how it ended so far).
    pub fn previous_run(&self) -> Option<&PreviousRun> {
        self.0.previous_run.as_ref()
    }

    /// The call's slot had already run ([`ErrorKind::AlreadyRan`]).
    pub fn is_already_ran(&self) -> bool {
        self.0.kind == ErrorKind::AlreadyRan
    }

    /// The name of the lock involved (the string its key was made from).
    pub fn lock_name(&self) -> Option<&str> {
        self.0.lock_name.as_deref()
    }

    pub(crate) fn with_lock_name(mut self, name: Option<std::sync::Arc<str>>) -> Error {
        if self.0.lock_name.is_none() {
            self.0.lock_name = name;
        }
        self
    }

    pub(crate) fn with_previous_run(mut self, run: PreviousRun) -> Error {
        self.0.previous_run = Some(run);
        self
    }

    /// The SQLSTATE of the server error behind this one, if any.
    pub(crate) fn sqlstate(&self) -> Option<&tokio_postgres::error::SqlState> {
        self.0
            .source
            .as_deref()
            .and_then(|s| s.downcast_ref::<tokio_postgres::Error>())
            .and_then(tokio_postgres::Error::code)
    }

    /// The lock wait limit that expired, for [`ErrorKind::LockTimeout`] raised by a
    /// bounded acquisition.
    pub fn waited(&self) -> Option<Duration> {
        self.0.waited
    }

    /// The lock is held elsewhere and the caller asked not to wait.
    pub fn is_busy(&self) -> bool {
        self.0.kind == ErrorKind::Busy
    }

    /// The server's `lock_timeout` expired (SQLSTATE 55P03).
    pub fn is_timeout(&self) -> bool {
        self.0.kind == ErrorKind::LockTimeout
    }

    /// Either [`is_busy`](Error::is_busy) or [`is_timeout`](Error::is_timeout): the
    /// lock was not acquired because someone else holds it.
    pub fn is_not_acquired(&self) -> bool {
        self.is_busy() || self.is_timeout()
    }

    /// The server chose this statement as a deadlock victim (SQLSTATE 40P01).
    pub fn is_deadlock(&self) -> bool {
        self.0.kind == ErrorKind::Deadlock
    }

    /// The statement was cancelled (SQLSTATE 57014).
    pub fn is_cancelled(&self) -> bool {
        self.0.kind == ErrorKind::Cancelled
    }

    /// The connection was lost or terminated.
    pub fn is_connection_lost(&self) -> bool {
        self.0.kind == ErrorKind::ConnectionLost
    }

    /// The lock was lost: found missing while held ([`ErrorKind::LockLost`]) or
    /// when released ([`ErrorKind::LostBeforeRelease`]).
    pub fn is_lost(&self) -> bool {
        matches!(
            self.0.kind,
            ErrorKind::LostBeforeRelease | ErrorKind::LockLost
        )
    }

    /// Misconfiguration: unknown alias, bad URL, invalid argument.
    pub fn is_configuration(&self) -> bool {
        self.0.kind == ErrorKind::Configuration
    }

    /// The underlying `tokio_postgres` error, if this error came from one.
    pub fn as_postgres(&self) -> Option<&tokio_postgres::Error> {
        self.0
            .source
            .as_deref()
            .and_then(|s| s.downcast_ref::<tokio_postgres::Error>())
    }
}

fn is_io(e: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.0.kind)
            .field("message", &self.0.message);
        if let Some(a) = &self.0.alias {
            d.field("alias", a);
        }
        if let Some(k) = &self.0.key {
            d.field("key", k);
        }
        if let Some(w) = &self.0.wait {
            d.field("waiting_for", &format_args!("{w}"));
        }
        if !self.0.holders.is_empty() {
            d.field("holders", &self.0.holders);
        }
        if let Some(s) = &self.0.source {
            d.field("source", s);
        }
        d.finish()
    }
}

/// An error's message followed by its causes' (`error connecting to server:
/// Connection refused (os error 111)`), each once.
pub(crate) fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.kind.describe())?;
        match (&self.0.key, &self.0.lock_name) {
            (Some(key), Some(name)) => write!(f, " on advisory lock `{name}` (key {key})")?,
            (Some(key), None) => write!(f, " on advisory lock {key}")?,
            _ => {}
        }
        if let Some(alias) = &self.0.alias {
            write!(f, " (database alias `{alias}`)")?;
        }
        if !self.0.message.is_empty() && self.0.message != self.0.kind.describe() {
            write!(f, ": {}", self.0.message)?;
        }
        if let Some(w) = self.0.waited {
            write!(f, " after waiting {}", humantime::format_duration(w))?;
        }
        if let Some(w) = &self.0.wait {
            write!(f, ", waiting for {w}")?;
        }
        match self.0.holders.as_slice() {
            [] => {}
            [h] => write!(f, "; held by {h}")?,
            hs => {
                f.write_str("; held by ")?;
                for (i, h) in hs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{h}")?;
                }
            }
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

// `From<tokio_postgres::Error>` is in `lock/waits.rs`: inside a `lock_timeout`
// scope it adds what a timed-out statement waited for.

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_one_pointer() {
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    /// README's list of error kinds is the enum's.
    #[test]
    fn readme_lists_every_kind() {
        use ErrorKind::*;
        let all = [
            Busy,
            LockTimeout,
            Deadlock,
            Cancelled,
            ConnectionLost,
            LostBeforeRelease,
            LockLost,
            Configuration,
            Standby,
            Pool,
            Pooler,
            Usage,
            AlreadyRan,
            Permission,
            ShuttingDown,
            Database,
        ];
        // Exhaustive: a new kind does not compile until it is in `all`.
        for k in all {
            match k {
                Busy | LockTimeout | Deadlock | Cancelled | ConnectionLost | LostBeforeRelease
                | LockLost | Configuration | Standby | Pool | Pooler | Usage | AlreadyRan
                | Permission | ShuttingDown | Database => {}
            }
        }
        let readme = include_str!("../../README.md");
        let errors = readme
            .split("\n## Errors\n")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("README has an `## Errors` section");
        let listed = errors
            .split("kind()` (")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .expect("the section lists `kind()` (…)");
        let listed: Vec<String> = listed
            .split(',')
            .map(|s| s.trim().trim_matches('`').to_owned())
            .collect();
        let expected: Vec<String> = all.iter().map(|k| format!("{k:?}")).collect();
        assert_eq!(
            listed, expected,
            "README's error kinds, in ErrorKind's order"
        );
    }

    #[test]
    fn display_names_kind_key_alias() {
        let e = Error::new(ErrorKind::Busy, "")
            .with_key(LockKey::Int(7))
            .with_alias("default");
        assert_eq!(
            e.to_string(),
            "lock is held by another session on advisory lock 7 (database alias `default`)"
        );
        assert!(e.is_busy() && e.is_not_acquired() && !e.is_timeout());
    }
}
