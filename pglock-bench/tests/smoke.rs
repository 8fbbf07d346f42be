//! The benchmark runs end to end with a handful of iterations, so it cannot rot.
//! No timing assertions: only that every measurement ran and produced a number,
//! and that the scheduled-slot paths (issue 12) make no more round trips than
//! allowed (counted on the wire, with every server reply delayed: not timing).

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
    assert_eq!(report.rows.len(), 93, "{:?}", report.rows);
    assert!(
        report
            .rows
            .iter()
            .all(|r| r.value.is_finite() && r.value >= 0.0),
        "{:?}",
        report.rows
    );
    assert_eq!(report.wire.len(), 19, "{:?}", report.wire);
    assert!(
        report
            .wire
            .iter()
            .all(|w| w.turns.is_finite() && w.syncs.is_finite() && w.critical_path.is_finite()),
        "{:?}",
        report.wire
    );
    // The wire counter sees the baseline's single statement.
    assert_eq!(report.wire[0].syncs, 1.0, "{:?}", report.wire[0]);
    assert_eq!(report.verdicts.len(), 16);
    // Issue 12: the claim and the record of a scheduled run cost no round trip on
    // the skip paths and at most one on the run paths.
    let slots: Vec<_> = pglock_bench::slot_verdict_names().collect();
    assert_eq!(slots.len(), 6);
    for name in slots {
        let v = report
            .verdicts
            .iter()
            .find(|v| v.name == name)
            .unwrap_or_else(|| panic!("no verdict {name:?}: {:?}", report.verdicts));
        assert!(v.pass, "{v:?}\n{:?}", report.wire);
    }
    assert_eq!(
        report
            .rows
            .iter()
            .find(|r| r.name.starts_with("pg_locks rows"))
            .unwrap()
            .value,
        1000.0
    );
    // Issue 17.2: every scan row, in both phases (0 and 10,000 foreign locks).
    assert_eq!(
        report
            .rows
            .iter()
            .filter(|r| r.name.ends_with("foreign locks]"))
            .count(),
        16
    );
    pglock_bench::print(&report);
    assert!(pglock_bench::to_json(&report).contains("\"verdicts\""));
}
