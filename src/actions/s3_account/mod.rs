//! S3 Block Public Access for the whole account (FSBP S3.1): the four switches S3
//! Control holds per account, which apply to every bucket and access point the account
//! has or will have, whatever each bucket's own settings say. The setting is global (one
//! per account, whatever the region S3 Control is asked in), so its runbook changes it
//! in the home region only.
//!
//! `kind` is the resource and its discovery, `calls` the typed S3 Control calls that
//! read, put and delete it, `plan` the action and its inverse.

mod calls;
mod kind;
mod plan;

pub use kind::{AccountPublicAccessBlock, client};
pub use plan::{BlockAccountPublicAccess, BlockArgs};
