//! IAM roles the other runbooks rely on: service-linked roles (Config's), found by the
//! path AWS gives them and created when missing, and service roles harden owns (the role VPC flow logs assume
//! to write to CloudWatch Logs), created or held to their trust and inline policy. IAM
//! is global: runbooks create them in the home region only, and since apply runs one
//! step at a time, later steps in every region find them. IAM has no dry-run.
//!
//! `kind` is the two role kinds, `read` how a role and its policies are read, `plan` the
//! two actions and their inverses, `calls` the typed IAM calls (a service-linked role's
//! deletion is a task AWS runs, polled to its end).

mod calls;
mod kind;
mod plan;
mod read;
#[cfg(test)]
mod tests;

pub use calls::{RoleCalls, ServiceLinkedRoleCalls};
pub use kind::{Role, ServiceLinkedRole};
pub use plan::{EnsureRole, EnsureServiceLinkedRole, RoleArgs};
