#[pglock_runtime::advisory_lock]
const fn f() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
