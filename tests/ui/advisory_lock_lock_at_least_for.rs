// ShedLock's `lockAtLeastFor` patches duplicate runs with the client's clock;
// pglock's `once_per` counts slots on the database's clock.
#[pglock_runtime::advisory_lock(timeout = 0, on_fail = skip, lock_at_least_for = "1m")]
async fn f() {}

fn main() {}
