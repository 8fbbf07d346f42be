#[pglock_runtime::advisory_lock(shared, fenced)]
async fn f() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
