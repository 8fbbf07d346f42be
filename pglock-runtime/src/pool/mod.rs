//! Layer 2, the pool: database aliases, their configuration and pools, checked-out
//! connections and the scope connection of each alias. Knows nothing of locks or
//! scopes (see `ARCHITECTURE.md`).

pub(crate) mod config;
pub(crate) mod connection;
pub(crate) mod conninfo;
pub(crate) mod frames;
pub(crate) mod registry;
