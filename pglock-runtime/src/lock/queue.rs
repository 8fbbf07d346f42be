//! In-process queueing for exclusive waits: tasks of this process waiting for the
//! same exclusive key queue here, in FIFO order, and only the head waits on the
//! server. A hundred waiting tasks then hold one connection instead of a hundred.
//!
//! Only acquisitions on a fresh connection queue (a nested acquisition on a scope
//! connection may be re-entrant on its session, and must not wait behind itself).
//! Shared and no-wait acquisitions never queue.
//!
//! Pipelined releases (an unlock sent without waiting for its reply) are tracked
//! here too: a no-wait acquisition of a key whose release is still on the wire
//! waits for that reply, so that a caller which saw an annotated call return never
//! finds the lock busy because of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex as AsyncMutex, Notify, OwnedMutexGuard};

use crate::key::LockKey;
use crate::rt;
use crate::wire::session::Session;

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
    let guard = if rt::caller_runtime_usable() {
        wait.await?
    } else {
        rt::spawn(wait).await.ok().flatten()?
    };
    let left = limit.map(|l| l.saturating_sub(started.elapsed()));
    Some((Turn(guard), left))
}

/// How long a no-wait acquisition waits for a pipelined release of its key that
/// is still on the wire before trying anyway (and possibly finding the key busy).
const SETTLE_LIMIT: Duration = Duration::from_secs(2);

/// Per key: the connections (by address) with a release of it on the wire, and
/// the notification of each reply, created only once somebody waits for one (the
/// usual release has nobody waiting, and should not allocate for it).
type InFlight = Mutex<HashMap<LockKey, (Vec<usize>, Option<Arc<Notify>>)>>;

fn in_flight() -> &'static InFlight {
    static IN_FLIGHT: OnceLock<InFlight> = OnceLock::new();
    IN_FLIGHT.get_or_init(Default::default)
}

/// A release of a key sent on a connection but not yet answered; dropped when
/// the reply is in.
#[derive(Debug)]
pub(crate) struct Releasing {
    key: LockKey,
    conn: usize,
}

impl Releasing {
    pub(crate) fn start(key: LockKey, conn: &Session) -> Releasing {
        let conn = std::ptr::from_ref(conn) as usize;
        let mut map = in_flight().lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_default().0.push(conn);
        Releasing { key, conn }
    }
}

impl Drop for Releasing {
    fn drop(&mut self) {
        let mut map = in_flight().lock().unwrap_or_else(|e| e.into_inner());
        if let Some((conns, done)) = map.get_mut(&self.key) {
            if let Some(i) = conns.iter().position(|c| *c == self.conn) {
                conns.swap_remove(i);
            }
            if let Some(done) = done {
                done.notify_waiters();
            }
            if conns.is_empty() {
                map.remove(&self.key);
            }
        }
    }
}

/// Waits (at most [`SETTLE_LIMIT`]) until no release of `key` by this process is
/// on the wire, except on `own` (the connection about to try the key: its
/// statements run after the release anyway). Keys are compared across aliases:
/// waiting one round trip too many for a key of another database is harmless.
pub(crate) async fn settled(key: LockKey, own: Option<&Session>) {
    let own = own.map(|c| std::ptr::from_ref(c) as usize);
    // The common case, nothing in flight, without a timer.
    let waiting = move |map: &mut HashMap<LockKey, (Vec<usize>, Option<Arc<Notify>>)>| {
        map.get_mut(&key)
            .filter(|(conns, _)| conns.iter().any(|c| Some(*c) != own))
            .map(|(_, done)| done.get_or_insert_with(Default::default).clone())
    };
    if waiting(&mut in_flight().lock().unwrap_or_else(|e| e.into_inner())).is_none() {
        return;
    }
    let wait = async move {
        let deadline = tokio::time::Instant::now() + SETTLE_LIMIT;
        loop {
            let notified = {
                let mut map = in_flight().lock().unwrap_or_else(|e| e.into_inner());
                let Some(done) = waiting(&mut map) else {
                    return;
                };
                // Registered before the map is unlocked: a reply's
                // `notify_waiters` (under the same lock) cannot be missed.
                let mut notified = Box::pin(done.notified_owned());
                notified.as_mut().enable();
                notified
            };
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    };
    if rt::caller_runtime_usable() {
        wait.await;
    } else {
        let _ = rt::spawn(wait).await;
    }
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

    #[tokio::test]
    async fn settled_waits_for_releases_in_flight() {
        let key = LockKey::Int(7);
        // Nothing in flight: returns at once.
        tokio::time::timeout(Duration::from_millis(100), settled(key, None))
            .await
            .unwrap();
        // Stand-ins for two connections (only their addresses are used).
        let (a, b) = (Releasing { key, conn: 1 }, Releasing { key, conn: 2 });
        in_flight().lock().unwrap().insert(key, (vec![1, 2], None));
        let waiter = tokio::spawn(settled(key, None));
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(a);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one release is still in flight");
        drop(b);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(in_flight().lock().unwrap().get(&key).is_none());
    }
}
