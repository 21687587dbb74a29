//! CloudTrail (FSBP CloudTrail.1, .2, .4; CIS 3.1, 3.2, 3.5): some trail records every
//! region's read and write management events, is logging, validates its log files and,
//! when a key is asked for, is KMS-encrypted.
//!
//! Compliance is a property of the region's set of trails, so the resource is the set
//! (`cloudtrail:trails`, one per region). An existing trail homed here is brought into
//! compliance in place (UpdateTrail, PutEventSelectors, StartLogging) rather than
//! adding a second trail, which would double the cost of management events; a trail is
//! created only when none exists that could be fixed. CloudTrail has no dry-run.
//!
//! `kind` is the region's trails as a resource, `read` how they are read, `plan` the
//! action (compliance in place, or a new trail) and its inverse, `calls` the typed
//! CloudTrail calls.

mod calls;
mod kind;
mod plan;
mod read;
#[cfg(test)]
mod tests;

pub use calls::TrailCalls;
pub use kind::{Trail, Trails};
pub use plan::{EnsureTrail, TrailArgs};
