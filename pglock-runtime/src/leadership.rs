//! What a leadership candidate reports: its changes of role
//! ([`Change`]) and why a leadership ended ([`Revocation`]).

use std::fmt;
use std::time::Duration;

/// A change of a candidate's role, as [`Leader::changes`](crate::Leader::changes)
/// reports it.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// use pglock_runtime::Change;
///
/// let candidate = pglock_runtime::leader("scheduler").join()?;
/// let mut changes = candidate.changes();
/// while let Some(change) = changes.next().await {
///     match change {
///         Change::Elected { term } => println!("leading, term {term}"),
///         Change::Revoked { term, reason } => println!("term {term} ended: {reason}"),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// This candidate leads, in `term`: announced a grace after the server
    /// granted the lock ([`Election::grace`](crate::Election::grace)).
    Elected {
        /// The fencing token of this leadership.
        term: u64,
    },
    /// This candidate no longer leads. Unless it [left](crate::Leader::leave)
    /// or pglock is shutting down, it is a candidate again.
    Revoked {
        /// The term that ended.
        term: u64,
        /// Why.
        reason: Revocation,
    },
}

/// Why a leadership ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revocation {
    /// The leader's session ended: its backend was terminated, the server
    /// restarted or shut down, or the connection closed. The server released
    /// the lock with it.
    SessionEnded,
    /// The server did not answer the leader's liveness check within this
    /// deadline ([`Config::answer_deadline`](crate::Config::answer_deadline)):
    /// the path to it is cut or it is frozen. The session is closed; the server
    /// ends its side once its idle timer (twice the deadline) runs out, and only
    /// then can another candidate be elected.
    NoAnswer(Duration),
    /// The liveness check failed with this error.
    Failed(String),
    /// [`Leader::resign`](crate::Leader::resign) handed the leadership over.
    Resigned,
    /// The candidate [left](crate::Leader::leave) the election (or every
    /// handle to it was dropped).
    Left,
    /// [`shutdown`](crate::shutdown) was called.
    ShuttingDown,
}

impl fmt::Display for Revocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revocation::SessionEnded => f.write_str(
                "the leader's session ended (backend terminated, server restarted, or \
                 connection closed)",
            ),
            Revocation::NoAnswer(d) => write!(
                f,
                "the server did not answer the leader's check within {}",
                humantime::format_duration(*d)
            ),
            Revocation::Failed(e) => write!(f, "the leader's check failed: {e}"),
            Revocation::Resigned => f.write_str("resigned"),
            Revocation::Left => f.write_str("left the election"),
            Revocation::ShuttingDown => f.write_str("pglock is shutting down"),
        }
    }
}
