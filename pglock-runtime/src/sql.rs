//! Every SQL statement pglock sends, in one place. Values are bind parameters;
//! identifiers (table names) are quoted by [`quote_ident`] before they are joined
//! into `LOCK TABLE`.

/// Facts read once per new connection.
pub(crate) const CONNECTION_INFO: &str =
    "SELECT pg_backend_pid(), pg_is_in_recovery(), current_setting('lock_timeout')";

/// Whether a transaction block is open. Outside a block each statement is its own
/// transaction, so its start time is the statement's; inside one it is `BEGIN`'s.
/// Exact only with the simple-query protocol: with the extended protocol, Parse
/// starts the transaction and Bind sets a later statement time.
pub(crate) const IN_TRANSACTION: &str = "SELECT now() <> statement_timestamp()";

/// What a connection must look like to go back to the pool: no transaction block,
/// no advisory lock, and the `lock_timeout` it had when it was opened. Sent with the
/// simple-query protocol so that the transaction check above is exact; an aborted
/// transaction makes it fail, which also means "dirty".
pub(crate) const RETURN_CHECK: &str = "SELECT now() = statement_timestamp(), \
     (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()), \
     current_setting('lock_timeout')";

/// [`RETURN_CHECK`] behind a transaction pooler, where only the transaction state
/// belongs to this client.
pub(crate) const RETURN_CHECK_BEHIND_POOLER: &str = "SELECT now() = statement_timestamp()";

pub(crate) const BEGIN: &str = "BEGIN";
pub(crate) const COMMIT: &str = "COMMIT";
pub(crate) const ROLLBACK: &str = "ROLLBACK";
pub(crate) const SAVEPOINT: &str = "SAVEPOINT pglock_acquire";
pub(crate) const RELEASE_SAVEPOINT: &str = "RELEASE SAVEPOINT pglock_acquire";
pub(crate) const ROLLBACK_TO_SAVEPOINT: &str =
    "ROLLBACK TO SAVEPOINT pglock_acquire; RELEASE SAVEPOINT pglock_acquire";

/// Around the body of a session-lock scope nested in a caller's transaction, so that
/// a database error in the body does not keep the unlock from running
/// (django-pglocks #21).
pub(crate) const BODY_SAVEPOINT: &str = "SAVEPOINT pglock_body";
pub(crate) const RELEASE_BODY_SAVEPOINT: &str = "RELEASE SAVEPOINT pglock_body";
pub(crate) const ROLLBACK_TO_BODY_SAVEPOINT: &str =
    "ROLLBACK TO SAVEPOINT pglock_body; RELEASE SAVEPOINT pglock_body";

/// Sets `lock_timeout` for the current transaction only and returns the value it
/// replaces. Outside a transaction block the "transaction" is the statement itself.
pub(crate) const SET_LOCAL_LOCK_TIMEOUT: &str =
    "SELECT current_setting('lock_timeout'), set_config('lock_timeout', $1, true)";

/// Sets `lock_timeout` for the session or the transaction, whichever applies (a
/// `SET` inside a transaction block behaves like `SET LOCAL`), returning the previous
/// value and whether a transaction block is open. Sent with the simple-query
/// protocol (see [`IN_TRANSACTION`]); `{}` is a value pglock formats itself.
pub(crate) const SET_SCOPED_LOCK_TIMEOUT: &str = "SELECT current_setting('lock_timeout'), \
     set_config('lock_timeout', '{}', now() <> statement_timestamp()), \
     now() <> statement_timestamp()";

/// Restores a value saved from [`SET_SCOPED_LOCK_TIMEOUT`]; `$2` is whether it is
/// transaction-local.
pub(crate) const RESTORE_LOCK_TIMEOUT: &str = "SELECT set_config('lock_timeout', $1, $2)";

/// One statement per acquisition function: (session, xact) × (exclusive, shared).
/// Session-level forms take a last parameter, the backend pid the connection was
/// opened on (or NULL): behind a transaction-pooling proxy the statement may run on
/// another server session, and then it takes no lock and returns no row.
/// `[key kind][xact][shared]`; the 64-bit form takes `$1::int8`, the pair form
/// `$1::int4, $2::int4`.
pub(crate) const LOCK: [[[&str; 2]; 2]; 2] = [
    [
        [
            "SELECT pg_advisory_lock($1) WHERE $2::int4 IS NULL OR pg_backend_pid() = $2",
            "SELECT pg_advisory_lock_shared($1) WHERE $2::int4 IS NULL OR pg_backend_pid() = $2",
        ],
        [
            "SELECT pg_advisory_xact_lock($1)",
            "SELECT pg_advisory_xact_lock_shared($1)",
        ],
    ],
    [
        [
            "SELECT pg_advisory_lock($1, $2) WHERE $3::int4 IS NULL OR pg_backend_pid() = $3",
            "SELECT pg_advisory_lock_shared($1, $2) WHERE $3::int4 IS NULL OR pg_backend_pid() = $3",
        ],
        [
            "SELECT pg_advisory_xact_lock($1, $2)",
            "SELECT pg_advisory_xact_lock_shared($1, $2)",
        ],
    ],
];

/// Like [`LOCK`], with the `lock_timeout` for this statement alone set in the same
/// statement (outside a transaction block the statement is its own transaction, so
/// the setting ends with it). The FROM-subquery runs before the lock is requested.
pub(crate) const LOCK_WITH_TIMEOUT: [[[&str; 2]; 2]; 2] = [
    [
        [
            "SELECT pg_advisory_lock($1) FROM (SELECT set_config('lock_timeout', $2, true)) s WHERE $3::int4 IS NULL OR pg_backend_pid() = $3",
            "SELECT pg_advisory_lock_shared($1) FROM (SELECT set_config('lock_timeout', $2, true)) s WHERE $3::int4 IS NULL OR pg_backend_pid() = $3",
        ],
        [
            "SELECT pg_advisory_xact_lock($1) FROM (SELECT set_config('lock_timeout', $2, true)) s",
            "SELECT pg_advisory_xact_lock_shared($1) FROM (SELECT set_config('lock_timeout', $2, true)) s",
        ],
    ],
    [
        [
            "SELECT pg_advisory_lock($1, $2) FROM (SELECT set_config('lock_timeout', $3, true)) s WHERE $4::int4 IS NULL OR pg_backend_pid() = $4",
            "SELECT pg_advisory_lock_shared($1, $2) FROM (SELECT set_config('lock_timeout', $3, true)) s WHERE $4::int4 IS NULL OR pg_backend_pid() = $4",
        ],
        [
            "SELECT pg_advisory_xact_lock($1, $2) FROM (SELECT set_config('lock_timeout', $3, true)) s",
            "SELECT pg_advisory_xact_lock_shared($1, $2) FROM (SELECT set_config('lock_timeout', $3, true)) s",
        ],
    ],
];

/// The no-wait forms, returning whether the lock was taken. Session-level forms
/// take the session guard of [`LOCK`] as their last parameter. (Folding the holder
/// look-up into this statement was tried: the planner flattens the subquery, puts
/// the try into a join filter that may run once per joined row, and scans
/// `pg_locks` even when the try succeeds. The holders are a second statement, on
/// the busy path only.)
pub(crate) const TRY_LOCK: [[[&str; 2]; 2]; 2] = [
    [
        [
            "SELECT pg_try_advisory_lock($1) WHERE $2::int4 IS NULL OR pg_backend_pid() = $2",
            "SELECT pg_try_advisory_lock_shared($1) WHERE $2::int4 IS NULL OR pg_backend_pid() = $2",
        ],
        [
            "SELECT pg_try_advisory_xact_lock($1)",
            "SELECT pg_try_advisory_xact_lock_shared($1)",
        ],
    ],
    [
        [
            "SELECT pg_try_advisory_lock($1, $2) WHERE $3::int4 IS NULL OR pg_backend_pid() = $3",
            "SELECT pg_try_advisory_lock_shared($1, $2) WHERE $3::int4 IS NULL OR pg_backend_pid() = $3",
        ],
        [
            "SELECT pg_try_advisory_xact_lock($1, $2)",
            "SELECT pg_try_advisory_xact_lock_shared($1, $2)",
        ],
    ],
];

/// `[key kind][shared]`, returning whether the lock was held.
pub(crate) const UNLOCK: [[&str; 2]; 2] = [
    [
        "SELECT pg_advisory_unlock($1)",
        "SELECT pg_advisory_unlock_shared($1)",
    ],
    [
        "SELECT pg_advisory_unlock($1, $2)",
        "SELECT pg_advisory_unlock_shared($1, $2)",
    ],
];

/// Whether this backend holds the advisory lock `(classid, objid, objsubid)` in
/// `mode` (after a lock timeout, the grant may have won the race).
pub(crate) const HOLDS_ADVISORY: &str = "SELECT EXISTS (SELECT 1 FROM pg_locks \
     WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted \
     AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND classid = $1 AND objid = $2 AND objsubid = $3 AND mode = $4)";

/// The sessions other than ours holding the advisory lock `(classid, objid,
/// objsubid)` in this database.
pub(crate) const ADVISORY_HOLDERS: &str = "SELECT a.pid, a.application_name, \
     a.usename::text, host(a.client_addr), a.backend_start, a.xact_start, a.state_change, \
     a.state, a.query, l.mode \
     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
     WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid() \
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
     AND l.classid = $1 AND l.objid = $2 AND l.objsubid = $3 \
     ORDER BY a.backend_start";

/// The sessions other than ours holding a lock on any of the relations `$1`
/// (regclass names as text).
pub(crate) const RELATION_HOLDERS: &str = "SELECT DISTINCT ON (a.pid) a.pid, \
     a.application_name, a.usename::text, host(a.client_addr), a.backend_start, \
     a.xact_start, a.state_change, a.state, a.query, l.mode \
     FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
     WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid() \
     AND l.relation IN (SELECT to_regclass(n)::oid FROM unnest($1::text[]) n) \
     ORDER BY a.pid";

/// Columns of a backend in `pg_stat_activity` (`a`), read by `Backend::from_row`
/// starting at the given column.
macro_rules! backend_columns {
    () => {
        "a.pid, a.application_name, a.usename::text, host(a.client_addr), a.state, a.query, \
         a.query_start, a.xact_start, a.backend_start, a.state_change, a.backend_type, \
         a.wait_event_type, a.wait_event, clock_timestamp()"
    };
}

/// Locks in this database (and shared objects), with their backends, filtered.
/// Waiting locks first, then the longest-held.
pub(crate) const LOCKS: &str = concat!(
    "SELECT ",
    backend_columns!(),
    ", l.locktype, l.mode, l.granted, l.waitstart, \
     CASE WHEN c.oid IS NOT NULL THEN format('%I.%I', n.nspname, c.relname) END, \
     c.relkind::text, l.classid, l.objid, l.objsubid, \
     coalesce(l.virtualxid, l.transactionid::text) \
     FROM pg_locks l \
     JOIN pg_stat_activity a ON a.pid = l.pid \
     LEFT JOIN pg_class c ON l.relation IS NOT NULL AND c.oid = l.relation \
     LEFT JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE l.pid <> pg_backend_pid() AND a.datname = current_database() \
     AND ($1::int4[] IS NULL OR l.pid = ANY($1)) \
     AND ($2::bool IS NULL OR l.granted = $2) \
     AND ($3::text IS NULL OR l.relation = to_regclass($3)::oid) \
     AND ($4::int2 IS NULL OR (l.locktype = 'advisory' AND l.objsubid = $4 \
          AND l.classid = $5 AND l.objid = $6)) \
     AND ($7::text IS NULL OR a.application_name = $7) \
     AND ($8::text IS NULL OR l.locktype = $8) \
     AND ($9::float8 IS NULL OR extract(epoch FROM clock_timestamp() \
          - coalesce(l.waitstart, a.xact_start, a.state_change, a.backend_start)) >= $9) \
     ORDER BY l.granted, coalesce(l.waitstart, a.xact_start, a.state_change, a.backend_start), \
     l.pid \
     LIMIT $10"
);

/// Backends of this database by pid.
pub(crate) const BACKENDS: &str = concat!(
    "SELECT ",
    backend_columns!(),
    " FROM pg_stat_activity a WHERE a.pid = ANY($1)"
);

/// Blocked → blocking pairs of backends of this database (`pg_blocking_pids`
/// covers every heavyweight lock, advisory locks included).
pub(crate) const BLOCKING_PAIRS: &str = "SELECT w.pid, b.pid \
     FROM pg_stat_activity w CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS b(pid) \
     WHERE w.datname = current_database() AND w.pid <> pg_backend_pid() \
     ORDER BY w.pid, b.pid";

/// The backends blocking `$1`: directly, or also transitively when `$2`.
pub(crate) const BLOCKERS: &str = concat!(
    "WITH RECURSIVE blockers(pid, depth) AS ( \
       SELECT unnest(pg_blocking_pids($1)), 1 \
       UNION \
       SELECT unnest(pg_blocking_pids(b.pid)), b.depth + 1 FROM blockers b \
       WHERE $2 AND b.depth < 8 \
     ) \
     SELECT ",
    backend_columns!(),
    ", min(b.depth) FROM blockers b JOIN pg_stat_activity a ON a.pid = b.pid \
     WHERE b.pid <> $1 GROUP BY a.pid, a.application_name, a.usename, a.client_addr, a.state, \
     a.query, a.query_start, a.xact_start, a.backend_start, a.state_change, a.backend_type, \
     a.wait_event_type, a.wait_event"
);

/// Signals backends; returns the pids actually signalled (never our own session).
pub(crate) const TERMINATE: &str = "SELECT pid FROM unnest($1::int4[]) AS p(pid) \
     WHERE pid <> pg_backend_pid() AND pg_terminate_backend(pid)";
pub(crate) const CANCEL: &str = "SELECT pid FROM unnest($1::int4[]) AS p(pid) \
     WHERE pid <> pg_backend_pid() AND pg_cancel_backend(pid)";

/// `LOCK TABLE <quoted names> IN <mode> MODE [NOWAIT]`; `tables` are already
/// quoted (see [`quote_ident`]), `mode` is one of the eight fixed mode names.
pub(crate) fn lock_table(tables: &[String], mode: &str, nowait: bool) -> String {
    format!(
        "LOCK TABLE {} IN {mode} MODE{}",
        tables.join(", "),
        if nowait { " NOWAIT" } else { "" }
    )
}

/// Quotes an SQL identifier: `"` around it, inner `"` doubled.
pub(crate) fn quote_ident(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len() + 2);
    out.push('"');
    for c in ident.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Formats a duration as a `lock_timeout` value the server accepts: whole
/// milliseconds (rounded up so that 0.5 ms does not become "no limit"), or `"0"`
/// for no limit.
pub(crate) fn lock_timeout_value(d: Option<std::time::Duration>) -> String {
    match d {
        None => "0".to_owned(),
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000).max(1);
            format!("{ms}ms")
        }
    }
}

fn advisory_fn(name: &str, key: crate::LockKey, shared: bool) -> String {
    let suffix = if shared { "_shared" } else { "" };
    match key {
        crate::LockKey::Int(k) => format!("{name}{suffix}('{k}'::int8)"),
        crate::LockKey::Pair(a, b) => format!("{name}{suffix}('{a}'::int4, '{b}'::int4)"),
    }
}

/// An unlock as one literal statement, for fire-and-forget sends (integers only,
/// formatted by pglock).
pub(crate) fn unlock_literal(key: crate::LockKey, shared: bool) -> String {
    format!("SELECT {}", advisory_fn("pg_advisory_unlock", key, shared))
}

/// An unlock that runs only if this session holds the lock.
pub(crate) fn unlock_if_held_literal(key: crate::LockKey, shared: bool) -> String {
    let (c, o, s) = key.pg_locks_ids();
    let mode = if shared { "ShareLock" } else { "ExclusiveLock" };
    format!(
        "SELECT {} FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() \
         AND granted AND classid = {c} AND objid = {o} AND objsubid = {s} AND mode = '{mode}' \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        advisory_fn("pg_advisory_unlock", key, shared)
    )
}

/// `SET_SCOPED_LOCK_TIMEOUT` with pglock's own formatted value in place.
pub(crate) fn set_scoped_lock_timeout(value: &str) -> String {
    SET_SCOPED_LOCK_TIMEOUT.replace("{}", &quote_literal_body(value))
}

/// A restore of a saved `lock_timeout` as one literal statement, for
/// fire-and-forget sends.
pub(crate) fn restore_lock_timeout_literal(prev: &str, local: bool) -> String {
    format!(
        "SELECT set_config('lock_timeout', '{}', {local})",
        quote_literal_body(prev)
    )
}

/// The inside of a single-quoted SQL literal: `'` doubled. (pglock only formats
/// values it produced or read from the server; the `standard_conforming_strings`
/// default makes backslashes plain characters.)
fn quote_literal_body(s: &str) -> String {
    s.replace('\'', "''")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn literals() {
        assert_eq!(
            unlock_literal(crate::LockKey::Int(i64::MIN), false),
            "SELECT pg_advisory_unlock('-9223372036854775808'::int8)"
        );
        assert_eq!(
            unlock_literal(crate::LockKey::Pair(-1, 2), true),
            "SELECT pg_advisory_unlock_shared('-1'::int4, '2'::int4)"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("plain"), "\"plain\"");
        assert_eq!(quote_ident("a\"b; DROP"), "\"a\"\"b; DROP\"");
    }

    #[test]
    fn lock_timeout_values() {
        assert_eq!(lock_timeout_value(None), "0");
        assert_eq!(lock_timeout_value(Some(Duration::from_secs(2))), "2000ms");
        assert_eq!(lock_timeout_value(Some(Duration::from_micros(1))), "1ms");
        assert_eq!(lock_timeout_value(Some(Duration::from_micros(1500))), "2ms");
    }
}
