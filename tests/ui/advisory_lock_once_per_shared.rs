#[pglock_runtime::advisory_lock(shared, on_fail = skip, once_per = "1m")]
async fn f() {}

fn main() {}
