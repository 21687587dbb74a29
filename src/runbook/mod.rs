//! Runbooks: the YAML format ([`model`]), reading files and folders with exact
//! locations ([`load`]), checking meaning before anything is contacted ([`validate`]),
//! and resolving `--param` values against the declared parameters ([`params`]).

pub mod load;
pub mod model;
pub mod params;
pub mod validate;

pub use load::{LoadedRunbook, load_paths};
pub use model::Runbook;
