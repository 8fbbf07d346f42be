#[pglock_runtime::advisory_lock(using = "a")]
#[pglock_runtime::lock_timeout("5s", using = "b")]
async fn f() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
