#[pglock_runtime::prioritize(interval = "1s", shared)]
async fn migrate() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
