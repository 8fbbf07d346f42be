//! pglock's own schema: created on first use by racing instances without a
//! failure, migrated from an older version, named per alias, and, for a role
//! that may not create it, an error that prints the SQL to run — all checked on
//! the server (always on a cluster the harness started: the tests create roles
//! and schemas).

use pglock_runtime::{advisory, register, Config, ErrorKind, LockKey};
use pglock_tests::*;

/// Registers `name` on the test cluster with pglock's schema `schema`, connecting
/// as `user` (the cluster's superuser when `None`).
fn alias(name: &'static str, user: Option<&str>, schema: &str) -> &'static str {
    let mut pg: tokio_postgres::Config = url().parse().expect("URL");
    if let Some(user) = user {
        pg.user(user);
    }
    register(name, Config::new(pg).schema(schema)).unwrap();
    name
}

async fn version(schema: &str) -> Option<i32> {
    observer()
        .await
        .query_opt(
            &format!("SELECT version FROM \"{schema}\".schema_version"),
            &[],
        )
        .await
        .ok()
        .flatten()
        .map(|r| r.get(0))
}

/// Six "instances" (aliases each with their own process-level state) meet a
/// missing schema at once: every call runs, the schema is created once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_first_uses_create_the_schema_once() {
    // Creates roles and schemas: only on a cluster the harness started.
    setup_owned();
    const NAMES: [&str; 6] = ["race0", "race1", "race2", "race3", "race4", "race5"];
    let key = unique_key();
    let calls = NAMES.iter().enumerate().map(|(i, name)| {
        let alias = alias(name, None, "race_pglock");
        async move {
            advisory(key)
                .using(alias)
                .slot(format!("slot-{i}"))
                .run(async {})
                .await
        }
    });
    for r in futures_util::future::join_all(calls).await {
        r.expect("every racing call runs");
    }
    assert_eq!(version("race_pglock").await, Some(2));
    let obs = observer().await;
    let runs: i64 = obs
        .query_one("SELECT count(*) FROM race_pglock.runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 6, "one run per slot, each recorded");
}

/// A schema left at an older version (here: 0, only the version table) is
/// migrated on first use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_schema_is_migrated() {
    // Creates roles and schemas: only on a cluster the harness started.
    setup_owned();
    let obs = observer().await;
    obs.batch_execute(
        "CREATE SCHEMA old_pglock; \
         CREATE TABLE old_pglock.schema_version (one boolean PRIMARY KEY DEFAULT true, \
           version int NOT NULL, migrated_at timestamptz NOT NULL DEFAULT now()); \
         INSERT INTO old_pglock.schema_version (version) VALUES (0)",
    )
    .await
    .unwrap();
    let alias = alias("old", None, "old_pglock");
    advisory(unique_key())
        .using(alias)
        .slot("one")
        .run(async {})
        .await
        .expect("runs after migrating");
    assert_eq!(version("old_pglock").await, Some(2));
    let outcome: String = obs
        .query_one(
            "SELECT outcome FROM old_pglock.runs WHERE slot = 'one'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(outcome, "succeeded");
}

/// A schema of version 1 (the record of runs and lock names, before leader
/// elections) is taken to version 2 by the first election: its runs stay, the
/// `terms` table and `check_term` appear, and the election takes term 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_schema_gets_terms_on_first_election() {
    setup_owned();
    let obs = observer().await;
    let v1 = alias("v1", None, "v1_pglock");
    advisory(unique_key())
        .using(v1)
        .slot("kept")
        .run(async {})
        .await
        .unwrap();
    // Back to what release 1 of the schema had.
    obs.batch_execute(
        "DROP FUNCTION v1_pglock.check_term(text, bigint); DROP TABLE v1_pglock.terms; \
         UPDATE v1_pglock.schema_version SET version = 1",
    )
    .await
    .unwrap();
    // Another alias: a process that has not seen the schema yet.
    let later = alias("v1-later", None, "v1_pglock");
    let candidate = pglock_runtime::leader(format!("schema::v1::{}", unique_key()))
        .using(later)
        .join()
        .unwrap();
    let term = within(20, "elected", candidate.elected()).await.unwrap();
    assert_eq!(term, 1);
    assert_eq!(version("v1_pglock").await, Some(2));
    let kept: i64 = obs
        .query_one(
            "SELECT count(*) FROM v1_pglock.runs WHERE slot = 'kept'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 1, "the runs recorded before stay");
    let checked: i64 = obs
        .query_one("SELECT v1_pglock.check_term($1, 1)", &[&candidate.name()])
        .await
        .unwrap()
        .get(0);
    assert_eq!(checked, 1);
    candidate.leave().await;
}

/// A role without CREATE on the database: the first scheduled call fails with
/// `Permission`, printing the SQL; once an administrator ran it, the call runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_without_create_gets_the_sql_to_run() {
    // Creates roles and schemas: only on a cluster the harness started.
    setup_owned();
    let obs = observer().await;
    obs.batch_execute("CREATE ROLE pglock_app LOGIN")
        .await
        .unwrap();
    let alias = alias("restricted", Some("pglock_app"), "app_pglock");
    let job = advisory(unique_key()).using(alias).slot("first");
    let e = job
        .run(async {})
        .await
        .expect_err("no CREATE on the database");
    assert_eq!(e.kind(), ErrorKind::Permission, "{e}");
    let message = e.to_string();
    assert!(message.contains("`pglock schema`"), "{message}");
    assert!(
        message.contains("GRANT USAGE ON SCHEMA \"app_pglock\" TO \"pglock_app\""),
        "{message}"
    );
    assert_eq!(version("app_pglock").await, None, "nothing was created");
    let script = &message[message.find("BEGIN;").expect("the SQL is in the message")..];
    obs.batch_execute(script)
        .await
        .expect("the printed SQL runs");
    job.run(async {})
        .await
        .expect("runs once the schema is there");
    let who: String = obs
        .query_one(
            "SELECT r.backend_pid::text FROM app_pglock.runs r WHERE slot = 'first'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!who.is_empty());
}

/// The claim looks up the earlier run of its slot by the primary key, whatever
/// the key's history: with many recorded runs, a busy skip reads no row and a
/// run or an already-ran skip one (it used to read every run of the key, ~12 ms
/// at 50,000 runs). The server's own plans, logged by `auto_explain`, say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_reads_one_run_not_the_keys_history() {
    setup_owned();
    let mut pg: tokio_postgres::Config = url().parse().expect("URL");
    pg.options(
        "-c session_preload_libraries=auto_explain -c auto_explain.log_min_duration=0 \
         -c auto_explain.log_analyze=on",
    );
    register("explained", Config::new(pg)).unwrap();
    let key = unique_key();
    let job = advisory(key).using("explained").no_wait();
    job.clone().slot("first").run(async {}).await.unwrap();
    let (c, o, s) = LockKey::Int(key).pg_locks_ids();
    observer()
        .await
        .execute(
            "INSERT INTO pglock.runs (job, classid, objid, objsubid, slot) \
             SELECT 'history', $1, $2, $3, 'old-' || g FROM generate_series(1, 500) g",
            &[&c, &o, &s],
        )
        .await
        .unwrap();
    let before = pglock_testkit::shared_cluster().log().len();
    job.clone().slot("second").run(async {}).await.unwrap();
    let e = job.clone().slot("old-7").run(async {}).await.unwrap_err();
    assert!(e.is_already_ran(), "{e}");
    let log = pglock_testkit::shared_cluster().log();
    let plans = &log[before..];
    assert!(
        plans.contains("Insert on runs"),
        "the claims' plans are logged: {plans}"
    );
    assert!(
        !plans.contains("Rows Removed by Join Filter: 50"),
        "a claim read the key's history: {plans}"
    );
    assert!(
        plans.contains("slot = s.slot"),
        "looked up by the primary key: {plans}"
    );
}
