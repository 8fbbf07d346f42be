//! Lock names: the string a string-keyed lock was made from, interned per
//! process (a second name for the same key is caught at once) and recorded once
//! per alias and process in pglock's schema, so that views and the CLI show
//! `billing::send_invoices` instead of a 64-bit number.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio_postgres::types::Type;

use crate::error::Error;
use crate::key::{KeyHash, LockKey};
use crate::lock::schema;
use crate::lock::txn::in_transaction;
use crate::pool::connection::Connection;
use crate::sql::SchemaSql;
use crate::wire::exec::Exec;

/// A lock's name, as a call carries it.
#[derive(Debug, Clone)]
pub(crate) struct Name {
    pub(crate) name: Arc<str>,
    pub(crate) hash: KeyHash,
    /// Another name this process already gave the same key.
    pub(crate) clash: Option<Arc<str>>,
}

fn known_names() -> std::sync::MutexGuard<'static, HashMap<LockKey, Arc<str>>> {
    static KNOWN: OnceLock<Mutex<HashMap<LockKey, Arc<str>>>> = OnceLock::new();
    KNOWN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Interns `name` for `key` (no allocation when this process named the key the
/// same way before); a different earlier name is kept and reported as a clash.
pub(crate) fn intern(key: LockKey, name: &str, hash: KeyHash) -> Name {
    let mut known = known_names();
    match known.get(&key) {
        Some(n) if **n == *name => Name {
            name: n.clone(),
            hash,
            clash: None,
        },
        Some(other) => Name {
            name: Arc::from(name),
            hash,
            clash: Some(other.clone()),
        },
        None => {
            let n: Arc<str> = Arc::from(name);
            known.insert(key, n.clone());
            Name {
                name: n,
                hash,
                clash: None,
            }
        }
    }
}

/// The name this process gave `key`, if any (no round trip).
pub(crate) fn known(key: LockKey) -> Option<Arc<str>> {
    known_names().get(&key).cloned()
}

/// Two names that hash to one key: their locks would exclude each other.
pub(crate) fn clash(key: LockKey, ours: &str, theirs: &str) -> Error {
    Error::config(format!(
        "the lock names `{ours}` and `{theirs}` hash to the same key {key}: they would \
         silently exclude each other; rename one of them, or choose another `hash`"
    ))
    .with_key(key)
}

/// (alias, key) pairs whose name this process recorded, and aliases where it
/// cannot (no schema and no right to create it, a read-only server).
#[derive(Default)]
struct Recorded {
    /// Per key, the aliases it was recorded on (looked up without allocating:
    /// this runs on every call).
    done: HashMap<LockKey, Vec<Arc<str>>>,
    unavailable: Vec<Arc<str>>,
}

impl Recorded {
    fn skip(&self, alias: &str, key: LockKey) -> bool {
        self.unavailable.iter().any(|a| **a == *alias)
            || self
                .done
                .get(&key)
                .is_some_and(|aliases| aliases.iter().any(|a| **a == *alias))
    }
}

fn recorded() -> std::sync::MutexGuard<'static, Recorded> {
    static RECORDED: OnceLock<Mutex<Recorded>> = OnceLock::new();
    RECORDED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Records `name` for `key` on the connection's alias, once per process (later
/// calls cost a set look-up). Fails only for a clash: another name in this
/// process, or one recorded by another process. A connection inside a caller's
/// transaction is left alone (the next call records it); a schema pglock cannot
/// install is warned about once per alias, and names are not recorded there.
pub(crate) async fn record(
    conn: &Connection,
    fresh: bool,
    key: LockKey,
    name: &Name,
) -> Result<(), Error> {
    if let Some(other) = &name.clash {
        return Err(clash(key, &name.name, other));
    }
    if recorded().skip(conn.alias(), key) {
        return Ok(());
    }
    let alias: Arc<str> = Arc::from(conn.alias());
    let exec = conn.exec();
    if !fresh && in_transaction(exec).await? {
        return Ok(());
    }
    let config = conn.config();
    let statements = match schema::ready(
        &alias,
        config.schema_name(),
        config.pg_config().get_user(),
        exec,
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(target: "pglock", alias = &*alias, error = %e,
                "lock names are not recorded on this alias: views show their keys as numbers");
            recorded().unavailable.push(alias);
            return Ok(());
        }
    };
    match insert(exec, statements, key, name).await {
        Ok(Some(theirs)) if *theirs != *name.name => return Err(clash(key, &name.name, &theirs)),
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(target: "pglock", alias = &*alias, key = %key, error = %e,
                "could not record a lock name");
            recorded().unavailable.push(alias);
            return Ok(());
        }
    }
    recorded().done.entry(key).or_default().push(alias);
    Ok(())
}

/// The key's recorded name after the insert: ours, or the earlier one.
pub(crate) async fn insert(
    exec: Exec<'_>,
    statements: &'static SchemaSql,
    key: LockKey,
    name: &Name,
) -> Result<Option<String>, Error> {
    let (c, o, s) = key.pg_locks_ids();
    let (n, h) = (&*name.name, name.hash.name());
    let rows = exec
        .query(
            &statements.record_name,
            &[
                (&c, Type::OID),
                (&o, Type::OID),
                (&s, Type::INT2),
                (&n, Type::TEXT),
                (&h, Type::TEXT),
            ],
        )
        .await?;
    Ok(rows.first().map(|r| r.get(0)))
}

/// The names of `keys`: this process's, then the recorded ones (one query, none
/// when every key is known here or pglock's schema is not installed).
pub(crate) async fn lookup(
    exec: Exec<'_>,
    schema_name: &str,
    keys: impl IntoIterator<Item = LockKey>,
) -> HashMap<LockKey, String> {
    let mut names = HashMap::new();
    let mut unknown = Vec::new();
    for key in keys {
        match known(key) {
            Some(n) => {
                names.insert(key, n.to_string());
            }
            None if !names.contains_key(&key) => unknown.push(key),
            None => {}
        }
    }
    if unknown.is_empty() {
        return names;
    }
    let ids: Vec<(u32, u32, i16)> = unknown.iter().map(|k| k.pg_locks_ids()).collect();
    let classids: Vec<u32> = ids.iter().map(|i| i.0).collect();
    let objids: Vec<u32> = ids.iter().map(|i| i.1).collect();
    let objsubids: Vec<i16> = ids.iter().map(|i| i.2).collect();
    let statements = schema::statements(schema_name);
    // A missing schema (nothing recorded) or table reads as no names.
    if let Ok(rows) = exec
        .query(
            &statements.names_of,
            &[
                (&classids, Type::OID_ARRAY),
                (&objids, Type::OID_ARRAY),
                (&objsubids, Type::INT2_ARRAY),
            ],
        )
        .await
    {
        for r in rows {
            if let Some(key) = LockKey::from_pg_locks(r.get(0), r.get(1), r.get(2)) {
                names.insert(key, r.get(3));
            }
        }
    }
    names
}
