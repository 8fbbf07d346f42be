//! Lock names that operators can read: a string-keyed lock's string is recorded
//! in pglock's schema on first use, so views of the server's locks (from any
//! process) show `names::nightly` instead of a 64-bit number, and two names that
//! hash to one key are caught.

use pglock_runtime::{advisory, advisory_with, inspect, ErrorKind, KeyHash, LockFilter, LockKey};
use pglock_tests::*;

/// Two strings with the same CRC-32, so the same key under
/// `KeyHash::DjangoPglocksV1` (found by a birthday search).
const CRC_TWINS: (&str, &str) = ("names-29685295", "names-32060020");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_show_the_names_of_held_string_keys() {
    setup();
    let name = format!("names.views::{}", unique_key());
    let guard = advisory(name.as_str()).acquire().await.unwrap();
    let key = LockKey::string(&name);
    // The record, on the server.
    let obs = observer().await;
    let (c, o, s) = key.pg_locks_ids();
    let recorded: String = obs
        .query_one(
            "SELECT name FROM pglock.lock_names WHERE classid = $1 AND objid = $2 AND objsubid = $3",
            &[&c, &o, &s],
        )
        .await
        .expect("the name is recorded")
        .get(0);
    assert_eq!(recorded, name);
    // The views, through another alias (as another process would read them).
    let locks = inspect()
        .using(other())
        .locks(&LockFilter::new().key(key))
        .await
        .unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].name.as_deref(), Some(name.as_str()));
    let holders = inspect().using(other()).holders(key).await.unwrap();
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert_eq!(holders[0].lock_name.as_deref(), Some(name.as_str()));
    assert_eq!(
        inspect().name(key).await.unwrap().as_deref(),
        Some(name.as_str())
    );
    guard.release().await.unwrap();
    // A numeric key has no name.
    assert_eq!(
        inspect().name(LockKey::Int(unique_key())).await.unwrap(),
        None
    );
}

/// A name recorded by another process (written here straight into the table,
/// as that process's first use would) is read back from the table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_recorded_elsewhere_are_read_from_the_schema() {
    setup();
    // Make sure the schema exists (any string-keyed use installs it).
    advisory(format!("names.install::{}", unique_key()).as_str())
        .run(async {})
        .await
        .unwrap();
    let key = LockKey::Int(unique_key());
    let (c, o, s) = key.pg_locks_ids();
    let obs = observer().await;
    obs.execute(
        "INSERT INTO pglock.lock_names (classid, objid, objsubid, name, hash) \
         VALUES ($1, $2, $3, 'billing.elsewhere::job', 'django_pglock')",
        &[&c, &o, &s],
    )
    .await
    .unwrap();
    let (holder, _) = advisory_holder(
        url(),
        "names-elsewhere",
        match key {
            LockKey::Int(k) => k,
            LockKey::Pair(..) => unreachable!(),
        },
    )
    .await;
    let held = inspect()
        .held_with_prefix("billing.elsewhere")
        .await
        .unwrap();
    let holders = held
        .get("billing.elsewhere::job")
        .expect("the held name is listed");
    assert_eq!(holders.len(), 1);
    assert_eq!(holders[0].application_name, "names-elsewhere");
    assert!(inspect()
        .held_with_prefix("nothing-like-it.")
        .await
        .unwrap()
        .is_empty());
    drop(holder);
}

/// `held_with_prefix` lists every held lock under the prefix, by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_with_prefix_lists_names_and_their_holders() {
    setup();
    let prefix = format!("names.prefix{}.", unique_key());
    let (a, b) = (format!("{prefix}a"), format!("{prefix}b"));
    let ga = advisory(a.as_str()).acquire().await.unwrap();
    let gb = advisory(b.as_str()).using(other()).acquire().await.unwrap();
    let held = inspect().held_with_prefix(&prefix).await.unwrap();
    assert_eq!(
        held.keys().cloned().collect::<Vec<_>>(),
        [a.clone(), b.clone()]
    );
    assert_eq!(held[&a][0].pid, ga.connection().unwrap().backend_pid());
    assert_eq!(held[&b][0].pid, gb.connection().unwrap().backend_pid());
    ga.release().await.unwrap();
    gb.release().await.unwrap();
    assert!(inspect()
        .held_with_prefix(&prefix)
        .await
        .unwrap()
        .is_empty());
}

/// Two names of one key in one process: the second is refused before it locks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_names_of_one_key_are_an_error() {
    setup();
    let (first, second) = CRC_TWINS;
    let hash = KeyHash::DjangoPglocksV1;
    assert_eq!(LockKey::hashed(first, hash), LockKey::hashed(second, hash));
    advisory_with(first, hash).run(async {}).await.unwrap();
    let e = advisory_with(second, hash)
        .run(async {})
        .await
        .expect_err("a second name for the same key");
    assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
    assert!(
        e.to_string().contains(first) && e.to_string().contains(second),
        "{e}"
    );
    assert_released(&observer().await, LockKey::hashed(second, hash)).await;
}

/// A name another process recorded for the key is caught too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_recorded_by_another_process_for_the_key_is_an_error() {
    setup();
    advisory(format!("names.install::{}", unique_key()).as_str())
        .run(async {})
        .await
        .unwrap();
    let ours = format!("names.ours::{}", unique_key());
    let key = LockKey::string(&ours);
    let (c, o, s) = key.pg_locks_ids();
    observer()
        .await
        .execute(
            "INSERT INTO pglock.lock_names (classid, objid, objsubid, name, hash) \
             VALUES ($1, $2, $3, 'names.theirs', 'django_pglock')",
            &[&c, &o, &s],
        )
        .await
        .unwrap();
    let e = advisory(ours.as_str())
        .run(async {})
        .await
        .expect_err("the key already has another name");
    assert_eq!(e.kind(), ErrorKind::Configuration, "{e}");
    assert!(e.to_string().contains("names.theirs"), "{e}");
}

/// Errors name the lock next to its key (issue 16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_name_the_lock() {
    setup();
    let name = format!("names.errors::{}", unique_key());
    let held = advisory(name.as_str())
        .using(other())
        .acquire()
        .await
        .unwrap();
    let e = advisory(name.as_str())
        .no_wait()
        .run(async {})
        .await
        .expect_err("busy");
    assert!(e.is_busy(), "{e}");
    assert_eq!(e.lock_name(), Some(name.as_str()));
    assert!(e.to_string().contains(&format!("`{name}` (key ")), "{e}");
    let e = advisory(name.as_str())
        .no_wait()
        .acquire()
        .await
        .expect_err("busy");
    assert_eq!(e.lock_name(), Some(name.as_str()), "{e}");
    held.release().await.unwrap();
}

/// Keys from id types: a `u64` above `i64::MAX` is its bits, `("user", u64)` and
/// a UUID are named by their string, on the server too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_types_make_keys_and_names() {
    setup();
    assert_eq!(advisory(u64::MAX).key(), LockKey::Int(-1));
    let id = u64::MAX - unique_key().unsigned_abs();
    let guard = advisory(("names.user", id)).acquire().await.unwrap();
    let name = format!("names.user:{id}");
    assert_eq!(guard.key(), LockKey::string(&name));
    assert_eq!(inspect().name(guard.key()).await.unwrap(), Some(name));
    guard.release().await.unwrap();
    let tenant = uuid::Uuid::from_u128(u128::from(unique_key().unsigned_abs()));
    let guard = advisory(tenant).acquire().await.unwrap();
    assert_eq!(
        guard.key(),
        LockKey::string(&tenant.hyphenated().to_string())
    );
    let held = inspect()
        .held_with_prefix(&tenant.to_string())
        .await
        .unwrap();
    assert_eq!(held.len(), 1, "{held:?}");
    guard.release().await.unwrap();
}
