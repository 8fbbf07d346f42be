#[pglock_runtime::advisory_lock(timeout = -1)]
async fn f() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
