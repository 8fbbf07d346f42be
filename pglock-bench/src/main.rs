//! `cargo run --release -p pglock-bench [-- --iterations N --ops N --json --scans]`

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let settings = pglock_bench::Settings {
        iterations: arg("--iterations", 2000),
        ops_per_task: arg("--ops", 300),
    };
    let json = std::env::args().any(|a| a == "--json");
    let url = pglock_testkit::database_url();
    // On a runtime worker, like application code: a raw client and its connection
    // task can then share a thread, which is the wire's best case.
    let only_scans = std::env::args().any(|a| a == "--scans");
    let report = tokio::spawn(async move {
        if only_scans {
            pglock_bench::run_scans(&url, settings.iterations).await
        } else {
            pglock_bench::run(&url, settings).await
        }
    })
    .await
    .expect("benchmark task");
    if json {
        println!("{}", pglock_bench::to_json(&report));
    } else {
        pglock_bench::print(&report);
    }
}
