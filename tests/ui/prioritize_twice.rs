#[pglock_runtime::prioritize]
#[pglock_runtime::lock_timeout("5s")]
#[pglock_runtime::prioritize(interval = "2s")]
async fn migrate() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
