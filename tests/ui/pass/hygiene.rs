//! Generated code names only `::core` and the runtime's `__private`, and its
//! locals never clash with the user's.

#![allow(dead_code)]

mod core {}
struct Box;
struct Option;
struct Duration;

#[pglock_runtime::advisory_lock(key = __pglock_plan, timeout = "1s")]
async fn f(__pglock_plan: i64) -> ::std::result::Result<i64, pglock_runtime::Error> {
    let __pglock_scope = __pglock_plan;
    Ok(__pglock_scope)
}

#[pglock_runtime::advisory_lock(key = __pglock_scope)]
#[pglock_runtime::lock_timeout("5s")]
fn g(__pglock_scope: i64) -> ::std::result::Result<i64, pglock_runtime::Error> {
    let __pglock_value = __pglock_scope;
    if __pglock_value > 1 {
        return Ok(__pglock_value);
    }
    Ok(0)
}

#[pglock_runtime::prioritize(interval = "1s")]
async fn h() -> ::std::result::Result<(), pglock_runtime::Error> {
    let __pglock_fake_return = 1;
    let _ = __pglock_fake_return;
    Ok(())
}

fn main() {
    let _ = (f, g, h);
}
