use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aws::RegionClients;
use crate::error::Result;
use crate::event::KnownEvent;
use crate::inventory::{Filters, Kind, Narrowing};

use super::read::read_setting;

/// A region's EBS encryption-by-default setting (FSBP EC2.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EbsEncryptionDefault {
    /// The region, which is also its id.
    pub region: String,
    /// Whether new volumes and snapshot copies are encrypted by default.
    pub enabled: bool,
    /// The ARN of the KMS key they are encrypted with; absent where the endpoint does
    /// not say (the emulators do not implement GetEbsDefaultKmsKeyId).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

impl Kind for EbsEncryptionDefault {
    const NAME: &'static str = "ec2:ebs-encryption-default";
    const FILTERS: &'static [&'static str] = &[];
    const NARROWING: Narrowing = Narrowing::RegionWide;
    const UNDONE_BY: &'static [KnownEvent] = &[
        KnownEvent::new("DisableEbsEncryptionByDefault", "ec2.amazonaws.com"),
        KnownEvent::new("ModifyEbsDefaultKmsKeyId", "ec2.amazonaws.com"),
        KnownEvent::new("ResetEbsDefaultKmsKeyId", "ec2.amazonaws.com"),
    ];

    fn sample() -> Self {
        EbsEncryptionDefault {
            region: "us-east-1".into(),
            enabled: false,
            kms_key_id: None,
        }
    }

    fn id(&self) -> &str {
        &self.region
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        None
    }

    /// Reads the region's setting: one resource whose id is the region.
    async fn discover(clients: &RegionClients, _filters: &Filters) -> Result<Vec<Self>> {
        Ok(vec![read_setting(clients).await?])
    }
}
