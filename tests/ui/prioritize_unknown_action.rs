#[pglock_runtime::prioritize(action = kill)]
async fn f() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
