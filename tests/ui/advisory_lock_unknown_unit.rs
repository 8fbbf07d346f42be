#[pglock_runtime::advisory_lock(timeout = "5y")]
async fn f() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
