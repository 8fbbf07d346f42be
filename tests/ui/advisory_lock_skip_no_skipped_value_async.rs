#[pglock_runtime::advisory_lock(timeout = 0, on_fail = skip)]
async fn count() -> u32 {
    1
}

fn main() {}
