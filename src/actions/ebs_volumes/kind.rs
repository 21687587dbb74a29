use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::read::list_volumes;
use crate::aws::RegionClients;
use crate::error::Result;
use crate::event::KnownEvent;
use crate::inventory::{Filters, Kind, Narrowing};

/// Tag on the snapshots harden takes and copies: the apply run that made them.
pub const RUN_ID_TAG: &str = "harden:run-id";

/// Tag harden puts on a snapshot or volume it made, naming the volume it replaces.
pub const SOURCE_VOLUME_TAG: &str = "harden:source-volume";
/// Tag harden puts on an original volume once its encrypted replacement is verified.
pub const REPLACED_BY_TAG: &str = "harden:replaced-by";

/// An EBS volume and, when harden is replacing it by an encrypted copy, the snapshot,
/// the encrypted copy of the snapshot and the new volume, found by their tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// `vol-...`.
    pub id: String,
    /// Its availability zone.
    pub availability_zone: String,
    /// Size in GiB.
    pub size: i32,
    /// `gp2`, `gp3`, `io1`, `io2`, `st1`, `sc1`, `standard`.
    pub volume_type: String,
    /// Provisioned IOPS (io1, io2, gp3).
    pub iops: Option<i32>,
    /// Provisioned throughput in MiB/s (gp3).
    pub throughput: Option<i32>,
    /// Encrypted at rest.
    pub encrypted: bool,
    /// `available`, `in-use`, ...
    pub state: String,
    /// Instances it is attached to.
    pub attached_to: Vec<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// The snapshot harden took of it (tagged with the source volume, not encrypted).
    pub snapshot: Option<Artifact>,
    /// The encrypted copy of that snapshot.
    pub copy: Option<Artifact>,
    /// The encrypted volume made from the copy.
    pub replacement: Option<Artifact>,
    /// Snapshots harden made for it beyond the snapshot and the copy it keeps: a
    /// repeat after a lost answer, or another run at the same time, made them. The plan
    /// deletes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub strays: Vec<Artifact>,
    /// Replacement volumes beyond [`Volume::replacement`]: another run at the same
    /// time made them. Unlike a stray snapshot, one may have been attached and written
    /// since, so the plan blocks on them instead of deleting them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stray_volumes: Vec<Artifact>,
}

/// A snapshot or volume harden made while replacing a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// `snap-...` or `vol-...`.
    pub id: String,
    /// `pending`, `completed`, `available`, `error`, ...
    pub state: String,
    /// Encrypted.
    pub encrypted: bool,
    /// For a replacement volume: its shape and tags, which must be the original's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Box<VolumeShape>>,
    /// For a replacement volume: since when it has been in place, as read. Not part of
    /// the state changes compare (it is a fact of time, not of configuration).
    #[serde(default, skip_serializing)]
    pub placed: Option<Placed>,
}

/// Since when a replacement has been in place (attached to its instance, or created
/// when it replaces an unattached volume), and how long that was when it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    /// When.
    pub at: jiff::Timestamp,
    /// How long before the read.
    pub age: std::time::Duration,
}

/// What a replacement volume must keep of the original.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeShape {
    /// Volume type.
    pub volume_type: String,
    /// Size in GiB.
    pub size: i32,
    /// Provisioned IOPS (compared for io1, io2 and gp3 only).
    pub iops: Option<i32>,
    /// Provisioned throughput (compared for gp3 only).
    pub throughput: Option<i32>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Volume {
    /// The volume that replaced it, from its `harden:replaced-by` tag.
    pub fn replaced_by(&self) -> Option<&str> {
        self.tags.get(REPLACED_BY_TAG).map(String::as_str)
    }

    /// A tag of the replacement volume harden made for it.
    pub fn replacement_tag(&self, key: &str) -> Option<&str> {
        self.replacement
            .as_ref()?
            .shape
            .as_ref()?
            .tags
            .get(key)
            .map(String::as_str)
    }
}

impl Kind for Volume {
    const NAME: &'static str = "ec2:volume";
    const FILTERS: &'static [&'static str] = &[
        "volume-id",
        "status",
        "encrypted",
        "availability-zone",
        "volume-type",
        "attachment.instance-id",
        "tag-key",
    ];
    const NARROWING: Narrowing = Narrowing::ById("volume-id");
    const UNDONE_BY: &'static [KnownEvent] =
        &[KnownEvent::new("CreateVolume", "ec2.amazonaws.com")];

    fn sample() -> Self {
        Self {
            id: "vol-00000000000000000".into(),
            availability_zone: "us-east-1a".into(),
            size: 8,
            volume_type: "gp3".into(),
            iops: Some(3000),
            throughput: Some(125),
            encrypted: false,
            state: "available".into(),
            attached_to: Vec::new(),
            tags: BTreeMap::new(),
            snapshot: None,
            copy: None,
            replacement: None,
            strays: Vec::new(),
            stray_volumes: Vec::new(),
        }
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.tags)
    }

    /// Discovers volumes with the server-side filters given.
    async fn discover(clients: &RegionClients, filters: &Filters) -> Result<Vec<Self>> {
        Ok(list_volumes(clients, filters)
            .await?
            .into_iter()
            // harden's own replacement volumes are not themselves to be replaced.
            .filter(|v| !v.tags.contains_key(SOURCE_VOLUME_TAG))
            .collect())
    }
}
