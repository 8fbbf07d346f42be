// The user's lints still fire in and on annotated functions: the expansion
// allows nothing over the user's code.
#![deny(unused_qualifications, unused_variables, dead_code, unused_braces)]

use pglock_runtime::{advisory_lock, Error};

#[advisory_lock]
fn sync_body() -> Result<u8, Error> {
    let unused = 1;
    Ok(u8::from(std::string::String::new().is_empty()))
}

#[advisory_lock]
async fn async_body() -> Result<u8, Error> {
    let unused = 1;
    Ok({ 1 })
}

fn main() {}
