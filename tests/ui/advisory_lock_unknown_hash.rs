#[pglock_runtime::advisory_lock(key = "k", hash = md5)]
async fn f() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
