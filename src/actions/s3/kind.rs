//! A named bucket as a resource, with the settings harden holds it to.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aws::RegionClients;
use crate::error::Result;
use crate::inventory::{Filters, Kind, Narrowing, named};

use super::read::read_bucket;

/// An S3 bucket a runbook names (a log destination), as far as harden cares: whether it
/// exists and how it is protected. The whole struct is the state bucket changes compare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Bucket name, which is also its id.
    pub name: String,
    /// The region it is in (or will be created in).
    pub region: String,
    /// False when no bucket has the name yet.
    pub exists: bool,
    /// The bucket's public access block; `None` when none is set.
    pub public_access_block: Option<PublicAccessBlock>,
    /// Default encryption; `None` when none is configured.
    pub encryption: Option<BucketEncryption>,
    /// `Enabled` or `Suspended`; `None` when versioning was never turned on.
    pub versioning: Option<String>,
    /// The bucket policy as JSON; `None` when it has none.
    pub policy: Option<serde_json::Value>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Bucket {
    /// A bucket that does not exist yet.
    pub fn missing(name: &str, region: &str) -> Self {
        Self {
            name: name.into(),
            region: region.into(),
            exists: false,
            public_access_block: None,
            encryption: None,
            versioning: None,
            policy: None,
            tags: BTreeMap::new(),
        }
    }
}

/// The four switches of S3 Block Public Access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicAccessBlock {
    /// BlockPublicAcls.
    pub block_public_acls: bool,
    /// IgnorePublicAcls.
    pub ignore_public_acls: bool,
    /// BlockPublicPolicy.
    pub block_public_policy: bool,
    /// RestrictPublicBuckets.
    pub restrict_public_buckets: bool,
}

impl PublicAccessBlock {
    /// Every switch on.
    pub const ALL_ON: Self = Self {
        block_public_acls: true,
        ignore_public_acls: true,
        block_public_policy: true,
        restrict_public_buckets: true,
    };
}

/// A bucket's default encryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketEncryption {
    /// `AES256` or `aws:kms` (or `aws:kms:dsse`).
    pub algorithm: String,
    /// The KMS key, for `aws:kms`; `None` means the AWS-managed key.
    pub kms_key_id: Option<String>,
}

impl Kind for Bucket {
    const NAME: &'static str = "s3:bucket";
    const FILTERS: &'static [&'static str] =
        // Looked up by name, not listed: `name` is required.
        &["name"];
    const NARROWING: Narrowing = Narrowing::Named;

    fn sample() -> Self {
        Bucket::missing("sample", "us-east-1")
    }

    fn id(&self) -> &str {
        &self.name
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.tags)
    }

    /// Looks up each bucket named.
    async fn discover(clients: &RegionClients, filters: &Filters) -> Result<Vec<Self>> {
        named(filters, "name", |name| read_bucket(clients, name)).await
    }
}
