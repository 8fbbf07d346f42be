#[pglock_runtime::lock_timeout("30d")]
async fn migrate() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
