//! Runbooks: the YAML format ([`model`]), reading files and folders with exact
//! locations ([`load`]), and resolving `--param` values against the declared parameters
//! ([`params`]). Checking their meaning against this harden's actions, kinds and events
//! is [`crate::validate`].

pub mod load;
pub mod model;
pub mod params;

pub use load::{LoadedRunbook, load_paths};
pub use model::Runbook;
