#[pglock_runtime::advisory_lock(timeout = "5y", hash = md5, on_fail = later, colour = 1)]
#[pglock_runtime::lock_timeout(0)]
async fn f() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

// The function is still emitted: this call type-checks.
fn main() {
    let _ = f();
}
