use pglock_runtime as one;
use pglock_runtime as two;

#[one::advisory_lock(crate = "one")]
#[two::lock_timeout("5s", crate = "two")]
async fn f() -> Result<(), one::Error> {
    Ok(())
}

fn main() {}
