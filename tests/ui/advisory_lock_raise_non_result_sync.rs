#[pglock_runtime::advisory_lock]
fn count() -> u32 {
    1
}

fn main() {}
