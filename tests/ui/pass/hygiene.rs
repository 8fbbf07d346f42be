//! Generated code names only `::core` and the runtime's `__private`, and its
//! locals never clash with the user's.

#![allow(dead_code, non_camel_case_types, unused_macros)]

mod core {}
mod pglock_runtime {}
mod __private {}
struct Box;
struct Option;
struct Result;
struct Duration;
struct Plan;
struct Ok;
struct Err;
struct Some;
struct None;
fn raise() {}
fn skip() {}
fn key() {}
macro_rules! concat {
    () => {};
}
macro_rules! module_path {
    () => {};
}
macro_rules! unreachable {
    () => {};
}

#[::pglock_runtime::advisory_lock(key = __pglock_plan, timeout = "1s")]
async fn f(__pglock_plan: i64) -> ::std::result::Result<i64, ::pglock_runtime::Error> {
    let __pglock_scope = __pglock_plan;
    let __pglock_fake_return = __pglock_scope;
    ::std::result::Result::Ok(__pglock_fake_return)
}

#[::pglock_runtime::advisory_lock(key = __pglock_scope)]
#[::pglock_runtime::lock_timeout("5s")]
fn g(__pglock_scope: i64) -> ::std::result::Result<i64, ::pglock_runtime::Error> {
    let __pglock_value = __pglock_scope;
    let __pglock_entered = __pglock_value;
    let __pglock_early = __pglock_entered;
    if __pglock_early > 1 {
        return ::std::result::Result::Ok(__pglock_early);
    }
    ::std::result::Result::Ok(0)
}

#[::pglock_runtime::prioritize(interval = "1s")]
async fn h() -> ::std::result::Result<(), ::pglock_runtime::Error> {
    let __pglock_fake_return = 1;
    let _ = __pglock_fake_return;
    ::std::result::Result::Ok(())
}

#[::pglock_runtime::advisory_lock(timeout = 0, on_fail = skip)]
fn i() -> ::std::option::Option<u8> {
    let __pglock_plan = 1;
    ::std::option::Option::Some(__pglock_plan)
}

fn main() {
    let _ = (f, g, h, i);
}
