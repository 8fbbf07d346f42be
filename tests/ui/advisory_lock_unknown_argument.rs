#[pglock_runtime::advisory_lock(keys = 1)]
async fn f() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
