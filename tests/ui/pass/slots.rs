//! Scheduled-job arguments on every function shape: async and plain, methods,
//! `xact`, a slot from a parameter, `retry`.

use std::time::SystemTime;

use pglock_runtime::advisory_lock;

#[advisory_lock(timeout = 0, on_fail = skip, once_per = "1m")]
async fn every_minute() {}

#[advisory_lock(timeout = 0, on_fail = skip, once_per = 3600, xact, retry)]
fn hourly_sync() -> Option<u32> {
    Some(1)
}

#[advisory_lock(timeout = "2s", slot = planned_at)]
async fn planned(planned_at: SystemTime) -> Result<(), pglock_runtime::Error> {
    let _ = planned_at;
    Ok(())
}

struct Reports {
    day: String,
}

impl Reports {
    #[advisory_lock(key = ("reports", 1), on_fail = skip, slot = &self.day, retry = true)]
    async fn nightly(&self) -> bool {
        true
    }
}

fn main() {
    let _ = every_minute();
    let _ = hourly_sync;
    let _ = planned(SystemTime::now());
    let r = Reports { day: "2026-12-02".to_owned() };
    let _ = r.nightly();
}
