struct Invoice;

#[pglock_runtime::advisory_lock(key = Invoice)]
async fn send() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
