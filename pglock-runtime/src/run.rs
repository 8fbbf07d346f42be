//! The runs of scheduled jobs as pglock's schema records them (`runs` table):
//! one row per job and slot, with who ran it and how it ended, and the slots of
//! `once_per` jobs that ran nowhere.

use std::fmt;
use std::time::{Duration, SystemTime};

use tokio_postgres::Row;

use crate::key::LockKey;

/// How a recorded run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RunOutcome {
    /// Running, or abandoned: its process died, its connection was lost or its
    /// future was dropped before it could record an end. A later slot runs
    /// normally.
    Started,
    /// The body returned a success.
    Succeeded,
    /// The body returned an error (an `Err`, or what [`Raise`](crate::Raise) /
    /// [`Skipped`](crate::Skipped) count as a failure).
    Failed,
    /// The body panicked.
    Panicked,
}

impl RunOutcome {
    /// The name stored in the `outcome` column.
    ///
    /// ```
    /// assert_eq!(pglock_runtime::RunOutcome::Succeeded.as_str(), "succeeded");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Started => "started",
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::Failed => "failed",
            RunOutcome::Panicked => "panicked",
        }
    }

    fn parse(s: &str) -> RunOutcome {
        match s {
            "succeeded" => RunOutcome::Succeeded,
            "failed" => RunOutcome::Failed,
            "panicked" => RunOutcome::Panicked,
            _ => RunOutcome::Started,
        }
    }
}

impl fmt::Display for RunOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One run of a scheduled job (`once_per` / `slot`), read from pglock's schema.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// for run in pglock_runtime::runs().job("app::nightly").recent().await? {
///     println!("{} ran on {} ({}): {}", run.slot, run.host, run.application_name, run.outcome);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Run {
    /// The job: the annotated function's path, or the name given to
    /// [`AdvisoryLock::job`](crate::AdvisoryLock::job).
    pub job: String,
    /// Its lock key.
    pub key: Option<LockKey>,
    /// The slot's label: its start in RFC 3339 (UTC, microseconds), or the
    /// caller's label for `slot = <expr>`.
    pub slot: String,
    /// When the slot starts: for `once_per`, and for slots given as a time.
    pub slot_start: Option<SystemTime>,
    /// The slot length of a `once_per` job.
    pub period: Option<Duration>,
    /// Whether a failed run may be run again (`retry`).
    pub retry: bool,
    /// 1 for the first run of the slot; more when `retry` ran it again.
    pub attempt: i32,
    /// The `application_name` of the session that ran it.
    pub application_name: String,
    /// The host name of the process that ran it.
    pub host: String,
    /// The operating-system process id of the process that ran it.
    pub client_pid: Option<i32>,
    /// The server process (backend) that ran its lock.
    pub backend_pid: Option<i32>,
    /// When the run was claimed, on the server's clock.
    pub started_at: SystemTime,
    /// When it recorded its end, on the server's clock.
    pub finished_at: Option<SystemTime>,
    /// How it ended.
    pub outcome: RunOutcome,
}

impl Run {
    /// Reads a run from the columns of `SchemaSql::runs`.
    pub(crate) fn from_row(row: &Row) -> Run {
        let ids = (
            row.get::<_, u32>(1),
            row.get::<_, u32>(2),
            row.get::<_, i16>(3),
        );
        Run {
            job: row.get(0),
            key: LockKey::from_pg_locks(ids.0, ids.1, ids.2),
            slot: row.get(4),
            slot_start: row.get(5),
            period: row
                .get::<_, Option<f64>>(6)
                .and_then(|s| Duration::try_from_secs_f64(s).ok()),
            retry: row.get(7),
            attempt: row.get(8),
            application_name: row.get::<_, Option<String>>(9).unwrap_or_default(),
            host: row.get::<_, Option<String>>(10).unwrap_or_default(),
            client_pid: row.get(11),
            backend_pid: row.get(12),
            started_at: row.get(13),
            finished_at: row.get(14),
            outcome: RunOutcome::parse(row.get(15)),
        }
    }
}

/// Who ran a slot, as an [`ErrorKind::AlreadyRan`](crate::ErrorKind::AlreadyRan)
/// error reports it: the earlier run's session and when it started.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PreviousRun {
    /// The slot's label.
    pub slot: String,
    /// The `application_name` of the session that ran it.
    pub application_name: String,
    /// The host name of the process that ran it.
    pub host: String,
    /// The operating-system process id of the process that ran it.
    pub client_pid: Option<i32>,
    /// When it started, on the server's clock.
    pub started_at: Option<SystemTime>,
    /// When it ended, if it recorded an end.
    pub finished_at: Option<SystemTime>,
    /// How it ended, so far.
    pub outcome: RunOutcome,
}

impl PreviousRun {
    /// Reads the earlier run from a claim's row (columns 2 to 8).
    pub(crate) fn from_claim_row(row: &Row) -> PreviousRun {
        PreviousRun {
            slot: row.get(2),
            application_name: row.get::<_, Option<String>>(3).unwrap_or_default(),
            host: row.get::<_, Option<String>>(4).unwrap_or_default(),
            client_pid: row.get(5),
            started_at: row.get(6),
            outcome: row
                .get::<_, Option<&str>>(7)
                .map_or(RunOutcome::Started, RunOutcome::parse),
            finished_at: row.get(8),
        }
    }
}

impl fmt::Display for PreviousRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "slot {} ran", self.slot)?;
        write_origin(f, &self.host, self.client_pid, &self.application_name)?;
        if let Some(t) = self.started_at {
            write!(f, " at {}", humantime::format_rfc3339_millis(t))?;
        }
        write!(f, ": {}", self.outcome)
    }
}

/// ` on HOST (pid PID, APPLICATION)`, each part only when known: where a
/// recorded run or term came from.
pub(crate) fn write_origin(
    f: &mut fmt::Formatter<'_>,
    host: &str,
    client_pid: Option<i32>,
    application_name: &str,
) -> fmt::Result {
    if !host.is_empty() {
        write!(f, " on {host}")?;
    }
    if let Some(pid) = client_pid {
        write!(f, " (pid {pid}")?;
        if !application_name.is_empty() {
            write!(f, ", {application_name}")?;
        }
        f.write_str(")")?;
    }
    Ok(())
}

/// A slot of a `once_per` job that no instance ran: between the job's first
/// recorded run and the current slot, no run was claimed for it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MissedSlot {
    /// The job.
    pub job: String,
    /// When the slot started, on the server's clock.
    pub slot_start: SystemTime,
    /// The job's slot length.
    pub period: Duration,
}

impl MissedSlot {
    /// Reads a missed slot from the columns of `SchemaSql::missed`.
    pub(crate) fn from_row(row: &Row) -> MissedSlot {
        MissedSlot {
            job: row.get(0),
            slot_start: row.get(1),
            period: Duration::try_from_secs_f64(row.get(2)).unwrap_or_default(),
        }
    }
}
