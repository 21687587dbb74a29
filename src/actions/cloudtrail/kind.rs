//! The region's trails as one resource: compliance is a property of the set.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aws::RegionClients;
use crate::error::Result;
use crate::event::KnownEvent;
use crate::inventory::{EXEMPT_TAG, Filters, Kind, Narrowing};

use super::read::read_trails;

/// The CloudTrail trails a region sees: its own and other regions' multi-region and
/// organization trails. One resource per region, whose id is the region, because
/// compliance (CloudTrail.1) is a property of the set: some trail must qualify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trails {
    /// The region, which is also the id.
    pub region: String,
    /// The trails, sorted by ARN.
    pub trails: Vec<Trail>,
}

/// One trail, as far as the CloudTrail controls care.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trail {
    /// Name.
    pub name: String,
    /// ARN.
    pub arn: String,
    /// The region it was created in; only there can it be changed.
    pub home_region: String,
    /// Records every region.
    pub multi_region: bool,
    /// An organization trail (counts, but a member account cannot change it).
    pub organization: bool,
    /// Whether it is logging.
    pub logging: bool,
    /// Log file integrity validation (CloudTrail.4).
    pub log_file_validation: bool,
    /// KMS key encrypting the logs (CloudTrail.2).
    pub kms_key_id: Option<String>,
    /// Destination bucket.
    pub bucket: String,
    /// Records global services (IAM, STS) events.
    pub include_global_service_events: bool,
    /// The event selectors in AWS's shape: `{"EventSelectors": [...]}` or
    /// `{"AdvancedEventSelectors": [...]}`, empty lists and absent fields left out.
    pub selectors: serde_json::Value,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Trail {
    /// Records read and write management events of every source (the selectors of
    /// CloudTrail.1): a basic selector with management events, `ReadWriteType` All and
    /// no excluded sources, or an advanced selector on `eventCategory = Management`
    /// alone.
    pub fn records_all_management_events(&self) -> bool {
        use serde_json::Value;
        let list = |key: &str| {
            self.selectors
                .get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let basic = list("EventSelectors").iter().any(|s| {
            s.get("IncludeManagementEvents").and_then(Value::as_bool) != Some(false)
                && s.get("ReadWriteType")
                    .and_then(Value::as_str)
                    .unwrap_or("All")
                    == "All"
                && s.get("ExcludeManagementEventSources")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
        });
        let advanced = list("AdvancedEventSelectors").iter().any(|s| {
            let fields = s
                .get("FieldSelectors")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            fields.len() == 1
                && fields[0].get("Field").and_then(Value::as_str) == Some("eventCategory")
                && fields[0].get("Equals") == Some(&serde_json::json!(["Management"]))
        });
        basic || advanced
    }

    /// Satisfies CloudTrail.1 and CloudTrail.4 (and CloudTrail.2 when `kms_required`).
    pub fn is_compliant(&self, kms_required: bool) -> bool {
        self.multi_region
            && self.logging
            && self.log_file_validation
            && self.records_all_management_events()
            && (!kms_required || self.kms_key_id.is_some())
    }

    /// True when tagged `harden:exempt` = `true`.
    pub fn is_exempt(&self) -> bool {
        self.tags
            .get(EXEMPT_TAG)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }
}

impl Trails {
    /// Whether making the region compliant means creating a trail: no trail qualifies
    /// (setting KMS aside), none homed here could be brought into compliance in place
    /// (or is exempt), and no multi-region trail homed elsewhere could be.
    pub fn needs_new_trail(&self) -> bool {
        !self.trails.iter().any(|t| {
            t.is_compliant(false)
                || (!t.organization && (t.home_region == self.region || t.multi_region))
        })
    }
}

impl Kind for Trails {
    const NAME: &'static str = "cloudtrail:trails";
    const FILTERS: &'static [&'static str] = &[];
    const NARROWING: Narrowing = Narrowing::RegionWide;
    const UNDONE_BY: &'static [KnownEvent] = &[
        KnownEvent::new("StopLogging", "cloudtrail.amazonaws.com"),
        KnownEvent::new("DeleteTrail", "cloudtrail.amazonaws.com"),
        KnownEvent::new("UpdateTrail", "cloudtrail.amazonaws.com"),
        KnownEvent::new("PutEventSelectors", "cloudtrail.amazonaws.com"),
    ];

    fn sample() -> Self {
        Trails {
            region: "us-east-1".into(),
            trails: Vec::new(),
        }
    }

    fn id(&self) -> &str {
        &self.region
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        // Trails are exempted one by one; the action honours their tags.
        None
    }

    fn template_facts(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![("needs_new_trail", self.needs_new_trail().into())]
    }

    /// Reads the region's trails: one resource whose id is the region.
    async fn discover(clients: &RegionClients, _filters: &Filters) -> Result<Vec<Self>> {
        Ok(vec![read_trails(clients).await?])
    }
}
