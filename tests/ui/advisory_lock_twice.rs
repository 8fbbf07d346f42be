#[pglock_runtime::advisory_lock(key = 1)]
#[pglock_runtime::advisory_lock(key = 2)]
async fn f() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
