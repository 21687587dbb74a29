//! CloudWatch Logs log groups the other runbooks write to (VPC flow logs): created when
//! missing, held to a retention and (optionally) a KMS key. Looked up by name.
//! CloudWatch Logs has no dry-run.
//!
//! `kind` is the log group as a resource, `read` reading one by name, `plan` the action
//! and its inverses, `calls` the typed CloudWatch Logs calls.

mod calls;
mod kind;
mod plan;
mod read;
#[cfg(test)]
mod tests;

pub use calls::LogGroupCalls;
pub use kind::LogGroup;
pub use plan::{EnsureLogGroup, LogGroupArgs};
pub use read::read_log_group;
