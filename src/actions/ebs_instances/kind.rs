//! Reading instances: their EBS devices, the unencrypted volumes and what harden made
//! to replace them; the `ec2:instance` kind.

use super::*;
#[allow(unused_imports)]
use crate::aws::Answer;

/// An instance as `DescribeInstances` gives it, before its volumes are joined in.
pub(super) struct Described {
    pub(super) id: String,
    pub(super) state: String,
    pub(super) availability_zone: String,
    pub(super) tags: BTreeMap<String, String>,
    /// Device name to volume id and DeleteOnTermination.
    pub(super) devices: BTreeMap<String, (String, bool)>,
}

pub(super) const MAX_INSTANCES_PAGE: i32 = 1000;

pub(super) async fn describe(
    clients: &RegionClients,
    filters: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<Described>> {
    let mut request = clients
        .ec2
        .describe_instances()
        .max_results(MAX_INSTANCES_PAGE);
    for (name, values) in filters {
        request = request.filters(ebs_volumes::filter(name, values.clone()));
    }
    let mut found = Vec::new();
    let mut pages = request.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.or_failure("DescribeInstances")?;
        for instance in page.reservations().iter().flat_map(|r| r.instances()) {
            let Some(id) = instance.instance_id() else {
                continue;
            };
            found.push(Described {
                id: id.to_string(),
                state: instance
                    .state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str().to_string())
                    .unwrap_or_default(),
                availability_zone: instance
                    .placement()
                    .and_then(|p| p.availability_zone())
                    .unwrap_or_default()
                    .to_string(),
                tags: ec2_tags(instance.tags()),
                // DeleteOnTermination is read here: volume attachments omit it on moto.
                devices: instance
                    .block_device_mappings()
                    .iter()
                    .filter_map(|m| {
                        let ebs = m.ebs()?;
                        Some((
                            m.device_name()?.to_string(),
                            (
                                ebs.volume_id()?.to_string(),
                                ebs.delete_on_termination().unwrap_or(false),
                            ),
                        ))
                    })
                    .collect(),
            });
        }
    }
    Ok(found)
}

/// Joins instances with their volumes: each device's volume, the unencrypted ones
/// attached, and the originals of replacements made for the instance (`None` when
/// the original was deleted).
pub(super) fn assemble(described: Vec<Described>, volumes: &[Volume]) -> Vec<Instance> {
    let by_id: BTreeMap<&str, &Volume> = volumes.iter().map(|v| (v.id.as_str(), v)).collect();
    described
        .into_iter()
        .map(|d| {
            let mut unencrypted: BTreeMap<String, Option<Volume>> = BTreeMap::new();
            let devices = d
                .devices
                .iter()
                .map(|(name, (volume_id, delete))| {
                    let volume = by_id.get(volume_id.as_str());
                    let replaces = volume.and_then(|v| v.tags.get(SOURCE_VOLUME_TAG)).cloned();
                    if let Some(v) = volume
                        && !v.encrypted
                        && replaces.is_none()
                    {
                        unencrypted.insert(v.id.clone(), Some((*v).clone()));
                    }
                    (
                        name.clone(),
                        Device {
                            volume_id: volume_id.clone(),
                            delete_on_termination: *delete,
                            encrypted: volume.is_some_and(|v| v.encrypted),
                            replaces,
                        },
                    )
                })
                .collect();
            for made in volumes
                .iter()
                .filter(|v| v.tags.get(SWAP_INSTANCE_TAG) == Some(&d.id))
            {
                if let Some(source) = made.tags.get(SOURCE_VOLUME_TAG) {
                    unencrypted
                        .entry(source.clone())
                        .or_insert_with(|| by_id.get(source.as_str()).map(|v| (*v).clone()));
                }
            }
            Instance {
                id: d.id,
                state: d.state,
                availability_zone: d.availability_zone,
                tags: d.tags,
                devices,
                unencrypted,
            }
        })
        .collect()
}

/// Reads one instance with its volumes, every query filtered by id or tag so the cost
/// does not grow with the region: `DescribeInstances`, its attached volumes, the
/// replacements made for it, the originals a swap detached, and the snapshots and
/// copies of the unencrypted originals (five or six calls).
pub(super) async fn read_instance(clients: &RegionClients, id: &str) -> Result<Instance> {
    let by = |name: &str, values: Vec<String>| BTreeMap::from([(name.to_string(), values)]);
    let described = describe(clients, &by("instance-id", vec![id.to_string()])).await?;
    let attached: Vec<String> = described
        .iter()
        .flat_map(|d| d.devices.values().map(|(v, _)| v.clone()))
        .collect();
    let mut volumes = Vec::new();
    if !attached.is_empty() {
        volumes = ebs_volumes::describe_volumes(clients, &by("volume-id", attached)).await?;
    }
    let made = ebs_volumes::describe_volumes(
        clients,
        &by(&format!("tag:{SWAP_INSTANCE_TAG}"), vec![id.to_string()]),
    )
    .await?;
    let detached: Vec<String> = made
        .iter()
        .filter_map(|v| v.tags.get(SOURCE_VOLUME_TAG))
        .filter(|source| !volumes.iter().any(|v| &v.id == *source))
        .cloned()
        .collect();
    if !detached.is_empty() {
        volumes.extend(ebs_volumes::describe_volumes(clients, &by("volume-id", detached)).await?);
    }
    // Only the unencrypted originals have snapshots and copies to find; a replacement
    // that is attached is in `volumes` already.
    let (mut all, others): (Vec<Volume>, Vec<Volume>) = volumes
        .into_iter()
        .partition(|v| !v.encrypted && !v.tags.contains_key(SOURCE_VOLUME_TAG));
    ebs_volumes::find_artifacts(clients, &mut all, true).await?;
    all.extend(others);
    let unattached_made: Vec<Volume> = made
        .into_iter()
        .filter(|m| !all.iter().any(|v| v.id == m.id))
        .collect();
    all.extend(unattached_made);
    assemble(described, &all).pop().ok_or_else(|| {
        Error::Aws(AwsFailure {
            operation: "DescribeInstances".into(),
            code: "InvalidInstanceID.NotFound".into(),
            message: format!("instance {id} no longer exists"),
            request_id: None,
        })
    })
}

/// Tags harden puts on a replacement volume made for an instance: the instance, the
/// device it goes to and the original's DeleteOnTermination. With them, a swap that
/// stopped part-way (an original detached, its replacement not yet attached) can be
/// read back and finished or undone.
pub const SWAP_INSTANCE_TAG: &str = "harden:instance";
/// See [`SWAP_INSTANCE_TAG`].
pub const SWAP_DEVICE_TAG: &str = "harden:device";
/// See [`SWAP_INSTANCE_TAG`].
pub const SWAP_DELETE_ON_TERMINATION_TAG: &str = "harden:delete-on-termination";
/// Tag compensation puts on a replacement volume after undoing its swap; the volume is
/// kept for inspection and never used again.
pub const ROLLED_BACK_TAG: &str = "harden:rolled-back";
/// Tag harden puts on a running instance before stopping it for a swap (its value the
/// run id), and removes once it started the instance again. Whether an instance was
/// running is the one fact of a swap AWS does not keep: with the tag, a plan after a
/// process died mid-swap knows to start it, and a stopped instance without it was
/// stopped by someone else and stays stopped.
pub const WAS_RUNNING_TAG: &str = "harden:was-running";

/// An EC2 instance, its EBS devices, and the unencrypted volumes it has (or had, while
/// a swap is under way) with what harden made to replace them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// `i-...`.
    pub id: String,
    /// `pending`, `running`, `stopping`, `stopped`, ...
    pub state: String,
    /// Its availability zone.
    pub availability_zone: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// EBS devices by device name.
    pub devices: BTreeMap<String, Device>,
    /// Unencrypted volumes to replace or being replaced, by id: those attached, and
    /// those a swap detached (found through their replacement's tags; `None` once
    /// deleted with `delete_originals`).
    pub unencrypted: BTreeMap<String, Option<Volume>>,
}

/// An EBS volume attached to an instance at a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The volume attached there.
    pub volume_id: String,
    /// Whether the volume is deleted with the instance.
    pub delete_on_termination: bool,
    /// Whether that volume is encrypted.
    pub encrypted: bool,
    /// When the volume is a replacement harden made: the volume it replaces.
    pub replaces: Option<String>,
}

impl Instance {
    /// Whether harden stopped it while it was running and owes it a start
    /// ([`WAS_RUNNING_TAG`]).
    pub fn stopped_by_harden(&self) -> bool {
        self.tags.contains_key(WAS_RUNNING_TAG)
    }

    /// The device an unencrypted volume belongs at: where it is attached, or (once a
    /// swap detached it) the device its replacement was made for.
    pub fn device_of(&self, volume: &Volume) -> Option<String> {
        self.devices
            .iter()
            .find(|(_, d)| d.volume_id == volume.id)
            .map(|(name, _)| name.clone())
            .or_else(|| volume.replacement_tag(SWAP_DEVICE_TAG).map(str::to_string))
    }

    /// Whether the volume was deleted with the instance before its swap: read from its
    /// attachment, or (once detached) from its replacement's tag.
    pub fn original_delete_on_termination(&self, volume: &Volume) -> bool {
        match self.devices.values().find(|d| d.volume_id == volume.id) {
            Some(device) => device.delete_on_termination,
            None => volume.replacement_tag(SWAP_DELETE_ON_TERMINATION_TAG) == Some("true"),
        }
    }
}

impl Kind for Instance {
    const NAME: &'static str = "ec2:instance";
    const FILTERS: &'static [&'static str] = &[
        "instance-id",
        "instance-state-name",
        "availability-zone",
        "instance-type",
        "vpc-id",
        "tag-key",
    ];
    const NARROWING: Narrowing = Narrowing::ById("instance-id");
    const UNDONE_BY: &'static [KnownEvent] =
        &[KnownEvent::new("AttachVolume", "ec2.amazonaws.com")];

    fn sample() -> Self {
        Self {
            id: "i-00000000000000000".into(),
            state: "running".into(),
            availability_zone: "us-east-1a".into(),
            tags: BTreeMap::new(),
            devices: BTreeMap::from([(
                "/dev/xvda".to_string(),
                Device {
                    volume_id: "vol-00000000000000000".into(),
                    delete_on_termination: true,
                    encrypted: false,
                    replaces: None,
                },
            )]),
            unencrypted: BTreeMap::from([(
                "vol-00000000000000000".to_string(),
                Some(<Volume as Kind>::sample()),
            )]),
        }
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.tags)
    }

    /// Discovers instances with the server-side filters given, with their volumes: one
    /// paginated `DescribeInstances`, and the region's volumes with what harden made for
    /// them (three paginated calls) whatever the number of instances.
    async fn discover(clients: &RegionClients, filters: &Filters) -> Result<Vec<Self>> {
        let described = describe(clients, filters).await?;
        if described.is_empty() {
            return Ok(Vec::new());
        }
        let volumes = ebs_volumes::list_volumes(clients, &BTreeMap::new()).await?;
        Ok(assemble(described, &volumes))
    }
}
