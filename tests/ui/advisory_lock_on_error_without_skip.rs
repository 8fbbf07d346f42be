#[pglock_runtime::advisory_lock(on_error = raise)]
async fn f() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
