//! AWS Config (FSBP Config.1, CIS 3.3): a recorder records every supported resource type
//! (global types in the home region), with the service-linked role (or the role given),
//! is recording, its last status is not Failure, and a delivery channel exists.
//!
//! A region has at most one recorder: an existing one is reused under its own name,
//! never assumed to be `default`. A delivery channel is added only when none exists.
//! AWS Config has no dry-run.
//!
//! `kind` is the region's setup as a resource, `read` how it is read, `plan` the action
//! and its inverses, `calls` the typed AWS Config calls.

mod calls;
mod kind;
mod plan;
mod read;
#[cfg(test)]
mod tests;

pub use calls::RecorderCalls;
pub use kind::{ConfigRecorder, ConfigSetup, DeliveryChannel};
pub use plan::{EnsureRecorder, RecorderArgs};
pub use read::read_setup;
