//! A migration under `#[prioritize]` that gets through a long-running blocker:
//! the watchdog terminates the session holding the table, and says so.
//!
//! ```sh
//! cargo run -p pglock-examples --example prioritize
//! ```

use pglock_runtime::{advisory_lock, lock_timeout, prioritize, Error};
use tokio_postgres::NoTls;

#[path = "common.rs"]
mod common;

#[prioritize(interval = "500ms", min_blocker_age = "1s")]
#[lock_timeout("30s")]
#[advisory_lock(key = "migrations")]
async fn migrate() -> Result<(), Error> {
    let db = pglock_runtime::connection().await?;
    db.batch_execute("ALTER TABLE orders ADD COLUMN IF NOT EXISTS shipped bool")
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = common::connect()?;
    // The watchdog reports every action as a tracing event.
    tracing_subscriber::fmt().with_target(true).init();

    // The report is another application's session, of an ordinary role: the
    // watchdog spares superusers' sessions (a DBA's console) unless told.
    let mut config: tokio_postgres::Config = common::application_url(&url).parse()?;
    config.application_name("nightly-report");
    let (report, conn) = config.connect(NoTls).await?;
    tokio::spawn(conn);
    let superuser: bool = report
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?
        .get(0);
    if superuser {
        println!(
            "DATABASE_URL logs in as a superuser, whose sessions the watchdog spares \
             (Prioritize::signal_superusers): run this example without DATABASE_URL, or \
             with an ordinary role"
        );
        return Ok(());
    }
    report
        .batch_execute("CREATE TABLE IF NOT EXISTS orders (id int); ALTER TABLE orders DROP COLUMN IF EXISTS shipped")
        .await?;
    // A report that keeps its transaction (and its lock on `orders`) open.
    report
        .batch_execute("BEGIN; SELECT count(*) FROM orders")
        .await?;
    let report_pid: i32 = report
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    println!("report (pid {report_pid}) holds a lock on `orders`; migrating…");

    let started = std::time::Instant::now();
    migrate().await?;
    println!("migration applied after {:?}", started.elapsed());
    match report.query_one("SELECT 1", &[]).await {
        Err(e) => println!("the report's session was terminated: {e}"),
        Ok(_) => println!("the report's session is still alive (unexpected)"),
    }
    Ok(())
}
