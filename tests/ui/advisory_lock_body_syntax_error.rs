// While the body does not parse (the user is typing), the only error is
// rustc's own, where the mistake is.
#[pglock_runtime::advisory_lock]
async fn f() -> Result<(), pglock_runtime::Error> {
    let x = ;
    Ok(())
}

fn main() {}
