// A type error in the body of an async function is reported on the user's code
// (the fake return edge), not on the attribute.
use pglock_runtime::{advisory_lock, Error};

#[advisory_lock]
async fn count() -> Result<u8, Error> { Ok("one") }

fn main() {}
