//! The attributes end to end (REFERENCE.md §7 scenarios through `#[advisory_lock]`,
//! `#[lock_timeout]` and `#[prioritize]`), observed from `pg_locks`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pglock_runtime::{advisory, advisory_lock, connection, Error, ErrorKind, LockKey};
use pglock_tests::*;

mod jobs {
    use super::*;

    /// Records the scope connection's pid and what the server shows for this
    /// function's default key while the body runs.
    #[advisory_lock]
    pub async fn nightly() -> Result<(i32, Vec<i32>), Error> {
        let obs = observer().await;
        let pid = connection().await?.backend_pid();
        Ok((
            pid,
            holders(&obs, LockKey::string("attributes::jobs::nightly")).await,
        ))
    }
}

/// Scenario 7: the default key is the module path and the function name.
#[tokio::test]
async fn default_key_is_module_path_and_name() {
    setup();
    let (pid, held) = jobs::nightly().await.unwrap();
    assert_eq!(held, vec![pid]);
    let obs = observer().await;
    assert_released(&obs, LockKey::string("attributes::jobs::nightly")).await;
}

#[advisory_lock(key = key, timeout = 0, on_fail = skip)]
async fn skip_if_busy(key: i64, ran: &AtomicBool) {
    ran.store(true, Ordering::SeqCst);
}

#[advisory_lock(key = key, timeout = 0)]
async fn raise_if_busy(key: i64) -> Result<u8, Error> {
    Ok(1)
}

#[advisory_lock(key = key, timeout = "300ms")]
async fn bounded(key: i64) -> Result<(), Error> {
    Ok(())
}

/// Scenarios 1 and 7: skip does not run the body; raise names the holder.
#[tokio::test]
async fn skip_and_raise() {
    setup();
    let key = unique_key();
    let ran = AtomicBool::new(false);
    skip_if_busy(key, &ran).await;
    assert!(ran.swap(false, Ordering::SeqCst), "free: the body runs");
    let holder = advisory(key).acquire().await.unwrap();
    let pid = holder.connection().unwrap().backend_pid();
    skip_if_busy(key, &ran).await;
    assert!(!ran.load(Ordering::SeqCst), "busy: the body is skipped");
    let err = raise_if_busy(key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy);
    assert!(
        err.to_string().contains(&format!("held by pid {pid}")),
        "{err}"
    );
    let started = std::time::Instant::now();
    let err = bounded(key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LockTimeout);
    assert!(started.elapsed() >= Duration::from_millis(300));
    holder.release().await.unwrap();
    assert_eq!(raise_if_busy(key).await.unwrap(), 1);
}

#[advisory_lock(key = ("sync", key), timeout = 0)]
fn sync_locked(key: i64) -> Result<i32, Error> {
    let db = pglock_runtime::blocking::connection()?;
    Ok(db.backend_pid())
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_functions_work_inside_a_runtime() {
    setup();
    let key = unique_key();
    let pid = sync_locked(key).unwrap();
    assert!(pid > 0);
}
