#[pglock_runtime::advisory_lock(timeout = 0, on_fail = skip, on_error = raise)]
async fn f() {}

fn main() {}
