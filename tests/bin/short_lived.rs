//! A short-lived program (run by `tests/reliability.rs`, not by hand): a cron
//! binary or migration runner that makes a few annotated calls and returns from
//! `main` at once, with warnings printed to stderr.
//!
//! `short-lived URL KEY` takes and releases advisory lock KEY three times
//! (`timeout = 0, on_fail = skip`), then returns from `main` while the last
//! release's reply may still be on its way. Prints `ok <runs>`.

use pglock_runtime::{advisory_lock, Config};

#[advisory_lock(key = key, timeout = 0, on_fail = skip)]
async fn job(key: i64) -> bool {
    true
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let [_, url, key] = args.as_slice() else {
        eprintln!("usage: short-lived URL KEY");
        std::process::exit(2);
    };
    pglock_runtime::register("default", Config::from_url(url).unwrap()).unwrap();
    let key: i64 = key.parse().unwrap();
    let mut runs = 0;
    for _ in 0..3 {
        if job(key).await {
            runs += 1;
        }
    }
    println!("ok {runs}");
}
