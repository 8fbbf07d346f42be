//! The blocking forest built from blocked → blocking pairs.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::rows::{Backend, BlockingPair, LockInfo};

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

/// Builds the blocking forest from blocked → blocking pairs (for instance a
/// filtered subset of [`Inspector::blocking`](crate::Inspector::blocking)): roots are backends that block
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
