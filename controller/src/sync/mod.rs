//! The resource sync engine and its pure building blocks.

pub mod api;
pub mod cleanup;
pub mod crds;
pub mod discovery;
pub mod engine;
pub mod immutable;
pub mod kinds;
pub mod object;
pub mod ownership;
pub mod plan;
pub mod report;
pub mod sanitize;
pub mod select;
pub mod transform;
