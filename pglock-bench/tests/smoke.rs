//! The benchmark runs end to end with a handful of iterations, so it cannot rot.
//! No timing assertions: only that every measurement ran and produced a number.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_measurement_runs() {
    let url = pglock_testkit::shared_cluster().url();
    let report = pglock_bench::run(
        &url,
        pglock_bench::Settings {
            iterations: 5,
            ops_per_task: 3,
        },
    )
    .await;
    assert_eq!(report.rows.len(), 28, "{:?}", report.rows);
    assert!(
        report
            .rows
            .iter()
            .all(|r| r.value.is_finite() && r.value > 0.0),
        "{:?}",
        report.rows
    );
    assert_eq!(report.verdicts.len(), 6);
    assert_eq!(
        report
            .rows
            .iter()
            .find(|r| r.name.starts_with("pg_locks rows"))
            .unwrap()
            .value,
        1000.0
    );
    pglock_bench::print(&report);
}
