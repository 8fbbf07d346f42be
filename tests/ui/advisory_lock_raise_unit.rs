#[pglock_runtime::advisory_lock]
async fn send_reminders() {}

fn main() {}
