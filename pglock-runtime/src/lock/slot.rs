//! Scheduled slots: the claim that rides on the lock statement (one round trip
//! for both, see `sql::SchemaSql::claim`), and the record of how a claimed run
//! ended.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::SystemTime;

use tokio_postgres::types::Type;
use tokio_postgres::Row;

use crate::error::{Error, ErrorKind};
use crate::key::LockKey;
use crate::run::{PreviousRun, RunOutcome};
use crate::slot::Slot;
use crate::sql::{ClaimForm, SchemaSql};
use crate::wire::exec::{Exec, Param};

/// What a scheduled call claims: which job, which slot, and whether a failed run
/// leaves the slot open (`retry`).
#[derive(Debug, Clone)]
pub(crate) struct SlotSpec {
    /// Named in the record of runs: the annotated function's path, or a name given.
    pub(crate) job: Cow<'static, str>,
    pub(crate) slot: Slot,
    pub(crate) retry: bool,
}

/// A claim's bind parameters, in the order `sql::SchemaSql::claim` numbers them
/// after the lock statement's own.
pub(crate) struct Claim<'a> {
    statements: &'static SchemaSql,
    job: &'a str,
    ids: (u32, u32, i16),
    label: Option<&'a str>,
    start: Option<SystemTime>,
    micros: Option<i64>,
    retry: bool,
    host: &'static str,
    pid: i32,
}

impl<'a> Claim<'a> {
    pub(crate) fn new(
        statements: &'static SchemaSql,
        spec: &'a SlotSpec,
        key: LockKey,
    ) -> Claim<'a> {
        let (label, start, micros) = match &spec.slot {
            Slot::Every(d) => (None, None, Some(Slot::micros(*d))),
            Slot::Named { label, start } => (Some(&**label), *start, None),
        };
        Claim {
            statements,
            job: &spec.job,
            ids: key.pg_locks_ids(),
            label,
            start,
            micros,
            retry: spec.retry,
            host: host(),
            pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
        }
    }

    /// The lock-and-claim statement for a key kind, level and wait form.
    pub(crate) fn statement(&self, key_kind: usize, xact: usize, form: ClaimForm) -> &'static str {
        &self.statements.claim[key_kind][xact][form as usize]
    }

    /// `lock` (the lock statement's parameters) followed by the claim's.
    pub(crate) fn params<'p>(&'p self, mut lock: Vec<Param<'p>>) -> Vec<Param<'p>> {
        lock.extend_from_slice(&[
            (&self.job, Type::TEXT),
            (&self.ids.0, Type::OID),
            (&self.ids.1, Type::OID),
            (&self.ids.2, Type::INT2),
            (&self.label, Type::TEXT),
            (&self.start, Type::TIMESTAMPTZ),
            (&self.micros, Type::INT8),
            (&self.retry, Type::BOOL),
            (&self.host, Type::TEXT),
            (&self.pid, Type::INT4),
        ]);
        lock
    }

    /// Reads a claim's row (the lock was taken): the run to do, or the earlier
    /// run that took the slot.
    pub(crate) fn read(&self, row: &Row) -> Claimed {
        match row.get::<_, Option<i32>>(1) {
            Some(attempt) => Claimed::Run(ClaimedRun {
                statements: self.statements,
                slot: row.get(2),
                attempt,
            }),
            None => Claimed::AlreadyRan(PreviousRun::from_claim_row(row)),
        }
    }
}

/// What a claim found, once the lock was taken.
#[derive(Debug)]
pub(crate) enum Claimed {
    /// The slot is this call's to run.
    Run(ClaimedRun),
    /// Another run (here or elsewhere) has the slot.
    AlreadyRan(PreviousRun),
}

/// A slot this call claimed: what [`ClaimedRun::finish`] updates.
#[derive(Debug)]
pub(crate) struct ClaimedRun {
    statements: &'static SchemaSql,
    slot: String,
    attempt: i32,
}

impl ClaimedRun {
    /// [`finish`](ClaimedRun::finish) as one literal statement, to send in a
    /// batch with others (the slot's label quoted by pglock).
    pub(crate) fn finish_literal(&self, key: LockKey, outcome: RunOutcome) -> String {
        self.statements.finish_literal(
            key.pg_locks_ids(),
            &self.slot,
            self.attempt,
            outcome.as_str(),
        )
    }

    /// Records how the run ended.
    pub(crate) async fn finish(
        &self,
        exec: Exec<'_>,
        key: LockKey,
        outcome: RunOutcome,
    ) -> Result<(), Error> {
        let (c, o, s) = key.pg_locks_ids();
        let outcome = outcome.as_str();
        exec.query(
            &self.statements.finish,
            &[
                (&c, Type::OID),
                (&o, Type::OID),
                (&s, Type::INT2),
                (&self.slot, Type::TEXT),
                (&self.attempt, Type::INT4),
                (&outcome, Type::TEXT),
            ],
        )
        .await
        .map(drop)
    }
}

/// The call did not run: its slot already ran.
pub(crate) fn already_ran(previous: PreviousRun, job: &str) -> Error {
    Error::new(
        ErrorKind::AlreadyRan,
        format!("`{job}` already ran in this slot: {previous}"),
    )
    .with_previous_run(previous)
}

/// This machine's host name, recorded with each run (empty where it cannot be
/// read).
pub(crate) fn host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .or_else(|| std::env::var("COMPUTERNAME").ok())
            .unwrap_or_default()
    })
}
