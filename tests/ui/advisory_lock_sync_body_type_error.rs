// A type error in the body of a plain function is reported on the user's code,
// not on the attribute.
use pglock_runtime::{advisory_lock, Error};

#[advisory_lock]
fn count() -> Result<u8, Error> {
    Ok("one")
}

fn main() {}
