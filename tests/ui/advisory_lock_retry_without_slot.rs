#[pglock_runtime::advisory_lock(timeout = 0, on_fail = skip, retry)]
async fn f() {}

fn main() {}
