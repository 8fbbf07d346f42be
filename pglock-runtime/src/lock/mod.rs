//! Layer 3, the lock primitives: the SQL and the in-process machinery that the
//! scope executor and the public faces call to take, watch and release locks
//! (see `ARCHITECTURE.md`).

pub(crate) mod advisory;
pub(crate) mod candidate;
pub(crate) mod heartbeat;
pub(crate) mod holders;
pub(crate) mod names;
pub(crate) mod queue;
pub(crate) mod schema;
pub(crate) mod slot;
pub(crate) mod terms;
pub(crate) mod timeout;
pub(crate) mod txn;
pub(crate) mod waits;
pub(crate) mod watchdog;
