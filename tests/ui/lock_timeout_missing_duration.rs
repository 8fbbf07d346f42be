#[pglock_runtime::lock_timeout]
async fn f() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
