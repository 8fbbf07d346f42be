#[pglock_runtime::advisory_lock(timeout = 0, shared, timeout = "1s")]
async fn f() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
