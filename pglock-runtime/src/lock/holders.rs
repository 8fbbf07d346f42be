//! Who holds a lock, looked up on a connection the caller gives: sessions from
//! `pg_locks` joined to `pg_stat_activity`.

use tokio_postgres::types::Type;

use crate::error::Error;
use crate::key::LockKey;
use crate::lock::names;
use crate::rows::Holder;
use crate::sql;
use crate::wire::exec::Exec;

/// The sessions other than `exec`'s holding `key`, with the lock's name when
/// this process knows it.
pub(crate) async fn advisory_holders(exec: Exec<'_>, key: LockKey) -> Result<Vec<Holder>, Error> {
    let (c, o, s) = key.pg_locks_ids();
    let rows = exec
        .query(
            sql::ADVISORY_HOLDERS,
            &[(&c, Type::OID), (&o, Type::OID), (&s, Type::INT2)],
        )
        .await?;
    let name = names::known(key);
    Ok(rows
        .iter()
        .filter_map(Holder::from_row)
        .map(|h| Holder {
            lock_name: name.as_deref().map(str::to_owned),
            ..h
        })
        .collect())
}

/// The sessions other than `exec`'s holding a lock on one of `relations`
/// (quoted, possibly schema-qualified names).
pub(crate) async fn relation_holders(
    exec: Exec<'_>,
    relations: &[String],
) -> Result<Vec<Holder>, Error> {
    let rows = exec
        .query(sql::RELATION_HOLDERS, &[(&relations, Type::TEXT_ARRAY)])
        .await?;
    Ok(rows.iter().filter_map(Holder::from_row).collect())
}
