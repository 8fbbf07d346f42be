#[pglock_runtime::advisory_lock(on_lost = cancel)]
fn f() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
