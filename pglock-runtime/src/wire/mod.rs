//! Layer 1, the wire: one server session and the statements pglock runs on it.
//! Knows nothing of pools, locks or scopes (see `ARCHITECTURE.md`).

pub(crate) mod driver;
pub(crate) mod exec;
pub(crate) mod pooler;
pub(crate) mod send_now;
pub(crate) mod session;
pub(crate) mod tls;
