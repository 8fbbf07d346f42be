//! Who holds a lock: sessions from `pg_locks` joined to `pg_stat_activity`.

use std::fmt;
use std::time::{Duration, SystemTime};

use tokio_postgres::Row;

use tokio_postgres::types::Type;

use crate::error::Error;
use crate::exec::Exec;
use crate::key::LockKey;
use crate::sql;

/// A session holding a lock that pglock could not take, as the server saw it at the
/// moment acquisition failed.
///
/// PostgreSQL does not record when a lock was granted; [`Holder::xact_start`] bounds
/// it for transaction-level locks and [`Holder::backend_start`] for session locks.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// let key = pglock_runtime::LockKey::string("nightly");
/// for h in pglock_runtime::inspect().holders(key).await? {
///     println!("{} ({}) holds it, {:?}", h.pid, h.application_name, h.state);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// Backend process id (`pg_stat_activity.pid`).
    pub pid: i32,
    /// The holder's `application_name` (empty when it set none).
    pub application_name: String,
    /// The role it is connected as.
    pub user: Option<String>,
    /// Its client address; `None` for Unix-socket connections.
    pub client_addr: Option<String>,
    /// When the backend started.
    pub backend_start: Option<SystemTime>,
    /// When its current transaction started, if one is open.
    pub xact_start: Option<SystemTime>,
    /// When its `state` last changed.
    pub state_change: Option<SystemTime>,
    /// `active`, `idle`, `idle in transaction`, …
    pub state: Option<String>,
    /// Its current or most recent query.
    pub query: String,
    /// The lock mode it holds (`ExclusiveLock`, `ShareLock`, `AccessExclusiveLock`, …).
    pub mode: String,
}

impl Holder {
    pub(crate) fn from_row(row: &Row) -> Option<Holder> {
        Holder::from_row_at(row, 0)
    }

    /// Reads a holder from the columns starting at `at`; `None` for a row of NULLs.
    pub(crate) fn from_row_at(row: &Row, at: usize) -> Option<Holder> {
        Some(Holder {
            pid: row.get::<_, Option<i32>>(at)?,
            application_name: row.get::<_, Option<String>>(at + 1).unwrap_or_default(),
            user: row.get(at + 2),
            client_addr: row.get(at + 3),
            backend_start: row.get(at + 4),
            xact_start: row.get(at + 5),
            state_change: row.get(at + 6),
            state: row.get(at + 7),
            query: row.get::<_, Option<String>>(at + 8).unwrap_or_default(),
            mode: row.get::<_, Option<String>>(at + 9).unwrap_or_default(),
        })
    }

    /// How long its state has been unchanged (for an idle holder: how long it has
    /// been idle while holding the lock).
    pub fn in_state_for(&self) -> Option<Duration> {
        self.state_change
            .and_then(|t| SystemTime::now().duration_since(t).ok())
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {}", self.pid)?;
        if !self.application_name.is_empty() {
            write!(f, " (application_name `{}`)", self.application_name)?;
        }
        if let Some(addr) = &self.client_addr {
            write!(f, " from {addr}")?;
        }
        if let Some(state) = &self.state {
            write!(f, ", {state}")?;
            if let Some(d) = self.in_state_for() {
                let d = Duration::from_millis(d.as_millis() as u64);
                write!(f, " for {}", humantime::format_duration(d))?;
            }
        }
        if let Some(start) = self.backend_start {
            write!(
                f,
                ", connected at {}",
                humantime::format_rfc3339_seconds(start)
            )?;
        }
        Ok(())
    }
}

/// The sessions other than `client`'s holding `key`.
pub(crate) async fn advisory_holders(exec: Exec<'_>, key: LockKey) -> Result<Vec<Holder>, Error> {
    let (c, o, s) = key.pg_locks_ids();
    let rows = exec
        .query(
            sql::ADVISORY_HOLDERS,
            &[(&c, Type::OID), (&o, Type::OID), (&s, Type::INT2)],
        )
        .await?;
    Ok(rows.iter().filter_map(Holder::from_row).collect())
}

/// The holders of `key` seen through a fresh checkout of `alias` (for errors raised
/// before pglock had a connection of its own); empty if that fails.
pub(crate) async fn inspect_holders(alias: &str, key: LockKey) -> Vec<Holder> {
    inspect()
        .using(alias.to_owned())
        .holders(key)
        .await
        .unwrap_or_default()
}

/// The sessions other than `client`'s holding a lock on one of `relations`
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

/// A server process, as `pg_stat_activity` shows it.
///
/// Timestamps are the server's; durations are computed against the server clock at
/// the moment of the query ([`Backend::observed_at`]), so client clock skew does not
/// distort them.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// for pair in pglock_runtime::inspect().blocking().await? {
///     let b = &pair.blocking;
///     println!("{} [{}] {:?} for {:?}: {}", b.pid, b.application_name, b.state, b.held_for(), b.query);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backend {
    /// Process id.
    pub pid: i32,
    /// `application_name` (empty when unset).
    pub application_name: String,
    /// Role name.
    pub user: Option<String>,
    /// Client address; `None` for Unix sockets and background processes.
    pub client_addr: Option<String>,
    /// `active`, `idle`, `idle in transaction`, … (`None` for some background
    /// processes).
    pub state: Option<String>,
    /// Current or most recent query.
    pub query: String,
    /// When the current (or last) query started.
    pub query_start: Option<SystemTime>,
    /// When the current transaction started, if one is open.
    pub xact_start: Option<SystemTime>,
    /// When the process started.
    pub backend_start: Option<SystemTime>,
    /// When `state` last changed.
    pub state_change: Option<SystemTime>,
    /// `client backend`, `autovacuum worker`, `walsender`, …
    pub backend_type: Option<String>,
    /// What it is waiting for (`Lock`, `Client`, …), if anything.
    pub wait_event_type: Option<String>,
    /// The specific wait event (`advisory`, `relation`, `ClientRead`, …).
    pub wait_event: Option<String>,
    /// The server's clock when this row was read.
    pub observed_at: SystemTime,
}

fn since(observed: SystemTime, t: Option<SystemTime>) -> Option<Duration> {
    t.map(|t| observed.duration_since(t).unwrap_or_default())
}

impl Backend {
    /// Reads the columns of `sql::backend_columns!()`, starting at column 0.
    pub(crate) fn from_row(row: &Row) -> Backend {
        Backend {
            pid: row.get(0),
            application_name: row.get::<_, Option<String>>(1).unwrap_or_default(),
            user: row.get(2),
            client_addr: row.get(3),
            state: row.get(4),
            query: row.get::<_, Option<String>>(5).unwrap_or_default(),
            query_start: row.get(6),
            xact_start: row.get(7),
            backend_start: row.get(8),
            state_change: row.get(9),
            backend_type: row.get(10),
            wait_event_type: row.get(11),
            wait_event: row.get(12),
            observed_at: row.get(13),
        }
    }

    /// Number of columns `from_row` reads.
    pub(crate) const COLUMNS: usize = 14;

    /// How long its current transaction has been open.
    pub fn xact_duration(&self) -> Option<Duration> {
        since(self.observed_at, self.xact_start)
    }

    /// How long its current (or last) query has been running (or ran).
    pub fn query_duration(&self) -> Option<Duration> {
        since(self.observed_at, self.query_start)
    }

    /// A lower bound of how long it has held the locks it holds: since its
    /// transaction started, or, outside a transaction (session-level advisory
    /// locks), since its state last changed.
    pub fn held_for(&self) -> Option<Duration> {
        since(
            self.observed_at,
            self.xact_start.or(self.state_change).or(self.backend_start),
        )
    }

    /// Whether it is a client session (not autovacuum, a WAL sender, …).
    pub fn is_client(&self) -> bool {
        self.backend_type.as_deref() == Some("client backend")
    }
}

/// One row of `pg_locks`, with the backend that holds or awaits the lock.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// use pglock_runtime::{inspect, LockFilter};
///
/// for l in inspect().locks(&LockFilter::new().granted(false)).await? {
///     println!("{} waits {:?} for {} on {:?}", l.pid(), l.wait_duration(), l.mode, l.relation);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockInfo {
    /// `relation`, `advisory`, `transactionid`, `virtualxid`, `tuple`, `object`, …
    pub locktype: String,
    /// `AccessShareLock`, `ExclusiveLock`, …
    pub mode: String,
    /// Held (`true`) or awaited (`false`).
    pub granted: bool,
    /// When the wait began, for a lock not granted yet.
    pub wait_start: Option<SystemTime>,
    /// Schema-qualified, quoted name of the locked relation, if any.
    pub relation: Option<String>,
    /// Its `pg_class.relkind`: `r` table, `i` index, `S` sequence, `v` view, …
    pub relation_kind: Option<String>,
    /// The advisory key, decoded from `classid` / `objid` / `objsubid`.
    pub key: Option<LockKey>,
    /// The transaction id for `transactionid` and `virtualxid` locks.
    pub transaction: Option<String>,
    /// The session holding or awaiting the lock.
    pub backend: Backend,
}

impl LockInfo {
    fn from_row(row: &Row) -> LockInfo {
        let b = Backend::COLUMNS;
        let locktype: String = row.get(b);
        let key = if locktype == "advisory" {
            match (
                row.get::<_, Option<u32>>(b + 6),
                row.get::<_, Option<u32>>(b + 7),
                row.get::<_, Option<i16>>(b + 8),
            ) {
                (Some(c), Some(o), Some(s)) => LockKey::from_pg_locks(c, o, s),
                _ => None,
            }
        } else {
            None
        };
        LockInfo {
            locktype,
            mode: row.get(b + 1),
            granted: row.get(b + 2),
            wait_start: row.get(b + 3),
            relation: row.get(b + 4),
            relation_kind: row.get(b + 5),
            key,
            transaction: row.get(b + 9),
            backend: Backend::from_row(row),
        }
    }

    /// The backend's process id.
    pub fn pid(&self) -> i32 {
        self.backend.pid
    }

    /// How long it has been waiting, for a lock not granted yet.
    pub fn wait_duration(&self) -> Option<Duration> {
        since(self.backend.observed_at, self.wait_start)
    }

    /// How long it has been waiting, or (granted) a lower bound of how long it has
    /// been held ([`Backend::held_for`]).
    pub fn duration(&self) -> Option<Duration> {
        if self.granted {
            self.backend.held_for()
        } else {
            self.wait_duration()
        }
    }
}

/// Which locks to list. Every filter is optional; all given ones must match.
///
/// ```
/// use std::time::Duration;
/// use pglock_runtime::LockFilter;
///
/// let waiting_long = LockFilter::new().granted(false).min_duration(Duration::from_secs(5));
/// let on_accounts = LockFilter::new().relation("public.accounts").limit(20);
/// # let _ = (waiting_long, on_accounts);
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct LockFilter {
    pids: Vec<i32>,
    granted: Option<bool>,
    relation: Option<String>,
    key: Option<LockKey>,
    locktype: Option<String>,
    min_duration: Option<Duration>,
    application_name: Option<String>,
    limit: Option<i64>,
}

impl LockFilter {
    /// No filter: every lock of the database.
    pub fn new() -> LockFilter {
        LockFilter::default()
    }

    /// Only these backends.
    pub fn pids(mut self, pids: impl IntoIterator<Item = i32>) -> LockFilter {
        self.pids = pids.into_iter().collect();
        self
    }

    /// Only held (`true`) or only awaited (`false`) locks.
    pub fn granted(mut self, granted: bool) -> LockFilter {
        self.granted = Some(granted);
        self
    }

    /// Only locks on this relation (a name as `to_regclass` reads it:
    /// `accounts`, `public.accounts`, `"Odd Name"`).
    pub fn relation(mut self, name: impl Into<String>) -> LockFilter {
        self.relation = Some(name.into());
        self
    }

    /// Only this advisory key.
    pub fn key(mut self, key: LockKey) -> LockFilter {
        self.key = Some(key);
        self
    }

    /// Only this lock type (`advisory`, `relation`, `transactionid`, …).
    pub fn locktype(mut self, locktype: impl Into<String>) -> LockFilter {
        self.locktype = Some(locktype.into());
        self
    }

    /// Only locks waited for, or held, at least this long ([`LockInfo::duration`]).
    pub fn min_duration(mut self, d: Duration) -> LockFilter {
        self.min_duration = Some(d);
        self
    }

    /// Only backends with this `application_name`.
    pub fn application_name(mut self, name: impl Into<String>) -> LockFilter {
        self.application_name = Some(name.into());
        self
    }

    /// At most this many rows.
    pub fn limit(mut self, n: usize) -> LockFilter {
        self.limit = Some(i64::try_from(n).unwrap_or(i64::MAX));
        self
    }
}

/// A backend waiting for a lock, and one backend it waits for.
///
/// See [`Inspector::blocking`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockingPair {
    /// The waiting backend.
    pub blocked: Backend,
    /// The lock it waits for, when the server still shows the wait.
    pub waiting_for: Option<LockInfo>,
    /// A backend it waits for (`pg_blocking_pids`): one holding a conflicting lock,
    /// or queued ahead of it for one.
    pub blocking: Backend,
}

/// A node of the blocking tree: a backend and those waiting for it.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// fn print(n: &pglock_runtime::BlockingNode, depth: usize) {
///     println!("{}{} {}", "  ".repeat(depth), n.backend.pid, n.backend.query);
///     for child in &n.blocked {
///         print(child, depth + 1);
///     }
/// }
/// for root in pglock_runtime::inspect().tree().await? {
///     print(&root, 0);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockingNode {
    /// The backend.
    pub backend: Backend,
    /// The lock it waits for itself, if it is waiting.
    pub waiting_for: Option<LockInfo>,
    /// The backends waiting for it.
    pub blocked: Vec<BlockingNode>,
}

/// Server-side views of locks and the sessions behind them, for one database
/// alias: django-pglock's `PGLock` / `BlockedPGLock` and django-mysql's lock
/// look-ups, for every lock type.
///
/// Each call checks out its own connection of the alias (never a scope
/// connection), and the inspecting session never lists itself.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// use pglock_runtime::{inspect, LockFilter};
///
/// for pair in inspect().blocking().await? {
///     println!("{} waits for {}", pair.blocked.pid, pair.blocking.pid);
/// }
/// let waiting = inspect().locks(&LockFilter::new().granted(false)).await?;
/// let stuck: Vec<i32> = waiting.iter().map(|l| l.pid()).collect();
/// let cancelled = inspect().cancel(&stuck).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Inspector {
    alias: std::borrow::Cow<'static, str>,
}

/// An [`Inspector`] of the `"default"` alias.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// let held = pglock_runtime::inspect().advisory_locks().await?;
/// let reports = pglock_runtime::inspect().using("reports").blocking().await?;
/// # Ok(()) }
/// ```
pub fn inspect() -> Inspector {
    Inspector {
        alias: std::borrow::Cow::Borrowed(crate::registry::DEFAULT_ALIAS),
    }
}

impl Inspector {
    /// Inspects a registered alias instead of `"default"`.
    pub fn using(mut self, alias: impl Into<std::borrow::Cow<'static, str>>) -> Inspector {
        self.alias = alias.into();
        self
    }

    async fn conn(&self) -> Result<crate::Connection, Error> {
        crate::registry::alias(&self.alias)?.checkout().await
    }

    /// The locks of the database matching `filter`, waiting ones first, then the
    /// longest-held.
    ///
    /// # Errors
    ///
    /// Checkout and query errors.
    pub async fn locks(&self, filter: &LockFilter) -> Result<Vec<LockInfo>, Error> {
        let conn = self.conn().await?;
        fetch_locks(&conn, filter).await
    }

    /// Every advisory lock held right now (django-mysql's `held_with_prefix`,
    /// for numeric keys).
    ///
    /// # Errors
    ///
    /// Checkout and query errors.
    pub async fn advisory_locks(&self) -> Result<Vec<LockInfo>, Error> {
        self.locks(&LockFilter::new().locktype("advisory").granted(true))
            .await
    }

    /// The sessions holding `key` (django-mysql's `holding_connection_id`).
    ///
    /// # Errors
    ///
    /// Checkout and query errors.
    pub async fn holders(&self, key: LockKey) -> Result<Vec<Holder>, Error> {
        let conn = self.conn().await?;
        advisory_holders(Exec::pooled(&conn), key).await
    }

    /// Whether anyone holds `key` right now. Only a snapshot: acting on it races
    /// with other sessions, so take the lock with `timeout = 0` instead of checking
    /// first.
    ///
    /// # Errors
    ///
    /// Checkout and query errors.
    pub async fn is_held(&self, key: LockKey) -> Result<bool, Error> {
        Ok(!self.holders(key).await?.is_empty())
    }

    /// Blocked → blocking pairs.
    ///
    /// # Errors
    ///
    /// Checkout and query errors.
    pub async fn blocking(&self) -> Result<Vec<BlockingPair>, Error> {
        let conn = self.conn().await?;
        blocking_pairs(&conn).await
    }

    /// The blocking tree: roots are backends that block others without waiting
    /// themselves (or, in a cycle, the lowest pid of the cycle).
    ///
    /// # Errors
    ///
    /// Checkout and query errors.
    pub async fn tree(&self) -> Result<Vec<BlockingNode>, Error> {
        Ok(blocking_tree(&self.blocking().await?))
    }

    /// Cancels the current query of each backend (`pg_cancel_backend`). Returns
    /// the pids actually signalled.
    ///
    /// # Errors
    ///
    /// Checkout and query errors, including permission errors.
    pub async fn cancel(&self, pids: &[i32]) -> Result<Vec<i32>, Error> {
        self.signal(crate::sql::CANCEL, pids).await
    }

    /// Terminates each backend (`pg_terminate_backend`), which releases every
    /// lock it holds. Returns the pids actually signalled.
    ///
    /// # Errors
    ///
    /// Checkout and query errors, including permission errors.
    pub async fn terminate(&self, pids: &[i32]) -> Result<Vec<i32>, Error> {
        self.signal(crate::sql::TERMINATE, pids).await
    }

    async fn signal(&self, sql: &'static str, pids: &[i32]) -> Result<Vec<i32>, Error> {
        if pids.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.conn().await?;
        let rows = Exec::pooled(&conn)
            .query(sql, &[(&pids, Type::INT4_ARRAY)])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

pub(crate) async fn fetch_locks(
    conn: &crate::Connection,
    f: &LockFilter,
) -> Result<Vec<LockInfo>, Error> {
    let pids: Option<&Vec<i32>> = (!f.pids.is_empty()).then_some(&f.pids);
    let ids = f.key.map(LockKey::pg_locks_ids);
    let (c, o, s) = (ids.map(|i| i.0), ids.map(|i| i.1), ids.map(|i| i.2));
    let min = f.min_duration.map(|d| d.as_secs_f64());
    let limit = f.limit.unwrap_or(i64::MAX);
    let rows = conn
        .query(
            crate::sql::LOCKS,
            &[
                &pids,
                &f.granted,
                &f.relation,
                &s,
                &c,
                &o,
                &f.application_name,
                &f.locktype,
                &min,
                &limit,
            ],
        )
        .await
        .map_err(Error::from_pg)?;
    Ok(rows.iter().map(LockInfo::from_row).collect())
}

async fn blocking_pairs(conn: &crate::Connection) -> Result<Vec<BlockingPair>, Error> {
    let pairs: Vec<(i32, i32)> = Exec::pooled(conn)
        .query(crate::sql::BLOCKING_PAIRS, &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let mut pids: Vec<i32> = pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
    pids.sort_unstable();
    pids.dedup();
    let backends: std::collections::HashMap<i32, Backend> = Exec::pooled(conn)
        .query(crate::sql::BACKENDS, &[(&pids, Type::INT4_ARRAY)])
        .await?
        .iter()
        .map(|r| {
            let b = Backend::from_row(r);
            (b.pid, b)
        })
        .collect();
    let waits: std::collections::HashMap<i32, LockInfo> = fetch_locks(
        conn,
        &LockFilter::new()
            .pids(pairs.iter().map(|p| p.0))
            .granted(false),
    )
    .await?
    .into_iter()
    .map(|l| (l.pid(), l))
    .collect();
    Ok(pairs
        .into_iter()
        .filter_map(|(w, b)| {
            Some(BlockingPair {
                blocked: backends.get(&w)?.clone(),
                waiting_for: waits.get(&w).cloned(),
                blocking: backends.get(&b)?.clone(),
            })
        })
        .collect())
}

/// Builds the blocking forest from blocked → blocking pairs (for instance a
/// filtered subset of [`Inspector::blocking`]): roots are backends that block
/// others without waiting themselves; a cycle starts from its lowest pid.
///
/// ```no_run
/// # async fn f() -> Result<(), pglock_runtime::Error> {
/// let mut pairs = pglock_runtime::inspect().blocking().await?;
/// pairs.retain(|p| p.blocking.application_name != "backup");
/// let tree = pglock_runtime::blocking_tree(&pairs);
/// # Ok(()) }
/// ```
pub fn blocking_tree(pairs: &[BlockingPair]) -> Vec<BlockingNode> {
    use std::collections::{BTreeMap, BTreeSet, HashMap};
    let mut children: BTreeMap<i32, BTreeSet<i32>> = BTreeMap::new();
    let mut backend: HashMap<i32, &Backend> = HashMap::new();
    let mut waiting: HashMap<i32, &LockInfo> = HashMap::new();
    let mut blocked: BTreeSet<i32> = BTreeSet::new();
    for p in pairs {
        children
            .entry(p.blocking.pid)
            .or_default()
            .insert(p.blocked.pid);
        backend.insert(p.blocking.pid, &p.blocking);
        backend.insert(p.blocked.pid, &p.blocked);
        if let Some(w) = &p.waiting_for {
            waiting.insert(p.blocked.pid, w);
        }
        blocked.insert(p.blocked.pid);
    }
    fn node(
        pid: i32,
        children: &BTreeMap<i32, BTreeSet<i32>>,
        backend: &HashMap<i32, &Backend>,
        waiting: &HashMap<i32, &LockInfo>,
        seen: &mut BTreeSet<i32>,
    ) -> BlockingNode {
        seen.insert(pid);
        let mut blocked = Vec::new();
        for &k in children.get(&pid).into_iter().flatten() {
            // `seen` grows as subtrees are built: a node appears once, cycles end.
            if !seen.contains(&k) {
                blocked.push(node(k, children, backend, waiting, seen));
            }
        }
        BlockingNode {
            backend: backend[&pid].clone(),
            waiting_for: waiting.get(&pid).map(|w| (*w).clone()),
            blocked,
        }
    }
    let mut seen = BTreeSet::new();
    let mut roots: Vec<BlockingNode> = children
        .keys()
        .copied()
        .filter(|pid| !blocked.contains(pid))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|pid| node(pid, &children, &backend, &waiting, &mut seen))
        .collect();
    // Cycles (deadlocks not yet detected): start from their lowest pid.
    for pid in children.keys().copied().collect::<Vec<_>>() {
        if !seen.contains(&pid) {
            roots.push(node(pid, &children, &backend, &waiting, &mut seen));
        }
    }
    roots
}
