//! Layer 5, beside `api`: the introspection views (see `ARCHITECTURE.md`).

pub(crate) mod inspector;
pub(crate) mod runs;
pub(crate) mod terms;
pub(crate) mod tree;
