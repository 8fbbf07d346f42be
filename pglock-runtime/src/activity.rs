//! Who holds a lock: sessions from `pg_locks` joined to `pg_stat_activity`.

use std::time::Duration;

use tokio_postgres::types::Type;

use crate::error::Error;
use crate::exec::Exec;
use crate::key::LockKey;
use crate::rows::{Backend, BlockingPair, Holder, LockInfo};
use crate::sql;

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
