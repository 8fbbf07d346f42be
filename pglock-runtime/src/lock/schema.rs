//! pglock's own schema (the record of scheduled runs, lock names): found, or
//! created and migrated, once per alias and process, under an advisory lock so
//! that racing instances neither fail nor migrate twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::OnceCell;
use tokio_postgres::error::SqlState;

use crate::error::{Error, ErrorKind};
use crate::sql::{self, SchemaSql};
use crate::wire::exec::Exec;

/// Per alias: the statements of its schema, once the schema is known to be at
/// [`sql::SCHEMA_VERSION`] (or newer).
type Ready = Arc<OnceCell<&'static SchemaSql>>;

fn ready_cell(alias: &str) -> Ready {
    static READY: OnceLock<Mutex<HashMap<String, Ready>>> = OnceLock::new();
    let mut map = READY
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(cell) = map.get(alias) {
        return cell.clone();
    }
    map.entry(alias.to_owned()).or_default().clone()
}

/// The statements of schema `name`, built once per name for the process (they
/// are prepared per connection under their text, so they live as long as it).
pub(crate) fn statements(name: &str) -> &'static SchemaSql {
    static BUILT: OnceLock<Mutex<HashMap<String, &'static SchemaSql>>> = OnceLock::new();
    let mut map = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(built) = map.get(name) {
        return built;
    }
    map.entry(name.to_owned())
        .or_insert_with(|| Box::leak(Box::new(SchemaSql::new(name))))
}

/// The statements of the alias's schema, when this process already found it
/// ready (no round trip).
pub(crate) fn known(alias: &str) -> Option<&'static SchemaSql> {
    ready_cell(alias).get().copied()
}

/// The statements of the alias's schema `name`, installing or migrating it on
/// `exec` first if this process has not seen it at the current version yet.
/// `exec` must not be inside a transaction block (the migration is a
/// transaction of its own). `role` is named in the grants of the error a role
/// without `CREATE` gets.
pub(crate) async fn ready(
    alias: &str,
    name: &str,
    role: Option<&str>,
    exec: Exec<'_>,
) -> Result<&'static SchemaSql, Error> {
    let cell = ready_cell(alias);
    cell.get_or_try_init(|| async {
        let statements = statements(name);
        match version(exec, &statements.version).await {
            Ok(v) if v >= sql::SCHEMA_VERSION => {}
            Ok(_) | Err(Missing::Schema) => migrate(exec, statements, name, role).await?,
            Err(Missing::Other(e)) => return Err(e),
        }
        Ok(statements)
    })
    .await
    .copied()
}

enum Missing {
    Schema,
    Other(Error),
}

async fn version(exec: Exec<'_>, sql: &str) -> Result<i32, Missing> {
    match exec.client.simple_query(sql).await {
        Ok(rows) => Ok(first_value(&rows).and_then(|v| v.parse().ok()).unwrap_or(0)),
        Err(e)
            if matches!(
                e.code(),
                Some(&SqlState::INVALID_SCHEMA_NAME | &SqlState::UNDEFINED_TABLE)
            ) =>
        {
            Err(Missing::Schema)
        }
        Err(e) => Err(Missing::Other(Error::from_pg(e))),
    }
}

fn first_value(rows: &[tokio_postgres::SimpleQueryMessage]) -> Option<&str> {
    rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0),
        _ => None,
    })
}

/// Creates the schema if needed and runs the migrations it lacks, in one
/// transaction under the schema's advisory lock: a racing instance waits, then
/// finds the work done.
async fn migrate(
    exec: Exec<'_>,
    statements: &SchemaSql,
    name: &str,
    role: Option<&str>,
) -> Result<(), Error> {
    let run = async {
        exec.batch(&statements.begin_migration).await?;
        let rows = exec
            .client
            .simple_query(&statements.locked_version)
            .await
            .map_err(Error::from_pg)?;
        let from: i32 = first_value(&rows).and_then(|v| v.parse().ok()).unwrap_or(0);
        let from = usize::try_from(from).unwrap_or(0);
        for step in statements.migrations.iter().skip(from) {
            exec.batch(step).await?;
        }
        if from < statements.migrations.len() {
            exec.batch(&statements.set_version).await?;
            tracing::info!(target: "pglock", schema = name, from, to = sql::SCHEMA_VERSION,
                "pglock's schema installed or migrated");
        }
        exec.batch(sql::COMMIT).await
    };
    match run.await {
        Ok(()) => Ok(()),
        Err(e) => {
            // Leave no transaction open on the session, whatever failed.
            exec.batch(sql::ROLLBACK).await.ok();
            Err(schema_error(e, name, role))
        }
    }
}

/// A failed install, with the SQL an administrator can run instead when the
/// role may not create the schema.
fn schema_error(e: Error, name: &str, role: Option<&str>) -> Error {
    if e.sqlstate() != Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
        return e.with_context_keeping_kind(&format!("could not install pglock's schema `{name}`"));
    }
    Error::new(
        ErrorKind::Permission,
        format!(
            "pglock's schema `{name}` (the record of scheduled runs and lock names) is not \
             installed, and this role may not create it: have an administrator run the SQL \
             below (`pglock schema` prints it too), or grant this role CREATE on the database\n\n{}",
            sql::schema_script(name, role)
        ),
    )
    .with_source_of(e)
}

/// The schema, or one of its tables, does not exist (yet): nothing was recorded.
pub(crate) fn is_missing(e: &Error) -> bool {
    matches!(
        e.sqlstate(),
        Some(&SqlState::INVALID_SCHEMA_NAME | &SqlState::UNDEFINED_TABLE)
    )
}

/// A failed read of pglock's schema; a role without the grants is told which.
pub(crate) fn read_error(e: Error, name: &str) -> Error {
    if e.sqlstate() != Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
        return e;
    }
    let s = sql::quote_ident(name);
    Error::new(
        ErrorKind::Permission,
        format!(
            "this role may not read pglock's schema `{name}`: grant it with \
             `GRANT USAGE ON SCHEMA {s} TO <role>; GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN \
             SCHEMA {s} TO <role>;`"
        ),
    )
    .with_source_of(e)
}
