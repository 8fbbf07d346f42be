#[pglock_runtime::prioritize(interval = 0, min_blocker_age = none, max_kills = 0)]
async fn migrate() -> Result<(), pglock_runtime::Error> {
    Ok(())
}

fn main() {}
