#[pglock_runtime::lock_timeout(0)]
async fn f() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
