//! EBS: the region's encryption-by-default setting (FSBP EC2.7, CIS 2.2.1). With it on,
//! every new volume and snapshot copy in the region is encrypted, with the AWS-managed
//! key unless a default key was set (`kms_key_arn`, compared with what
//! GetEbsDefaultKmsKeyId reads back, which is always an ARN).
//!
//! `kind` is the region's setting as a resource, `read` reading it, `plan` the action and
//! its inverse, `calls` the typed calls (with `DryRun` probes).

mod calls;
mod kind;
mod plan;
mod read;
#[cfg(test)]
mod tests;

pub use calls::EbsCalls;
pub use kind::EbsEncryptionDefault;
pub use plan::{EnableArgs, EnableEncryptionByDefault};
