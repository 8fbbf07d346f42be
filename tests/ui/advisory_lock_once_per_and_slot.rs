#[pglock_runtime::advisory_lock(timeout = 0, on_fail = skip, once_per = "1h", slot = day)]
async fn f(day: u32) {
    let _ = day;
}

fn main() {}
