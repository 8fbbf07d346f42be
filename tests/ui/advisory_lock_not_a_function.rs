#[pglock_runtime::advisory_lock]
struct Job;

fn main() {}
