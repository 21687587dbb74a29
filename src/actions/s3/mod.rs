//! S3 buckets that receive logs (CloudTrail, VPC flow logs, AWS Config): created when
//! missing, then held to Block Public Access, default encryption, versioning and a
//! bucket policy whose statements the runbook declares.
//!
//! A bucket is named, not listed: discovery looks each name up and reports a missing
//! bucket as `exists: false`, which plans a `CreateBucket`. Settings are separate calls,
//! each its own change, each read back. An existing bucket policy is merged by `Sid`:
//! statements the runbook declares replace those with the same `Sid`, the rest are kept.
//! S3 has no `DryRun`: dry-run lists its changes as not probed.
//!
//! `kind` is the bucket as a resource, `read` how its settings are read, `plan` the
//! action and its inverses, `calls` the typed S3 calls.

mod calls;
mod kind;
mod plan;
mod read;
#[cfg(test)]
mod tests;

pub use calls::BucketCalls;
pub use kind::{Bucket, BucketEncryption, PublicAccessBlock};
pub use plan::{BucketArgs, EnsureBucket, normalize_policy};
