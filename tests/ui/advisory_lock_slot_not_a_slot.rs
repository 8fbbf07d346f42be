struct Tick;

#[pglock_runtime::advisory_lock(timeout = 0, on_fail = skip, slot = tick)]
async fn f(tick: Tick) {
    let _ = tick;
}

fn main() {}
