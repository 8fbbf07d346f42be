//! Layer 5, the public faces: builders, guards and the traits of annotated
//! functions, each a thin front over the scope executor and the lock primitives
//! (see `ARCHITECTURE.md`).

pub(crate) mod advisory;
pub mod blocking;
pub(crate) mod leader;
pub(crate) mod on_fail;
pub(crate) mod prioritize;
#[doc(hidden)]
pub mod private;
pub(crate) mod schema;
pub(crate) mod shutdown;
pub(crate) mod table;
pub(crate) mod timeout;
