//! Attribute macros for pglock. Depend on `pglock-runtime`, which re-exports them.
