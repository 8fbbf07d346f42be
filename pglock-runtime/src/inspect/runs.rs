//! The record of scheduled runs, for operators: recent runs per job, and the
//! slots of `once_per` jobs that ran on no instance ("the 03:00 run did not
//! happen anywhere").

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use tokio_postgres::types::Type;
use tokio_postgres::Row;

use crate::error::Error;
use crate::lock::schema;
use crate::pool::connection::Connection;
use crate::pool::registry::DEFAULT_ALIAS;
use crate::run::{MissedSlot, Run};
use crate::sql::SchemaSql;
use crate::wire::exec::Param;

/// The runs of scheduled jobs recorded on the `"default"` alias; see [`Runs`].
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// use std::time::{Duration, SystemTime};
///
/// let last_day = pglock_runtime::runs()
///     .job("app::nightly")
///     .since(SystemTime::now() - Duration::from_secs(86_400));
/// for run in last_day.recent().await? {
///     println!("{} on {}: {}", run.slot, run.host, run.outcome);
/// }
/// for slot in last_day.missed().await? {
///     println!("{} did not run at {:?} anywhere", slot.job, slot.slot_start);
/// }
/// # Ok(()) }
/// ```
pub fn runs() -> Runs {
    Runs::new()
}

/// Which recorded runs to read: every job, or one; since a time (default: the
/// last 24 hours); at most a number of rows (default 100). Reads never create
/// pglock's schema: where it does not exist, nothing has run, and the lists are
/// empty.
#[derive(Debug, Clone)]
#[must_use]
pub struct Runs {
    alias: Cow<'static, str>,
    job: Option<String>,
    since: Option<SystemTime>,
    limit: i64,
}

impl Default for Runs {
    fn default() -> Runs {
        Runs::new()
    }
}

impl Runs {
    /// Every job's runs of the last 24 hours on `"default"`.
    pub fn new() -> Runs {
        Runs {
            alias: Cow::Borrowed(DEFAULT_ALIAS),
            job: None,
            since: None,
            limit: 100,
        }
    }

    /// Reads through a registered alias instead of `"default"` (and its
    /// [`Config::schema`](crate::Config::schema)).
    pub fn using(mut self, alias: impl Into<Cow<'static, str>>) -> Runs {
        self.alias = alias.into();
        self
    }

    /// Only this job: an annotated function's path (`module::function`) or the
    /// name given to [`AdvisoryLock::job`](crate::AdvisoryLock::job).
    pub fn job(mut self, name: impl Into<String>) -> Runs {
        self.job = Some(name.into());
        self
    }

    /// Only runs started (and slots starting) at or after `t`, on the server's
    /// clock.
    pub fn since(mut self, t: SystemTime) -> Runs {
        self.since = Some(t);
        self
    }

    /// At most `n` runs, and `n` missed slots (newest first).
    pub fn limit(mut self, n: u32) -> Runs {
        self.limit = i64::from(n);
        self
    }

    fn since_or_default(&self) -> SystemTime {
        self.since
            .unwrap_or_else(|| SystemTime::now() - Duration::from_secs(86_400))
    }

    /// Recorded runs, newest first.
    ///
    /// # Errors
    ///
    /// Checkout and database errors ([`ErrorKind::Permission`](crate::ErrorKind::Permission)
    /// when the role may not read pglock's schema).
    pub async fn recent(&self) -> Result<Vec<Run>, Error> {
        let rows = self.read(|s| &s.runs).await?;
        Ok(rows.iter().map(Run::from_row).collect())
    }

    /// The slots of `once_per` jobs, from the later of [`since`](Runs::since) and
    /// the job's first recorded run up to the slot before the current one, for
    /// which no instance claimed a run, newest first. (Jobs with `slot = <expr>`
    /// name their own slots, so pglock cannot know which of them were due.)
    ///
    /// # Errors
    ///
    /// As [`recent`](Runs::recent).
    pub async fn missed(&self) -> Result<Vec<MissedSlot>, Error> {
        let rows = self.read(|s| &s.missed).await?;
        Ok(rows.iter().map(MissedSlot::from_row).collect())
    }

    /// Runs one of the two statements (same parameters: job, since, limit) on
    /// the alias's schema; a schema not installed yet reads as no rows.
    async fn read(
        &self,
        statement: fn(&'static SchemaSql) -> &'static String,
    ) -> Result<Vec<Row>, Error> {
        let conn = Connection::checkout(&self.alias).await?;
        let name = conn.config().schema_name();
        let since = self.since_or_default();
        let params: [Param<'_>; 3] = [
            (&self.job, Type::TEXT),
            (&since, Type::TIMESTAMPTZ),
            (&self.limit, Type::INT8),
        ];
        match conn
            .exec()
            .query(statement(schema::statements(name)), &params)
            .await
        {
            Err(e) if schema::is_missing(&e) => Ok(Vec::new()),
            r => r.map_err(|e| schema::read_error(e, name)),
        }
    }
}
