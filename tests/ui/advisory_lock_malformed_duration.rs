#[pglock_runtime::advisory_lock(timeout = "soon")]
async fn f() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
