//! Fencing terms: the next term of a key whose lock this session holds, an
//! election (the wait for a lock and its term, in one round trip), and the terms
//! on record. The statements are pglock's schema's (`sql::SchemaSql`).

use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;

use crate::error::Error;
use crate::key::LockKey;
use crate::lock::schema;
use crate::lock::slot::host;
use crate::pool::connection::Connection;
use crate::sql::{self, SchemaSql};
use crate::term::Term;
use crate::wire::exec::{Exec, KeyParams, Param};

/// What a term is recorded with besides its key: the name, this host and
/// process.
struct Grantee<'a> {
    ids: (u32, u32, i16),
    name: &'a str,
    host: &'static str,
    pid: i32,
}

impl<'a> Grantee<'a> {
    fn new(key: LockKey, name: &'a str) -> Grantee<'a> {
        Grantee {
            ids: key.pg_locks_ids(),
            name,
            host: host(),
            pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
        }
    }

    fn params(&self) -> [Param<'_>; 6] {
        [
            (&self.ids.0, Type::OID),
            (&self.ids.1, Type::OID),
            (&self.ids.2, Type::INT2),
            (&self.name, Type::TEXT),
            (&self.host, Type::TEXT),
            (&self.pid, Type::INT4),
        ]
    }
}

/// The next term of `key`, whose exclusive lock the session of `exec` holds
/// (a fenced lock, just granted).
pub(crate) async fn next(
    exec: Exec<'_>,
    statements: &'static SchemaSql,
    key: LockKey,
    name: &str,
) -> Result<u64, Error> {
    let grantee = Grantee::new(key, name);
    let row = exec
        .one(&statements.next_term, &grantee.params())
        .await
        .map_err(|e| name_taken(e, key, name))?;
    Ok(term_of(row.get(0)))
}

/// Waits on the session of `exec` for `key`'s exclusive session lock, at most
/// `renew` (a `lock_timeout` value, for the wait statement alone), and takes
/// its next term in the same round trip. `Ok(Some(term))`: elected, the lock
/// is held (perhaps twice: release it with [`sql::UNLOCK_ALL`]);
/// `Ok(None)`: the wait ran out, nothing is held.
///
/// The term statement travels right behind the wait and takes the term only
/// if a `pg_try_advisory_lock` of its own succeeds (re-entrant when the wait
/// was granted), so a wait that timed out takes no term. On an error the
/// session may hold the lock: close it.
pub(crate) async fn elect(
    exec: Exec<'_>,
    statements: &'static SchemaSql,
    key: LockKey,
    name: &str,
    renew: &str,
) -> Result<Option<u64>, Error> {
    let kp = KeyParams::new(key);
    let kind = kp.kind();
    let renew = renew.to_owned();
    let no_guard: Option<i32> = None;
    let wait_params = kp.with_guard(&[(&renew, Type::TEXT)], Some(&no_guard));
    let grantee = Grantee::new(key, name);
    let term_params = kp.with(&grantee.params());
    let (waited, taken) = futures_util::future::join(
        exec.query(sql::LOCK_WITH_TIMEOUT[kind][0][0], &wait_params),
        exec.query(&statements.take_term[kind], &term_params),
    )
    .await;
    match waited {
        Ok(_) => {}
        Err(e) if e.sqlstate() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {}
        Err(e) => return Err(e),
    }
    let rows = taken.map_err(|e| name_taken(e, key, name))?;
    Ok(rows.first().map(|r| term_of(r.get(0))))
}

/// The terms on record (of `name`, or all), with whether each is still held.
pub(crate) async fn read(
    exec: Exec<'_>,
    statements: &'static SchemaSql,
    name: Option<&str>,
) -> Result<Vec<Term>, Error> {
    let rows = exec
        .query(&statements.terms, &[(&name, Type::TEXT)])
        .await?;
    Ok(rows.iter().map(Term::from_row).collect())
}

/// The terms on record on `alias` (of `name`, or all), read on a pooled
/// connection; none where pglock's schema does not exist yet.
pub(crate) async fn on_record(alias: &str, name: Option<&str>) -> Result<Vec<Term>, Error> {
    let conn = Connection::checkout(alias).await?;
    let schema_name = conn.config().schema_name();
    match read(conn.exec(), schema::statements(schema_name), name).await {
        Err(e) if schema::is_missing(&e) => Ok(Vec::new()),
        r => r.map_err(|e| schema::read_error(e, schema_name)),
    }
}

fn term_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Two keys, one name (a string hashed two ways): the name's terms belong to
/// the first key that took one.
fn name_taken(e: Error, key: LockKey, name: &str) -> Error {
    if e.sqlstate() != Some(&SqlState::UNIQUE_VIOLATION) {
        return e;
    }
    Error::usage(format!(
        "the name `{name}` already has fencing terms under another key (the same string hashed \
         with another `KeyHash`?): a name's terms belong to one key; use another name"
    ))
    .with_key(key)
    .with_source_of(e)
}
