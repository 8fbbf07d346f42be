#[pglock_runtime::lock_timeout("5s")]
fn migrate() {}

fn main() {}
