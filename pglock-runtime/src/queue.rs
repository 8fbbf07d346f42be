//! In-process queueing for exclusive waits: tasks of this process waiting for the
//! same exclusive key queue here, in FIFO order, and only the head waits on the
//! server. A hundred waiting tasks then hold one connection instead of a hundred.
//!
//! Only acquisitions on a fresh connection queue (a nested acquisition on a scope
//! connection may be re-entrant on its session, and must not wait behind itself).
//! Shared and no-wait acquisitions never queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::key::LockKey;

type Queue = AsyncMutex<()>;
type Queues = Mutex<HashMap<(Arc<str>, LockKey), Weak<Queue>>>;

fn queues() -> &'static Queues {
    static QUEUES: OnceLock<Queues> = OnceLock::new();
    QUEUES.get_or_init(Default::default)
}

fn queue(alias: &str, key: LockKey) -> Arc<Queue> {
    let mut map = queues().lock().unwrap_or_else(|e| e.into_inner());
    let id = (Arc::<str>::from(alias), key);
    if let Some(q) = map.get(&id).and_then(Weak::upgrade) {
        return q;
    }
    let q = Arc::new(AsyncMutex::new(()));
    map.insert(id, Arc::downgrade(&q));
    // Forget queues nobody uses any more, now and then.
    if map.len().is_power_of_two() && map.len() >= 64 {
        map.retain(|_, q| q.strong_count() > 0);
    }
    q
}

/// A place at the head of the queue of one key; the next task moves up when it
/// is dropped.
#[derive(Debug)]
pub(crate) struct Turn(#[allow(dead_code)] OwnedMutexGuard<()>);

/// Waits for this task's turn at `key`, at most `limit`. `Ok(None)` when the wait
/// ran out; the time left is returned with the turn.
pub(crate) async fn wait_turn(
    alias: &str,
    key: LockKey,
    limit: Option<Duration>,
) -> Option<(Turn, Option<Duration>)> {
    let q = queue(alias, key);
    let started = Instant::now();
    let wait = async move {
        match limit {
            None => Some(q.lock_owned().await),
            Some(limit) => tokio::time::timeout(limit, q.lock_owned()).await.ok(),
        }
    };
    // The timer needs a runtime that can run it: the caller's, or pglock's own.
    let guard = if crate::rt::caller_runtime_usable() {
        wait.await?
    } else {
        crate::rt::spawn(wait).await.ok().flatten()?
    };
    let left = limit.map(|l| l.saturating_sub(started.elapsed()));
    Some((Turn(guard), left))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fifo_and_bounded() {
        let key = LockKey::Int(1);
        let (first, _) = wait_turn("q", key, None).await.unwrap();
        // Bounded waits behind the head run out.
        assert!(wait_turn("q", key, Some(Duration::from_millis(20)))
            .await
            .is_none());
        // Other keys and aliases are independent.
        assert!(wait_turn("q", LockKey::Int(2), Some(Duration::ZERO))
            .await
            .is_some());
        assert!(wait_turn("other", key, Some(Duration::ZERO))
            .await
            .is_some());
        let next = tokio::spawn(async move { wait_turn("q", key, None).await.map(|t| t.0) });
        tokio::task::yield_now().await;
        drop(first);
        assert!(next.await.unwrap().is_some());
        // Unused queues are forgotten.
        assert!(queues()
            .lock()
            .unwrap()
            .get(&(Arc::from("q"), key))
            .unwrap()
            .upgrade()
            .is_none());
    }
}
