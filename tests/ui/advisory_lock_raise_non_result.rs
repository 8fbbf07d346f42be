#[pglock_runtime::advisory_lock]
async fn count() -> u32 {
    1
}

fn main() {}
