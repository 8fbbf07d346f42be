//! A process that shuts pglock down on SIGTERM (run by `tests/shutdown.rs`, not
//! by hand).
//!
//! `shutdown-worker URL HELD WAITED BODY ELECTION` holds advisory lock HELD with
//! a guard, waits for WAITED (which the test holds), runs a long body under
//! BODY, and leads the election ELECTION; prints `ready` once all four are in
//! place. On SIGTERM it calls `pglock_runtime::shutdown(500ms)`, then prints
//! what the waiting task got (`waiter: <ErrorKind>`), what a new acquisition
//! gets (`after: <ErrorKind>`), how the leadership ended (`leader: <Change>`)
//! and what waiting for it again gets (`elected: <ErrorKind>`), the report
//! (`report: <Debug>`) and `done`, and stays alive (so that the test sees the
//! server's state before the process ends).

use std::time::Duration;

use pglock_runtime::{advisory, Config};
use tokio::signal::unix::{signal, SignalKind};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, held, waited, body, election] = args.as_slice() else {
        eprintln!("usage: shutdown-worker URL HELD WAITED BODY ELECTION");
        std::process::exit(2);
    };
    let [held, waited, body]: [i64; 3] = [held, waited, body].map(|k| k.parse().unwrap());
    let mut term = signal(SignalKind::terminate()).unwrap();
    let config = Config::from_url(url)
        .unwrap()
        .application_name("shutdown-worker");
    pglock_runtime::register("default", config).unwrap();
    let guard = advisory(held).acquire().await.unwrap();
    let waiter =
        tokio::spawn(async move { advisory(waited).wait_forever().acquire().await.map(drop) });
    let running = tokio::spawn(async move {
        advisory(body)
            .run(tokio::time::sleep(Duration::from_secs(600)))
            .await
    });
    let candidate = pglock_runtime::leader(election.clone()).join().unwrap();
    candidate.elected().await.unwrap();
    let mut changes = candidate.changes();
    println!("ready");
    term.recv().await;
    let report = pglock_runtime::shutdown(Duration::from_millis(500)).await;
    let waited = waiter.await.unwrap();
    println!("waiter: {:?}", waited.err().map(|e| e.kind()));
    let after = advisory(held.wrapping_add(1)).acquire().await;
    println!("after: {:?}", after.err().map(|e| e.kind()));
    println!("leader: {:?}", changes.next().await);
    println!(
        "elected: {:?}",
        candidate.elected().await.err().map(|e| e.kind())
    );
    println!("report: {report:?}");
    println!("done");
    tokio::time::sleep(Duration::from_secs(120)).await;
    drop((guard, running));
}
