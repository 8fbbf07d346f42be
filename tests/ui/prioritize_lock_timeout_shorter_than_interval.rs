#[pglock_runtime::prioritize(interval = "2s")]
#[pglock_runtime::lock_timeout("500ms")]
async fn migrate() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
