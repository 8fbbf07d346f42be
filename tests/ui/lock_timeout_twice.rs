#[pglock_runtime::lock_timeout("5s")]
#[pglock_runtime::advisory_lock]
#[pglock_runtime::lock_timeout("10s")]
async fn migrate() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
