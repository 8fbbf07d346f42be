// A float in a key would name different locks for equal-looking amounts.
#[pglock_runtime::advisory_lock(key = ("invoice", amount))]
async fn f(amount: f64) -> Result<(), pglock_runtime::Error> {
    let _ = amount;
    Ok(())
}

fn main() {}
