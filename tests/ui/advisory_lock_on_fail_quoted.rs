#[pglock_runtime::advisory_lock(on_fail = "skip", sahred)]
async fn f() {}

fn main() {}
