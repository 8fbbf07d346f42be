//! A migration that takes a fleet-wide lock and does not queue forever behind
//! long readers: `#[lock_timeout]` makes its `ALTER TABLE` give up after a
//! while instead of blocking every other query on the table meanwhile.
//!
//! ```sh
//! cargo run -p pglock-examples --example migration
//! ```

use pglock_runtime::{advisory_lock, lock_timeout, Error};
use tokio_postgres::NoTls;

#[path = "common.rs"]
mod common;

/// One instance at a time runs migrations; each statement waits at most 1 s for
/// its table lock.
#[lock_timeout("1s")]
#[advisory_lock(key = "migrations")]
async fn migrate() -> Result<(), Error> {
    let db = pglock_runtime::connection().await?;
    db.batch_execute("ALTER TABLE accounts ADD COLUMN IF NOT EXISTS note text")
        .await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = common::connect()?;
    let (reader, conn) = tokio_postgres::connect(&url, NoTls).await?;
    tokio::spawn(conn);
    reader
        .batch_execute("CREATE TABLE IF NOT EXISTS accounts (id int); ALTER TABLE accounts DROP COLUMN IF EXISTS note")
        .await?;

    // A long-running report holds a read lock on the table.
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM accounts")
        .await?;
    match migrate().await {
        Err(e) if e.is_timeout() => println!("migration gave up after its lock_timeout: {e}"),
        other => println!("unexpected: {other:?}"),
    }

    // Once the report is done, the migration goes through.
    reader.batch_execute("COMMIT").await?;
    migrate().await?;
    println!("migration applied");
    Ok(())
}
