//! Keys from the id types people have: `u64`, `usize`, `(prefix, u64)`, `char`,
//! `bool`, a part type of one's own, and a `uuid::Uuid` (feature `uuid`).

use std::fmt;

use pglock_runtime::{advisory_lock, KeyPart};

struct UserId(u64);

impl KeyPart for UserId {
    fn write_part(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        write!(out, "{}", self.0)
    }
}

#[advisory_lock(key = user_id, timeout = 0, on_fail = skip)]
async fn by_u64(user_id: u64) {}

#[advisory_lock(key = index, timeout = 0, on_fail = skip)]
async fn by_usize(index: usize) {}

#[advisory_lock(key = ("user", user_id), timeout = 0, on_fail = skip)]
async fn by_prefixed_u64(user_id: u64) {}

#[advisory_lock(key = ("user", &user), timeout = 0, on_fail = skip)]
async fn by_own_part(user: UserId) {}

#[advisory_lock(key = ("tenant", tenant), timeout = 0, on_fail = skip)]
async fn by_uuid(tenant: uuid::Uuid) {}

fn main() {
    let _ = by_u64(1);
    let _ = by_usize(1);
    let _ = by_prefixed_u64(1);
    let _ = by_own_part(UserId(1));
    let _ = by_uuid(uuid::Uuid::nil());
}
