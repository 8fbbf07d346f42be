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

/// What a connection handed to user code must look like to go back to the pool,
/// and the reset that makes it so. Sent with the simple-query protocol so that
/// the transaction check is exact; an aborted transaction makes it fail, which
/// also means "dirty".
///
/// Its first row checks what cannot be reset without closing the session: no
/// transaction block (open blocks are the caller's to end), and the
/// `lock_timeout` the session had when it was opened (pglock's own restore ran);
/// it releases every session-level advisory lock (`pg_advisory_unlock_all()`:
/// whatever pglock took on the session was released before the check runs, so
/// what is left is the body's own), and it lists the `DEALLOCATE`s of the
/// SQL-level prepared statements (NULL when there are none: the common case
/// costs no second statement; pglock's own, protocol-level ones stay). Then it
/// resets what else user code may have changed, so that the next, unrelated
/// checkout gets a clean session: the role and session authorization, every
/// setting (`search_path`, `statement_timeout`, …), `LISTEN`s, open cursors,
/// temporary tables and sequence state. Its last row says whether the session
/// now runs as the user it connected as.
///
/// Nothing in it reads `pg_locks`, whose cost grows with every lock held on the
/// server: each statement touches only this session's own state.
pub(crate) const RETURN_CHECK: &str = "SELECT now() = statement_timestamp(), \
     current_setting('lock_timeout'), pg_advisory_unlock_all() IS NULL, \
     (SELECT string_agg('DEALLOCATE ' || quote_ident(name), '; ') \
       FROM pg_prepared_statements WHERE from_sql); \
     RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; UNLISTEN *; CLOSE ALL; \
     DISCARD TEMP; DISCARD SEQUENCES; \
     SELECT current_user = session_user";

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
/// `mode`.
macro_rules! holds_advisory {
    () => {
        "SELECT EXISTS (SELECT 1 FROM pg_locks \
         WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         AND classid = $1 AND objid = $2 AND objsubid = $3 AND mode = $4)"
    };
}

/// [`holds_advisory!`] after a lock timeout (the grant may have won the race): an
/// error path only, since it reads `pg_locks`.
pub(crate) const HOLDS_ADVISORY: &str = holds_advisory!();

/// The comment that starts the heartbeat's statement: `pg_stat_activity.query` of a
/// session whose last statement was the heartbeat starts with it
/// ([`Backend::is_pglock_heartbeat`](crate::Backend::is_pglock_heartbeat)).
pub(crate) const HEARTBEAT_TAG: &str = "/* pglock heartbeat */";

/// The server's own timers on a session that holds a lock (`$1`, e.g. `6000ms`):
/// a holder whose client stopped talking (frozen, or cut off without a FIN) is
/// ended by the server, which frees its locks. Set by the first heartbeat check
/// of a lock, above the client's own detection deadline; while the holder is
/// alive its heartbeat keeps the session from ever being idle that long.
pub(crate) const SET_SERVER_TIMERS: &str = "/* pglock heartbeat */ SELECT \
     set_config('idle_session_timeout', $1, false), \
     set_config('idle_in_transaction_session_timeout', $1, false)";

/// Undoes [`SET_SERVER_TIMERS`] when the lock is released, before the session
/// serves anyone else.
pub(crate) const RESET_SERVER_TIMERS: &str =
    "RESET idle_session_timeout; RESET idle_in_transaction_session_timeout";

/// The heartbeat's check of a held lock, tagged with [`HEARTBEAT_TAG`]: its
/// answer, within the answer deadline, proves that the session is alive and
/// answering. A live session keeps its session-level locks and its transaction
/// keeps its transaction-level ones, so while only pglock's statements run on
/// the session that is all a lock needs; it costs what a `SELECT 1` costs
/// whatever the server's lock count (unlike a read of `pg_locks`, which copies
/// the server's whole lock table). What it cannot see, SQL run on the session
/// by user code that releases the lock (`pg_advisory_unlock`,
/// `pg_advisory_unlock_all()`, `DISCARD ALL`), is reported by the release: the
/// unlock then returns `false`.
pub(crate) const HEARTBEAT: &str = "/* pglock heartbeat */ SELECT 1";

/// [`HEARTBEAT`] for a transaction-level lock on a connection handed to user
/// code, which may have ended pglock's transaction (and the lock with it):
/// whether a transaction block is open, with the simple-query protocol (see
/// [`IN_TRANSACTION`]).
pub(crate) const HEARTBEAT_IN_TRANSACTION: &str =
    "/* pglock heartbeat */ SELECT now() <> statement_timestamp()";

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

/// What session `$1` is waiting for, if anything: its lock request that is not
/// granted, with one row per session blocking it (`pg_blocking_pids`: holders
/// of a conflicting lock and sessions queued ahead for one), each with its mode
/// on the same object (granted first). Columns: a holder's (`Holder::from_row`,
/// NULL when none is named), then the locktype, the mode requested, the
/// relation (also for a row wait: the relation of the tuple lock the waiter
/// holds) and the transaction waited on. Read by `LockWait::from_rows`.
///
/// Periodic (`lock/waits.rs` runs it every third of a `lock_timeout` body's
/// limit), so it reads `pg_locks`, whose cost grows with every lock on the
/// server, only while session `$1` is waiting for a lock: the `EXISTS` on its own
/// activity row (`pg_stat_get_activity($1)`, one backend's status) refers to no
/// column of the query, so the planner makes it a one-time filter evaluated
/// before anything else, and when it is false the `pg_locks` scans never run.
pub(crate) const LOCK_WAIT: &str = "SELECT a.pid, a.application_name, a.usename::text, \
     host(a.client_addr), a.backend_start, a.xact_start, a.state_change, a.state, a.query, \
     (SELECT h.mode FROM pg_locks h WHERE h.pid = b.pid \
       AND (h.locktype, h.database, h.relation, h.page, h.tuple, h.virtualxid, \
            h.transactionid, h.classid, h.objid, h.objsubid) \
       IS NOT DISTINCT FROM (w.locktype, w.database, w.relation, w.page, w.tuple, \
            w.virtualxid, w.transactionid, w.classid, w.objid, w.objsubid) \
       ORDER BY h.granted DESC LIMIT 1), \
     w.locktype, w.mode, \
     (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c \
       JOIN pg_namespace n ON n.oid = c.relnamespace \
       WHERE c.oid = coalesce(w.relation, (SELECT t.relation FROM pg_locks t \
         WHERE t.pid = w.pid AND t.locktype = 'tuple' AND t.granted LIMIT 1))), \
     coalesce(w.transactionid::text, w.virtualxid) \
     FROM pg_locks w \
     LEFT JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS b(pid) ON true \
     LEFT JOIN pg_stat_activity a ON a.pid = b.pid \
     WHERE NOT w.granted AND w.pid = $1 \
     AND EXISTS (SELECT 1 FROM pg_stat_get_activity($1) s WHERE s.wait_event_type = 'Lock') \
     ORDER BY a.backend_start";

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

/// The backends blocking `$1`: directly, or also transitively when `$2`. After
/// the backend columns: the depth, whether the blocker's role is a superuser,
/// and whether it is in this database. A row whose `backend_type` is NULL is a
/// session this role may not see (no `pg_read_all_stats`).
pub(crate) const BLOCKERS: &str = concat!(
    "WITH RECURSIVE blockers(pid, depth) AS ( \
       SELECT unnest(pg_blocking_pids($1)), 1 \
       UNION \
       SELECT unnest(pg_blocking_pids(b.pid)), b.depth + 1 FROM blockers b \
       WHERE $2 AND b.depth < 8 \
     ) \
     SELECT ",
    backend_columns!(),
    ", min(b.depth), coalesce(bool_or(r.rolsuper), false), \
     coalesce(a.datname = current_database(), false) \
     FROM blockers b JOIN pg_stat_activity a ON a.pid = b.pid \
     LEFT JOIN pg_roles r ON r.oid = a.usesysid \
     WHERE b.pid <> $1 GROUP BY a.pid, a.application_name, a.usename, a.client_addr, a.state, \
     a.query, a.query_start, a.xact_start, a.backend_start, a.state_change, a.backend_type, \
     a.wait_event_type, a.wait_event, a.datname"
);

/// Signals backends; returns the pids actually signalled (never our own session).
pub(crate) const TERMINATE: &str = "SELECT pid FROM unnest($1::int4[]) AS p(pid) \
     WHERE pid <> pg_backend_pid() AND pg_terminate_backend(pid)";
pub(crate) const CANCEL: &str = "SELECT pid FROM unnest($1::int4[]) AS p(pid) \
     WHERE pid <> pg_backend_pid() AND pg_cancel_backend(pid)";

/// Signals one backend (the watchdog: one statement per backend, so that a
/// refusal, such as for a superuser's session, fails only its own); `true`
/// when signalled, `false` when it had already gone.
pub(crate) const TERMINATE_ONE: &str = "SELECT pg_terminate_backend($1)";
pub(crate) const CANCEL_ONE: &str = "SELECT pg_cancel_backend($1)";

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

/// Any text as an escape-string literal `E'…'`: backslashes and quotes doubled,
/// so that it reads back as itself whatever `standard_conforming_strings` is.
pub(crate) fn quote_literal(s: &str) -> String {
    format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// The inside of a single-quoted SQL literal: `'` doubled. (pglock only formats
/// values it produced or read from the server; the `standard_conforming_strings`
/// default makes backslashes plain characters.)
fn quote_literal_body(s: &str) -> String {
    s.replace('\'', "''")
}

/// The version of pglock's own schema this release writes. Each entry of
/// [`migrations`] takes the schema one version up.
pub(crate) const SCHEMA_VERSION: i32 = 2;

/// pglock's own schema, version by version: `migrations(s)[i]` takes it from
/// version `i` to `i + 1`. Each step is idempotent (`IF NOT EXISTS`), so the
/// script printed by `pglock schema` can be run on any version.
pub(crate) fn migrations(schema: &str) -> Vec<String> {
    let s = quote_ident(schema);
    vec![format!(
        "CREATE TABLE IF NOT EXISTS {s}.runs (\n\
         \x20   job text NOT NULL,\n\
         \x20   classid oid NOT NULL,\n\
         \x20   objid oid NOT NULL,\n\
         \x20   objsubid int2 NOT NULL,\n\
         \x20   slot text NOT NULL,\n\
         \x20   slot_start timestamptz,\n\
         \x20   period interval,\n\
         \x20   retry boolean NOT NULL DEFAULT false,\n\
         \x20   attempt int NOT NULL DEFAULT 1,\n\
         \x20   application_name text,\n\
         \x20   host text,\n\
         \x20   client_pid int,\n\
         \x20   backend_pid int,\n\
         \x20   started_at timestamptz NOT NULL DEFAULT clock_timestamp(),\n\
         \x20   finished_at timestamptz,\n\
         \x20   outcome text NOT NULL DEFAULT 'started'\n\
         \x20       CHECK (outcome IN ('started', 'succeeded', 'failed', 'panicked')),\n\
         \x20   PRIMARY KEY (classid, objid, objsubid, slot)\n\
         );\n\
         CREATE INDEX IF NOT EXISTS runs_by_job ON {s}.runs (job, started_at);\n\
         CREATE TABLE IF NOT EXISTS {s}.lock_names (\n\
         \x20   classid oid NOT NULL,\n\
         \x20   objid oid NOT NULL,\n\
         \x20   objsubid int2 NOT NULL,\n\
         \x20   name text NOT NULL,\n\
         \x20   hash text NOT NULL,\n\
         \x20   first_seen timestamptz NOT NULL DEFAULT now(),\n\
         \x20   PRIMARY KEY (classid, objid, objsubid)\n\
         );"
    ),
    format!(
        "CREATE TABLE IF NOT EXISTS {s}.terms (\n\
         \x20   classid oid NOT NULL,\n\
         \x20   objid oid NOT NULL,\n\
         \x20   objsubid int2 NOT NULL,\n\
         \x20   name text NOT NULL UNIQUE,\n\
         \x20   term bigint NOT NULL,\n\
         \x20   backend_pid int,\n\
         \x20   application_name text,\n\
         \x20   host text,\n\
         \x20   client_pid int,\n\
         \x20   since timestamptz NOT NULL DEFAULT clock_timestamp(),\n\
         \x20   PRIMARY KEY (classid, objid, objsubid)\n\
         );\n\
         CREATE OR REPLACE FUNCTION {s}.check_term(lock_name text, token bigint)\n\
         RETURNS bigint LANGUAGE plpgsql AS $pglock$\n\
         DECLARE current bigint;\n\
         BEGIN\n\
         \x20   SELECT t.term INTO current FROM {s}.terms t WHERE t.name = lock_name FOR SHARE;\n\
         \x20   IF current IS DISTINCT FROM token THEN\n\
         \x20       RAISE EXCEPTION 'pglock: fencing token % of \"%\" is not the current term (%)',\n\
         \x20           token, lock_name, coalesce(current::text, 'none granted')\n\
         \x20           USING ERRCODE = '{STALE_TERM_SQLSTATE}',\n\
         \x20           HINT = 'the lock or leadership that issued this token was lost and granted \
         again since: stop, and re-acquire before writing';\n\
         \x20   END IF;\n\
         \x20   RETURN current;\n\
         END $pglock$;"
    )]
}

/// The SQLSTATE `check_term` raises for a stale fencing token.
pub(crate) const STALE_TERM_SQLSTATE: &str = "PGF01";

/// A leadership candidate's session, once: `read committed` whatever the role
/// says (the term's upsert must see the latest term, not its snapshot's), no
/// `statement_timeout` or `transaction_timeout` of the role's cutting its waits
/// short (their length is the candidate's renewal), the server noticing a
/// vanished client while the candidate waits (`client_connection_check_interval`,
/// PostgreSQL 14+), and the idle timers of [`SET_SERVER_TIMERS`] at `$1`
/// (PostgreSQL 14+ for `idle_session_timeout`). Settings the server does not
/// have are left out.
pub(crate) const CANDIDATE_SETUP: &str = "SELECT set_config(v.name, v.value, false) \
     FROM (VALUES ('default_transaction_isolation', 'read committed'), \
       ('statement_timeout', '0'), ('transaction_timeout', '0'), \
       ('client_connection_check_interval', '1000'), ('idle_session_timeout', $1), \
       ('idle_in_transaction_session_timeout', $1)) AS v(name, value) \
     JOIN pg_settings s ON s.name = v.name";

/// A leader's liveness check: its session is dedicated to the leadership, so a
/// session that answers still holds the lock (nothing else can release it). No
/// `pg_locks` read: the cost does not grow with the server's lock table.
pub(crate) const LEADER_PING: &str = "/* pglock leader */ SELECT 1";

/// Gives up every session-level advisory lock of the session (a resigning
/// leader: its lock may be held twice, by the wait and by [`SchemaSql::take_term`]).
pub(crate) const UNLOCK_ALL: &str = "SELECT pg_advisory_unlock_all()";

/// The statements that create pglock's schema, up to [`SCHEMA_VERSION`], as one
/// script for an administrator (`pglock schema`); `role`, when given, gets the
/// grants pglock needs.
pub(crate) fn schema_script(schema: &str, role: Option<&str>) -> String {
    let s = quote_ident(schema);
    let mut out = format!(
        "BEGIN;\n\
         SELECT pg_advisory_xact_lock({key});\n\
         CREATE SCHEMA IF NOT EXISTS {s};\n\
         {version_table}\n",
        key = schema_lock_key(schema),
        version_table = version_table(schema),
    );
    for m in migrations(schema) {
        out.push_str(&m);
        out.push('\n');
    }
    out.push_str(&format!(
        "UPDATE {s}.schema_version SET version = {SCHEMA_VERSION}, migrated_at = now() \
         WHERE version < {SCHEMA_VERSION};\n"
    ));
    if let Some(role) = role {
        let r = quote_ident(role);
        out.push_str(&format!(
            "GRANT USAGE ON SCHEMA {s} TO {r};\n\
             GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA {s} TO {r};\n"
        ));
    }
    out.push_str("COMMIT;\n");
    out
}

fn version_table(schema: &str) -> String {
    let s = quote_ident(schema);
    format!(
        "CREATE TABLE IF NOT EXISTS {s}.schema_version (\n\
         \x20   one boolean PRIMARY KEY DEFAULT true CHECK (one),\n\
         \x20   version int NOT NULL,\n\
         \x20   migrated_at timestamptz NOT NULL DEFAULT now()\n\
         );\n\
         INSERT INTO {s}.schema_version (version) VALUES (0) ON CONFLICT (one) DO NOTHING;"
    )
}

/// The advisory lock that serializes installs and migrations of one schema
/// (django-pglock's hash of `pglock.schema:<name>`).
fn schema_lock_key(schema: &str) -> i64 {
    match crate::LockKey::hashed(
        &format!("pglock.schema:{schema}"),
        crate::KeyHash::DjangoPglock,
    ) {
        crate::LockKey::Int(k) => k,
        crate::LockKey::Pair(..) => unreachable!("string keys hash to 64 bits"),
    }
}

/// The statements of pglock's schema `schema`, built once per schema name (the
/// name is an identifier, quoted; everything else is a bind parameter).
#[derive(Debug)]
pub(crate) struct SchemaSql {
    /// `SELECT version FROM schema_version`: fails while the schema is missing.
    pub(crate) version: String,
    /// Opening a migration: the schema, the version table, the lock.
    pub(crate) begin_migration: String,
    /// The version, read inside a migration.
    pub(crate) locked_version: String,
    /// Records that the schema reached [`SCHEMA_VERSION`].
    pub(crate) set_version: String,
    pub(crate) migrations: Vec<String>,
    /// Lock-and-claim statements, `[key kind][xact][wait form]`, wait form as in
    /// [`ClaimForm`].
    pub(crate) claim: [[[String; 3]; 2]; 2],
    /// Records how a claimed run ended: `$1..$3` the key's `pg_locks` ids, `$4`
    /// the slot, `$5` the attempt, `$6` the outcome.
    pub(crate) finish: String,
    /// The quoted name of the `runs` table.
    runs_table: String,
    /// Recent runs: `$1` job name or NULL, `$2` since, `$3` limit.
    pub(crate) runs: String,
    /// Slots of `once_per` jobs between `$2` and now that no instance ran, newest
    /// first: `$1` job name or NULL, `$3` limit.
    pub(crate) missed: String,
    /// Records a lock's name (`$1..$3` the key's `pg_locks` ids, `$4` the name,
    /// `$5` the hash) unless the key has one; returns the key's name: ours, or
    /// the one recorded before (two names of one key exclude each other).
    pub(crate) record_name: String,
    /// The recorded names of the keys `unnest($1, $2, $3)` (`pg_locks` ids).
    pub(crate) names_of: String,
    /// The sessions holding advisory locks whose recorded name starts with `$1`:
    /// [`ADVISORY_HOLDERS`]' columns, then the name.
    pub(crate) held_with_prefix: String,
    /// `[key kind]`: takes the lock with `pg_try_advisory_lock` (the key's
    /// parameters first) and, if it was taken, the next term of the key:
    /// parameters after the key's `n`: classid, objid, objsubid, name, host,
    /// client pid. Returns the term, or no row when the lock was not taken.
    /// Sent right behind a waiting lock statement, so that a grant and its term
    /// come back in one round trip, and a wait that timed out takes no term.
    pub(crate) take_term: [String; 2],
    /// The next term of a key whose lock this session holds: `$1..$3` the key's
    /// `pg_locks` ids, `$4` the name, `$5` host, `$6` client pid. Returns it.
    pub(crate) next_term: String,
    /// The terms granted so far (`$1` a name, or NULL for all), with whether
    /// the session they were granted to still holds the lock: name, term,
    /// backend pid, application name, host, client pid, since, holding.
    pub(crate) terms: String,
}

impl SchemaSql {
    /// [`SchemaSql::finish`] with its values in place, for a batch: pglock's own
    /// integers and outcome names, and the slot's label (the caller's text) as an
    /// escape-string literal, safe whatever `standard_conforming_strings` says.
    pub(crate) fn finish_literal(
        &self,
        (c, o, s): (u32, u32, i16),
        slot: &str,
        attempt: i32,
        outcome: &str,
    ) -> String {
        format!(
            "UPDATE {} SET finished_at = clock_timestamp(), outcome = '{outcome}' \
             WHERE classid = {c} AND objid = {o} AND objsubid = {s} AND slot = {} \
             AND attempt = {attempt}",
            self.runs_table,
            quote_literal(slot)
        )
    }
}

/// Which lock statement a claim wraps.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ClaimForm {
    /// [`TRY_LOCK`]: the claim is made only if the lock was taken.
    Try = 0,
    /// [`LOCK`]: waits, then claims.
    Wait = 1,
    /// [`LOCK_WITH_TIMEOUT`].
    WaitWithTimeout = 2,
}

impl SchemaSql {
    pub(crate) fn new(schema: &str) -> SchemaSql {
        let s = quote_ident(schema);
        let claim = |k: usize, x: usize| {
            [
                claim(&s, TRY_LOCK[k][x][0], true),
                claim(&s, LOCK[k][x][0], false),
                claim(&s, LOCK_WITH_TIMEOUT[k][x][0], false),
            ]
        };
        SchemaSql {
            version: format!("SELECT version FROM {s}.schema_version"),
            begin_migration: format!(
                "BEGIN; SELECT pg_advisory_xact_lock({key}); CREATE SCHEMA IF NOT EXISTS {s}; {v}",
                key = schema_lock_key(schema),
                v = version_table(schema),
            ),
            locked_version: format!("SELECT version FROM {s}.schema_version FOR UPDATE"),
            set_version: format!(
                "UPDATE {s}.schema_version SET version = {SCHEMA_VERSION}, migrated_at = now()"
            ),
            migrations: migrations(schema),
            claim: [[claim(0, 0), claim(0, 1)], [claim(1, 0), claim(1, 1)]],
            runs_table: format!("{s}.runs"),
            finish: format!(
                "UPDATE {s}.runs SET finished_at = clock_timestamp(), outcome = $6 \
                 WHERE classid = $1 AND objid = $2 AND objsubid = $3 AND slot = $4 \
                 AND attempt = $5"
            ),
            runs: format!(
                "SELECT job, classid, objid, objsubid, slot, slot_start, \
                 extract(epoch FROM period)::float8, retry, attempt, application_name, host, \
                 client_pid, backend_pid, started_at, finished_at, outcome \
                 FROM {s}.runs WHERE ($1::text IS NULL OR job = $1) AND started_at >= $2 \
                 ORDER BY started_at DESC LIMIT $3"
            ),
            missed: format!(
                "WITH jobs AS ( \
                   SELECT job, (array_agg(period ORDER BY started_at DESC))[1] AS period, \
                     min(slot_start) AS first FROM {s}.runs \
                   WHERE period IS NOT NULL AND ($1::text IS NULL OR job = $1) GROUP BY job) \
                 SELECT j.job, g.slot_start, extract(epoch FROM j.period)::float8 \
                 FROM jobs j CROSS JOIN LATERAL generate_series( \
                   greatest(date_bin(j.period, $2::timestamptz, timestamptz 'epoch'), j.first), \
                   date_bin(j.period, statement_timestamp(), timestamptz 'epoch') - j.period, \
                   j.period) AS g(slot_start) \
                 WHERE NOT EXISTS (SELECT 1 FROM {s}.runs r \
                   WHERE r.job = j.job AND r.slot_start = g.slot_start) \
                 ORDER BY g.slot_start DESC, j.job LIMIT $3"
            ),
            record_name: format!(
                "WITH ins AS (INSERT INTO {s}.lock_names (classid, objid, objsubid, name, hash) \
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT (classid, objid, objsubid) DO NOTHING \
                   RETURNING name) \
                 SELECT name FROM ins UNION ALL SELECT name FROM {s}.lock_names \
                 WHERE classid = $1 AND objid = $2 AND objsubid = $3"
            ),
            names_of: format!(
                "SELECT n.classid, n.objid, n.objsubid, n.name FROM {s}.lock_names n \
                 JOIN unnest($1::oid[], $2::oid[], $3::int2[]) AS k(c, o, s) \
                 ON n.classid = k.c AND n.objid = k.o AND n.objsubid = k.s"
            ),
            held_with_prefix: format!(
                "SELECT a.pid, a.application_name, a.usename::text, host(a.client_addr), \
                 a.backend_start, a.xact_start, a.state_change, a.state, a.query, l.mode, n.name \
                 FROM {s}.lock_names n \
                 JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted \
                   AND l.classid = n.classid AND l.objid = n.objid AND l.objsubid = n.objsubid \
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE starts_with(n.name, $1) ORDER BY n.name, a.backend_start"
            ),
            take_term: [
                term_upsert(&s, "SELECT pg_try_advisory_lock($1) AS got", 1),
                term_upsert(&s, "SELECT pg_try_advisory_lock($1, $2) AS got", 2),
            ],
            next_term: term_upsert(&s, "SELECT true AS got", 0),
            terms: format!(
                "SELECT t.name, t.term, t.backend_pid, t.application_name, t.host, t.client_pid, \
                 t.since, EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' \
                   AND l.granted AND l.mode = 'ExclusiveLock' AND l.pid = t.backend_pid \
                   AND l.classid = t.classid AND l.objid = t.objid AND l.objsubid = t.objsubid \
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())) \
                 FROM {s}.terms t WHERE $1::text IS NULL OR t.name = $1 ORDER BY t.name"
            ),
        }
    }
}

/// Wraps a lock statement (whose own parameters come first) into one statement
/// that takes the lock and, if it was taken, claims the slot in `runs`: one round
/// trip for both. Returns one row — taken, the attempt claimed (NULL when the
/// slot had already run), the slot's label, and the earlier run's application
/// name, host, client pid, start, outcome and end — or none when the lock
/// statement returned none (the session guard of [`LOCK`]).
///
/// Parameters after the lock statement's `n`: `job`, `classid`, `objid`,
/// `objsubid`, `slot` label or NULL, slot start or NULL, slot length in
/// microseconds or NULL, `retry`, host, client pid. The earlier run is looked up
/// in a lateral subquery, so that the primary key finds the one row of the slot
/// (a join filter would read every run of the key, and on a busy lock too). The
/// slot of a `once_per` job
/// is `date_bin` of the statement's start on the server's clock, labelled in
/// RFC 3339 UTC with microseconds, as [`Slot::at`](crate::Slot::at) labels a
/// time.
fn claim(s: &str, lock: &str, try_form: bool) -> String {
    let n = max_param(lock);
    let p = |i: usize| format!("${}", n + i);
    let (job, classid, objid, objsubid) = (p(1), p(2), p(3), p(4));
    let (label, start, micros, retry, host, pid) = (p(5), p(6), p(7), p(8), p(9), p(10));
    let taken = if try_form {
        format!("SELECT x.got FROM ({lock}) AS x(got)")
    } else {
        format!("SELECT true AS got FROM ({lock}) AS x")
    };
    format!(
        "WITH l AS MATERIALIZED ({taken}), \
         s AS (SELECT coalesce({label}::text, \
                 to_char(b AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')) AS slot, \
               coalesce({start}::timestamptz, b) AS slot_start \
               FROM (SELECT date_bin({micros}::int8 * interval '1 microsecond', \
                 statement_timestamp(), timestamptz 'epoch') AS b) d), \
         c AS (INSERT INTO {s}.runs AS r (job, classid, objid, objsubid, slot, slot_start, \
                 period, retry, application_name, host, client_pid, backend_pid) \
               SELECT {job}::text, {classid}::oid, {objid}::oid, {objsubid}::int2, s.slot, \
                 s.slot_start, {micros} * interval '1 microsecond', {retry}::bool, \
                 current_setting('application_name'), {host}::text, {pid}::int4, \
                 pg_backend_pid() \
               FROM l, s WHERE l.got \
               ON CONFLICT (classid, objid, objsubid, slot) DO UPDATE SET \
                 attempt = r.attempt + 1, job = excluded.job, \
                 application_name = excluded.application_name, host = excluded.host, \
                 client_pid = excluded.client_pid, backend_pid = excluded.backend_pid, \
                 started_at = clock_timestamp(), finished_at = NULL, outcome = 'started' \
               WHERE r.retry AND r.outcome IN ('failed', 'panicked') \
               RETURNING r.attempt) \
         SELECT l.got, c.attempt, s.slot, p.application_name, p.host, p.client_pid, \
           p.started_at, p.outcome, p.finished_at \
         FROM l CROSS JOIN s LEFT JOIN c ON true \
         LEFT JOIN LATERAL (SELECT * FROM {s}.runs r WHERE l.got AND c.attempt IS NULL \
           AND r.classid = {classid} AND r.objid = {objid} AND r.objsubid = {objsubid} \
           AND r.slot = s.slot LIMIT 1) p ON true"
    )
}

/// The next term of a key, taken if `gate` (a one-row query with a boolean
/// `got`, whose own parameters are the first `n`) says so: one more than the
/// key's last term, or 1. In `read committed` the upsert's conflict arm sees the
/// latest committed term even when the statement's snapshot is older, and the
/// row lock serializes it with every `check_term` still in progress: a term is
/// granted only after the writes checked against the one before it are done.
fn term_upsert(s: &str, gate: &str, n: usize) -> String {
    let p = |i: usize| format!("${}", n + i);
    let (classid, objid, objsubid, name, host, pid) = (p(1), p(2), p(3), p(4), p(5), p(6));
    format!(
        "WITH l AS MATERIALIZED ({gate}) \
         INSERT INTO {s}.terms AS t (classid, objid, objsubid, name, term, backend_pid, \
           application_name, host, client_pid, since) \
         SELECT {classid}::oid, {objid}::oid, {objsubid}::int2, {name}::text, 1, pg_backend_pid(), \
           current_setting('application_name'), {host}::text, {pid}::int4, clock_timestamp() \
         FROM l WHERE l.got \
         ON CONFLICT (classid, objid, objsubid) DO UPDATE SET term = t.term + 1, \
           name = excluded.name, backend_pid = excluded.backend_pid, \
           application_name = excluded.application_name, host = excluded.host, \
           client_pid = excluded.client_pid, since = excluded.since \
         RETURNING t.term"
    )
}

/// The highest `$n` in a statement.
fn max_param(sql: &str) -> usize {
    sql.split('$')
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .max()
        .unwrap_or(0)
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
    fn claims_number_their_parameters_after_the_lock_statement() {
        assert_eq!(max_param(TRY_LOCK[0][0][0]), 2);
        assert_eq!(max_param(LOCK_WITH_TIMEOUT[1][0][0]), 4);
        assert_eq!(max_param(LOCK[1][1][0]), 2);
        let s = SchemaSql::new("pg\"lock");
        assert!(s.claim[0][0][0].contains("INSERT INTO \"pg\"\"lock\".runs"));
        assert!(s.claim[0][0][0].contains("$12::int4"));
        assert!(!s.claim[0][0][0].contains("$13"));
        assert!(s.claim[1][0][2].contains("$14::int4"));
        assert!(schema_script("pglock", Some("app"))
            .contains("GRANT USAGE ON SCHEMA \"pglock\" TO \"app\""));
    }

    #[test]
    fn finish_literals_quote_the_label() {
        let s = SchemaSql::new("pglock");
        assert_eq!(
            s.finish_literal((1, 2, 1), "it's", 3, "failed"),
            "UPDATE \"pglock\".runs SET finished_at = clock_timestamp(), outcome = 'failed' \
             WHERE classid = 1 AND objid = 2 AND objsubid = 1 AND slot = E'it''s' AND attempt = 3"
        );
        assert_eq!(quote_literal("a\\'; x"), "E'a\\\\''; x'");
    }

    #[test]
    fn the_heartbeat_starts_with_its_tag() {
        assert!(HEARTBEAT.starts_with(HEARTBEAT_TAG));
        assert!(HEARTBEAT_IN_TRANSACTION.starts_with(HEARTBEAT_TAG));
        assert!(SET_SERVER_TIMERS.starts_with(HEARTBEAT_TAG));
        assert!(!HOLDS_ADVISORY.starts_with(HEARTBEAT_TAG));
    }

    /// Issue 17.2: a `pg_locks` read copies the server's whole lock table, so
    /// its cost grows with every lock held on the server. The statements that
    /// run on every release, every return to the pool and every heartbeat must
    /// not read it (`pglock-bench` measures them with 10,000 locks held by
    /// another session; `tests/advisory.rs` looks at what the server ran).
    #[test]
    fn hot_and_periodic_statements_do_not_read_pg_locks() {
        let hot = [
            ("RETURN_CHECK", RETURN_CHECK),
            ("RETURN_CHECK_BEHIND_POOLER", RETURN_CHECK_BEHIND_POOLER),
            ("HEARTBEAT", HEARTBEAT),
            ("HEARTBEAT_IN_TRANSACTION", HEARTBEAT_IN_TRANSACTION),
            ("SET_SERVER_TIMERS", SET_SERVER_TIMERS),
            ("RESET_SERVER_TIMERS", RESET_SERVER_TIMERS),
        ];
        let unlocks = UNLOCK.iter().flatten().map(|s| ("UNLOCK", *s));
        let literal = [
            unlock_literal(crate::LockKey::Int(1), false),
            unlock_literal(crate::LockKey::Pair(1, 2), true),
        ];
        for (name, sql) in hot
            .into_iter()
            .chain(unlocks)
            .chain(literal.iter().map(|s| ("unlock_literal", s.as_str())))
        {
            let lower = sql.to_ascii_lowercase();
            assert!(!lower.contains("pg_locks"), "{name} reads pg_locks: {sql}");
            assert!(
                !lower.contains("pg_lock_status"),
                "{name} reads the lock table: {sql}"
            );
        }
        // The return check releases what the body left instead of counting it.
        assert!(RETURN_CHECK.contains("pg_advisory_unlock_all()"));
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
