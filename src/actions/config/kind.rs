use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aws::RegionClients;
use crate::error::Result;
use crate::event::KnownEvent;
use crate::inventory::{Filters, Kind, Narrowing};

use super::read::read_setup;

/// A region's AWS Config setup: its recorder (a region has at most one) and delivery
/// channels. One resource per region, whose id is the region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSetup {
    /// The region, which is also the id.
    pub region: String,
    /// The recorder, under whatever name it has.
    pub recorder: Option<ConfigRecorder>,
    /// Delivery channels (name, bucket).
    pub delivery_channels: Vec<DeliveryChannel>,
}

/// A configuration recorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRecorder {
    /// Its name (never assumed to be `default`).
    pub name: String,
    /// The role it records with.
    pub role_arn: String,
    /// Records all supported resource types.
    pub all_supported: bool,
    /// Records global resource types (IAM) too.
    pub include_global: bool,
    /// Whether it is recording.
    pub recording: bool,
    /// `Success`, `Failure` or `Pending`; `None` before the first recording.
    pub last_status: Option<String>,
}

/// A delivery channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryChannel {
    /// Name.
    pub name: String,
    /// Destination bucket.
    pub bucket: String,
}

impl ConfigSetup {
    /// Whether a delivery channel (and so its bucket) has to be made.
    pub fn needs_delivery_channel(&self) -> bool {
        self.delivery_channels.is_empty()
    }
}

impl Kind for ConfigSetup {
    const NAME: &'static str = "config:recorder";
    const FILTERS: &'static [&'static str] = &[];
    const NARROWING: Narrowing = Narrowing::RegionWide;
    const UNDONE_BY: &'static [KnownEvent] = &[
        KnownEvent::new("StopConfigurationRecorder", "config.amazonaws.com"),
        KnownEvent::new("DeleteConfigurationRecorder", "config.amazonaws.com"),
        KnownEvent::new("DeleteDeliveryChannel", "config.amazonaws.com"),
        KnownEvent::new("PutConfigurationRecorder", "config.amazonaws.com"),
    ];

    fn sample() -> Self {
        ConfigSetup {
            region: "us-east-1".into(),
            recorder: None,
            delivery_channels: Vec::new(),
        }
    }

    fn id(&self) -> &str {
        &self.region
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        None
    }

    fn template_facts(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![(
            "needs_delivery_channel",
            self.needs_delivery_channel().into(),
        )]
    }

    /// Reads the region's AWS Config setup: one resource whose id is the region.
    async fn discover(clients: &RegionClients, _filters: &Filters) -> Result<Vec<Self>> {
        Ok(vec![read_setup(clients).await?])
    }
}
