//! Continuous mode: shared source watches and the per-mapping workers that sync each change.

pub mod hub;
pub mod worker;
