//! Replacing an unencrypted EBS volume by an encrypted copy (FSBP EC2.3): snapshot,
//! encrypted copy of the snapshot, new volume from the copy with the same zone, type,
//! size, IOPS, throughput and tags, then the original is tagged `harden:replaced-by`
//! and kept (deleted only with `delete_originals`, and then its snapshot is kept as the
//! way back), and the intermediate snapshots are removed once the new volume is verified.
//!
//! Progress lives in AWS, not in harden: every snapshot and volume harden makes is
//! tagged with the volume it replaces, and reading a volume's state finds them. So each
//! change's stale check and read-back see exactly how far the replacement got, the ids a
//! plan cannot know are taken from the state just read, and a replacement an earlier
//! run left half-way is planned from where it stopped. Every wait is bounded
//! (`wait.timeout_seconds`) and polls with the SDK's waiters (backoff between polls).
//!
//! This action replaces unattached volumes; volumes attached to an instance are
//! replaced with their instance by [`super::ebs_instances`], which plans the same
//! replacement and retirement steps around the swap.

mod rollback;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::operation::RequestId;
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification, VolumeType};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::waiters::error::WaiterError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    Action, ActionInfo, ActionPlan, Applied, ArgSpec, Calls, DraftChain, Inverse, RecordedChange,
    arg, arguments_of, ec2_tags, typed_args, typed_call,
};
use crate::actions::{Resource, ResourceKind};
use crate::aws::{RegionClients, failure};
use crate::error::{AwsFailure, Error, Result};
use crate::event::KnownEvent;
use crate::inventory::{Filters, Kind, Narrowing, ROLLED_BACK_TAG, SWAP_INSTANCE_TAG};
use crate::plan::{BlockReason, Change, ChangeKind, Probe};
use crate::template::{KNOWN_AFTER_APPLY, RUN_ID};

/// Tag on the snapshots harden takes and copies: the apply run that made them.
pub const RUN_ID_TAG: &str = "harden:run-id";

/// How long a wait may take when the step gives no `wait.timeout_seconds`: snapshots of
/// large volumes take a while.
pub const DEFAULT_WAIT_SECONDS: u64 = 3600;

const MAX_PAGE: i32 = 500;

/// Replaces an unattached unencrypted volume by an encrypted copy.
pub struct EncryptVolume;

static ENCRYPT: ActionInfo = ActionInfo {
    name: "ec2:encrypt-volume",
    description: "replace an unattached unencrypted volume by an encrypted copy (snapshot, encrypted snapshot copy, new volume with the same zone, type, size, IOPS, throughput and tags); the original is tagged harden:replaced-by and kept unless delete_originals; the intermediate snapshots are deleted after verification unless keep_snapshots",
    resource_kind: ResourceKind::Volume,
    outputs: &[],
    waits: true,
};

/// The part of a volume its replacement changes, as changes record it. IOPS and
/// throughput of a replacement are compared only for the types that provision them
/// (a gp2 volume's IOPS follow from its size). A deleted original reads as
/// `exists: false`.
pub(super) fn state(volume: Option<&Volume>) -> Value {
    let Some(volume) = volume else {
        return json!({"exists": false});
    };
    let mut replacement = json!(volume.replacement);
    if let Some(shape) = replacement.get_mut("shape").filter(|s| s.is_object()) {
        let kind = shape["volume_type"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !matches!(kind.as_str(), "io1" | "io2" | "gp3") {
            shape["iops"] = json!(KNOWN_AFTER_APPLY);
        }
        if kind != "gp3" {
            shape["throughput"] = json!(KNOWN_AFTER_APPLY);
        }
    }
    let mut state = json!({
        "exists": true,
        "encrypted": volume.encrypted,
        "state": volume.state,
        "replaced_by": volume.replaced_by(),
        "snapshot": volume.snapshot,
        "copy": volume.copy,
        "replacement": replacement,
    });
    // Only when there are some, so states without strays read as before.
    if !volume.strays.is_empty() {
        state["strays"] = json!(volume.strays.iter().map(|s| &s.id).collect::<Vec<_>>());
    }
    state
}

/// The plan of a volume whose replacement was undone (by a compensation or a
/// rollback, [`ROLLED_BACK_TAG`]): blocked until a person deletes what was kept, which
/// may hold data written to it meanwhile.
pub(super) fn undone(volume: &Volume) -> Option<ActionPlan> {
    let cause = volume.replacement_tag(ROLLED_BACK_TAG)?;
    let replacement = volume.replacement.as_ref().map_or("", |r| r.id.as_str());
    Some(ActionPlan::blocked(
        BlockReason::Failing,
        format!(
            "an earlier replacement of {} was undone ({cause}); its replacement {replacement} is kept for inspection: delete it and the snapshots tagged {SOURCE_VOLUME_TAG}={}, then plan again",
            volume.id, volume.id
        ),
    ))
}

/// A replacement volume harden made beside the one it keeps (two runs at once): it
/// may have been attached and written since, so a person decides, and until then the
/// plan blocks, keeping the leftover visible to the convergence check.
pub(super) fn second_replacement(volume: &Volume) -> Option<String> {
    if volume.stray_volumes.is_empty() {
        return None;
    }
    let others: Vec<&str> = volume.stray_volumes.iter().map(|v| v.id.as_str()).collect();
    let kept = volume.replacement.as_ref().map_or("", |r| r.id.as_str());
    Some(format!(
        "a second replacement volume of {} exists ({}, tagged {SOURCE_VOLUME_TAG}, made by another run at the same time) beside {kept}, the one harden keeps: delete {} once sure it holds nothing to keep, then plan again",
        volume.id,
        others.join(", "),
        if others.len() == 1 { "it" } else { "them" },
    ))
}

/// Tags a replacement carries: the original's (AWS's own `aws:` tags cannot be set),
/// which volume it replaces, and the `markers` of the caller (an instance swap's).
fn replacement_tags(volume: &Volume, markers: &[(&str, String)]) -> Vec<Value> {
    let mut tags: Vec<Value> = volume
        .tags
        .iter()
        .filter(|(k, _)| !k.starts_with("aws:") && k.as_str() != REPLACED_BY_TAG)
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    tags.push(json!({"Key": SOURCE_VOLUME_TAG, "Value": volume.id}));
    for (key, value) in markers {
        tags.push(json!({"Key": key, "Value": value}));
    }
    tags
}

fn unknown_artifact(encrypted: bool, state: &str) -> Artifact {
    Artifact {
        id: KNOWN_AFTER_APPLY.into(),
        state: state.into(),
        encrypted,
        shape: None,
        placed: None,
    }
}

/// Deletes the snapshots harden made twice for `volume` (see [`Volume::strays`]),
/// leaving it without strays.
pub(super) fn stray_steps(volume: &mut Volume) -> Vec<VolumeStep> {
    let strays = std::mem::take(&mut volume.strays);
    let mut current = volume.clone();
    let mut left = strays.clone();
    let mut steps = Vec::new();
    for stray in &strays {
        left.retain(|s| s.id != stray.id);
        current.strays = left.clone();
        steps.push(VolumeStep {
            kind: ChangeKind::Delete,
            summary: format!(
                "delete the snapshot {} harden made twice for {} (a repeat after a lost answer, or another run at the same time)",
                stray.id, volume.id
            ),
            after: Some(current.clone()),
            operation: "DeleteSnapshot",
            input: json!({"SnapshotId": stray.id}),
        });
    }
    steps
}

/// One planned change to a volume's replacement and the volume as it leaves it
/// (`None`: the original was deleted).
#[derive(Debug)]
pub(super) struct VolumeStep {
    pub kind: ChangeKind,
    pub summary: String,
    pub after: Option<Volume>,
    pub operation: &'static str,
    pub input: Value,
}

/// Why what an earlier run made for `volume` must not be built on, if it must not: an
/// artifact in state error, or a copy or replacement that is not encrypted.
pub(super) fn artifact_problem(volume: &Volume) -> Option<String> {
    if let Some(problem) = second_replacement(volume) {
        return Some(problem);
    }
    for (what, artifact) in [
        ("snapshot", &volume.snapshot),
        ("encrypted copy", &volume.copy),
        ("replacement volume", &volume.replacement),
    ] {
        if let Some(a) = artifact
            && a.state == "error"
        {
            return Some(format!(
                "the {what} {} an earlier run made is in state error: delete it, then plan again",
                a.id
            ));
        }
    }
    for (what, artifact) in [
        ("encrypted copy", &volume.copy),
        ("replacement volume", &volume.replacement),
    ] {
        if let Some(a) = artifact
            && !a.encrypted
        {
            return Some(format!(
                "the {what} {} an earlier run made is not encrypted: delete it, then plan again (give kms_key_id if the service ignored the default key)",
                a.id
            ));
        }
    }
    None
}

/// The changes that make an encrypted replacement of `volume`, from wherever an earlier
/// run stopped: snapshot, encrypted copy, new volume with the original's zone, type,
/// size, IOPS, throughput and tags plus `markers`.
pub(super) fn replacement_steps(
    volume: &Volume,
    kms: Option<&str>,
    markers: &[(&str, String)],
) -> Vec<VolumeStep> {
    let mut steps = Vec::new();
    let mut current = volume.clone();
    let id = volume.id.clone();
    let source_tag = |stage: &str| {
        json!([{"ResourceType": "snapshot", "Tags": [
            {"Key": SOURCE_VOLUME_TAG, "Value": id}, {"Key": "harden:stage", "Value": stage},
            {"Key": RUN_ID_TAG, "Value": RUN_ID}]}])
    };
    // Once the replacement exists, missing snapshots are not made again.
    if current.replacement.is_some() {
        return steps;
    }
    if current.snapshot.is_none() {
        current.snapshot = Some(unknown_artifact(false, "completed"));
        steps.push(VolumeStep {
            kind: ChangeKind::Create,
            summary: format!("snapshot {id} (waits until completed)"),
            after: Some(current.clone()),
            operation: "CreateSnapshot",
            input: json!({"VolumeId": id, "Description": format!("harden: {id} before encryption"),
                   "TagSpecifications": source_tag("snapshot")}),
        });
    }
    if current.copy.is_none() {
        current.copy = Some(unknown_artifact(true, "completed"));
        let mut input = json!({"SourceSnapshotId": current.snapshot.as_ref().map(|s| s.id.clone()),
            "Encrypted": true, "Description": format!("harden: encrypted copy for {id}"),
            "TagSpecifications": source_tag("copy")});
        if let Some(key) = kms {
            input["KmsKeyId"] = json!(key);
        }
        steps.push(VolumeStep {
            kind: ChangeKind::Create,
            summary: format!(
                "copy the snapshot of {id} encrypted{} (waits until completed)",
                kms.map(|k| format!(" with {k}")).unwrap_or_default()
            ),
            after: Some(current.clone()),
            operation: "CopySnapshot",
            input,
        });
    }
    if current.replacement.is_none() {
        let tags = replacement_tags(volume, markers);
        current.replacement = Some(Artifact {
            shape: Some(Box::new(VolumeShape {
                volume_type: volume.volume_type.clone(),
                size: volume.size,
                iops: volume.iops,
                throughput: volume.throughput,
                tags: tags
                    .iter()
                    .filter_map(|t| {
                        Some((
                            t["Key"].as_str()?.to_string(),
                            t["Value"].as_str()?.to_string(),
                        ))
                    })
                    .collect(),
            })),
            ..unknown_artifact(true, "available")
        });
        let mut input = json!({
            "AvailabilityZone": volume.availability_zone,
            "SnapshotId": current.copy.as_ref().map(|s| s.id.clone()),
            "VolumeType": volume.volume_type,
            "Size": volume.size,
            "Encrypted": true,
            "TagSpecifications": [{"ResourceType": "volume", "Tags": tags}],
        });
        // IOPS and throughput are settable only for the types that provision them.
        if matches!(volume.volume_type.as_str(), "io1" | "io2" | "gp3") {
            input["Iops"] = json!(volume.iops);
        }
        if volume.volume_type == "gp3" {
            input["Throughput"] = json!(volume.throughput);
        }
        if let Some(key) = kms {
            input["KmsKeyId"] = json!(key);
        }
        steps.push(VolumeStep {
            kind: ChangeKind::Create,
            summary: format!(
                "create an encrypted {} GiB {} volume in {} from the copy, with {}'s tags (waits until available)",
                volume.size, volume.volume_type, volume.availability_zone, id
            ),
            after: Some(current),
            operation: "CreateVolume",
            input,
        });
    }
    steps
}

/// What becomes of an original and its snapshots once its replacement is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Retirement {
    /// Keep the snapshot and its encrypted copy.
    pub keep_snapshots: bool,
    /// When the original goes.
    pub delete: Delete,
}

/// When an original is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Delete {
    /// Never: tagged and kept as the way back.
    #[default]
    Never,
    /// Once its replacement is verified (`delete_originals`).
    Now,
    /// By a later plan, once its replacement has been in place that long
    /// (`retire_originals_after`).
    After(std::time::Duration),
}

/// What to keep of an encryption: the arguments `ec2:encrypt-volume` and
/// `ec2:encrypt-instance-volumes` share.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetirementArgs {
    /// Keep the snapshots and their encrypted copies (default false).
    #[serde(default, deserialize_with = "arg::flag")]
    pub keep_snapshots: Option<bool>,
    /// Delete the originals once their replacements are verified, keeping the encrypted
    /// copies of their snapshots as the way back (default false: tag and keep them).
    #[serde(default, deserialize_with = "arg::flag")]
    pub delete_originals: Option<bool>,
    /// Delete each original by a later plan once its replacement has been in place
    /// this long (30d, 72h), keeping the encrypted copy of its snapshot as the way
    /// back; the plan shows when each is due.
    #[serde(default, deserialize_with = "arg::text")]
    pub retire_originals_after: Option<String>,
}

/// The arguments of `ec2:encrypt-volume`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeArgs {
    /// KMS key for the copy and the new volume; empty for the account's default EBS
    /// key.
    #[serde(default, deserialize_with = "arg::text")]
    pub kms_key_id: Option<String>,
    #[serde(flatten)]
    pub retirement: RetirementArgs,
}

impl Retirement {
    /// Reads `keep_snapshots`, `delete_originals` and `retire_originals_after`.
    pub(super) fn from_args(args: &RetirementArgs) -> std::result::Result<Self, String> {
        let keep_snapshots = args.keep_snapshots.unwrap_or(false);
        let now = args.delete_originals.unwrap_or(false);
        let after = args
            .retire_originals_after
            .as_deref()
            .map(parse_retire_after)
            .transpose()?;
        let delete = match (now, after) {
            (true, Some(_)) => {
                return Err("give delete_originals or retire_originals_after, not both".to_string());
            }
            (true, None) => Delete::Now,
            (false, Some(after)) => Delete::After(after),
            (false, None) => Delete::Never,
        };
        Ok(Self {
            keep_snapshots,
            delete,
        })
    }
}

/// A duration such as `30d`, `72h` or `90m` (a day is 24 hours).
fn parse_retire_after(text: &str) -> std::result::Result<std::time::Duration, String> {
    let span: jiff::Span = text.parse().map_err(|e| {
        format!("argument retire_originals_after: expected a duration such as 30d, 72h or 90m, found {text:?}: {e}")
    })?;
    let duration = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .ok()
        .and_then(|d| std::time::Duration::try_from(d).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            format!("argument retire_originals_after: expected a positive duration, found {text:?}")
        })?;
    Ok(duration)
}

/// The changes of a retirement, and, for an original a later plan deletes, when.
#[derive(Debug, Default)]
pub(super) struct Retired {
    pub steps: Vec<VolumeStep>,
    /// When the original becomes due for deletion, while it is not yet.
    pub due: Option<String>,
}

/// The changes once the replacement is verified in place: tag the original
/// `harden:replaced-by` (unless an earlier run did), then delete what is no longer
/// needed. Without `keep_snapshots` the unencrypted snapshot goes (a copy of the
/// unencrypted data is a finding of its own), and so does the encrypted copy while the
/// original is kept as the way back. An original that is to go (now, or once its
/// replacement has been in place long enough) keeps the encrypted copy as the way back;
/// it is never deleted when that copy is gone (an earlier run without either option
/// deleted it), since nothing would be left to go back to. Run on an original an
/// earlier run retired, this deletes the snapshots a run that died after tagging it
/// left behind, and the original once it is due.
pub(super) fn retirement_steps(volume: &Volume, retirement: Retirement) -> Retired {
    let mut steps = Vec::new();
    let mut current = volume.clone();
    let id = volume.id.clone();
    let retired_before = volume.replaced_by().is_some();
    if !retired_before {
        let replacement_id = current
            .replacement
            .as_ref()
            .map(|r| r.id.clone())
            .unwrap_or_else(|| KNOWN_AFTER_APPLY.into());
        current
            .tags
            .insert(REPLACED_BY_TAG.into(), replacement_id.clone());
        steps.push(VolumeStep {
            kind: ChangeKind::Update,
            summary: format!("tag {id} {REPLACED_BY_TAG}=<new volume>"),
            after: Some(current.clone()),
            operation: "CreateTags",
            input: json!({"Resources": [id], "Tags": [{"Key": REPLACED_BY_TAG, "Value": replacement_id}]}),
        });
    }
    let goes = retirement.delete != Delete::Never && current.copy.is_some();
    let placed = current.replacement.as_ref().and_then(|r| r.placed.clone());
    let (delete_now, due) = match retirement.delete {
        Delete::Never => (false, None),
        Delete::Now => (goes, None),
        Delete::After(_) if !goes => (false, None),
        Delete::After(after) => match (&placed, retired_before) {
            (Some(placed), true) if placed.age >= after => (true, None),
            (Some(placed), _) => (
                false,
                Some(format!(
                    "{id} is due for deletion at {} ({} after its replacement was put in place at {}; retire_originals_after)",
                    placed.at + jiff::SignedDuration::try_from(after).unwrap_or_default(),
                    jiff::SignedDuration::try_from(after).unwrap_or_default(),
                    placed.at
                )),
            ),
            (None, _) => (
                false,
                Some(format!(
                    "{id} is due for deletion once its replacement has been in place for {} (retire_originals_after)",
                    jiff::SignedDuration::try_from(after).unwrap_or_default()
                )),
            ),
        },
    };
    if !retirement.keep_snapshots {
        if !goes && let Some(copy) = current.copy.take() {
            steps.push(VolumeStep {
                kind: ChangeKind::Delete,
                summary: format!(
                    "delete the encrypted copy {} of {id} (the new volume is verified; the original is kept as the way back)",
                    copy.id
                ),
                after: Some(current.clone()),
                operation: "DeleteSnapshot",
                input: json!({"SnapshotId": copy.id}),
            });
        }
        if let Some(snapshot) = current.snapshot.take() {
            steps.push(VolumeStep {
                kind: ChangeKind::Delete,
                summary: format!(
                    "delete the unencrypted snapshot {} of {id} (the new volume is verified)",
                    snapshot.id
                ),
                after: Some(current.clone()),
                operation: "DeleteSnapshot",
                input: json!({"SnapshotId": snapshot.id}),
            });
        }
    }
    if delete_now {
        let copy = current.copy.as_ref().map_or("", |c| c.id.as_str());
        let why = match (retirement.delete, &placed) {
            (Delete::After(_), Some(placed)) => format!(
                "its replacement has been in place since {}, retire_originals_after has passed",
                placed.at
            ),
            _ => "the new volume is verified".to_string(),
        };
        steps.push(VolumeStep {
            kind: ChangeKind::Delete,
            summary: format!(
                "delete the original {id} ({why}; its encrypted snapshot {copy} is kept as the way back)"
            ),
            after: None,
            operation: "DeleteVolume",
            input: json!({"VolumeId": id}),
        });
    }
    Retired { steps, due }
}

impl Action for EncryptVolume {
    fn arguments(&self) -> Vec<ArgSpec> {
        arguments_of::<VolumeArgs>()
    }

    fn info(&self) -> &'static ActionInfo {
        &ENCRYPT
    }

    fn plan(&self, target: &Resource, args: &Value) -> std::result::Result<ActionPlan, String> {
        let Resource::Volume(volume) = target else {
            return Err(format!("expected an EBS volume, given {}", target.kind()));
        };
        let volume: &Volume = volume;
        let args: VolumeArgs = typed_args(args)?;
        let kms = args.kms_key_id.clone();
        let retirement = Retirement::from_args(&args.retirement)?;
        if volume.encrypted {
            return Ok(ActionPlan::default());
        }
        // An original an instance swap retired is its instance's to clean up.
        if volume.replaced_by().is_some() && volume.replacement_tag(SWAP_INSTANCE_TAG).is_some() {
            return Ok(ActionPlan::default());
        }
        if !volume.attached_to.is_empty() {
            return Ok(ActionPlan::blocked(
                BlockReason::NeedsDowntime,
                format!(
                    "attached to {}: an attached volume is replaced with its instance (ec2:encrypt-instance-volumes)",
                    volume.attached_to.join(", ")
                ),
            ));
        }
        if let Some(instance) = volume.replacement_tag(SWAP_INSTANCE_TAG) {
            return Ok(ActionPlan::blocked(
                BlockReason::InUse,
                format!(
                    "detached by a swap of instance {instance} that has not finished: the instance's step finishes or undoes it"
                ),
            ));
        }
        if let Some(undone) = undone(volume) {
            return Ok(undone);
        }
        if let Some(problem) = artifact_problem(volume) {
            return Ok(ActionPlan::blocked(BlockReason::Failing, problem));
        }
        let mut chain = DraftChain::new("ec2", state(Some(volume)));
        let mut current = Some(volume.clone());
        // Duplicates first; what follows builds on the volume without them.
        let mut volume = volume.clone();
        let strays = stray_steps(&mut volume);
        let volume = &volume;
        let steps = if volume.replaced_by().is_some() {
            Vec::new()
        } else {
            replacement_steps(volume, kms.as_deref(), &[])
        };
        let replaced = steps.last().and_then(|s| s.after.clone());
        let Retired { steps: retire, due } =
            retirement_steps(replaced.as_ref().unwrap_or(volume), retirement);
        let steps: Vec<VolumeStep> = strays.into_iter().chain(steps).collect();
        if steps.is_empty() && retire.is_empty() {
            return Ok(match due {
                Some(due) => ActionPlan::blocked(BlockReason::NotYetDue, due),
                None => ActionPlan::default(),
            });
        }
        for step in steps.into_iter().chain(retire) {
            current = step.after;
            chain.push(
                step.kind,
                step.summary,
                state(current.as_ref()),
                step.operation,
                step.input,
            );
        }
        Ok(ActionPlan {
            changes: chain.into_changes(),
            blocked: None,
            projected: current.map(|v| Resource::Volume(Box::new(v))),
        })
    }

    fn calls(&self) -> &'static dyn Calls {
        &VolumeCalls
    }

    fn inverse_chain(
        &self,
        run_id: &str,
        resource_id: &str,
        made: &[RecordedChange<'_>],
    ) -> Option<std::result::Result<Vec<Inverse>, String>> {
        Some(rollback::inverse_chain(run_id, resource_id, made))
    }
}

/// Reads, applies (with waits) and probes volume replacement changes.
pub struct VolumeCalls;

/// An input value (at JSON pointer `field`) the plan may have left to apply: taken from
/// the state just read at `from`. Probes only run on calls whose inputs are all known.
/// Every call of a volume's replacement, as a plan stores it (EC2's field names); an
/// instance swap makes them too, for each of its volumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
pub(super) enum VolumeCall {
    CreateSnapshot(CreateSnapshotInput),
    CopySnapshot(CopySnapshotInput),
    CreateVolume(CreateVolumeInput),
    CreateTags(TagsInput),
    DeleteTags(TagsInput),
    DeleteSnapshot(SnapshotIdInput),
    DeleteVolume(VolumeIdInput),
}

impl VolumeCall {
    /// The volume the call names: the one snapshotted, deleted or tagged, or the one
    /// what it creates is tagged as made for (`None`: a delete of an artifact whose id
    /// the plan could not know).
    pub(super) fn named_volume(&self) -> Option<&str> {
        fn source(specs: &[TagSpecificationInput]) -> Option<&str> {
            specs.first().and_then(|spec| {
                spec.tags
                    .iter()
                    .find(|t| t.key == SOURCE_VOLUME_TAG)
                    .and_then(|t| t.value.as_deref())
            })
        }
        match self {
            VolumeCall::CreateSnapshot(input) => Some(&input.volume_id),
            VolumeCall::DeleteVolume(input) => Some(&input.volume_id),
            VolumeCall::CreateTags(input) | VolumeCall::DeleteTags(input) => {
                input.resources.first().map(String::as_str)
            }
            VolumeCall::CopySnapshot(input) => source(&input.tag_specifications),
            VolumeCall::CreateVolume(input) => source(&input.tag_specifications),
            VolumeCall::DeleteSnapshot(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct TagInput {
    pub(super) key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct TagSpecificationInput {
    resource_type: String,
    tags: Vec<TagInput>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct CreateSnapshotInput {
    volume_id: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tag_specifications: Vec<TagSpecificationInput>,
}

/// `SourceSnapshotId` is `(known after apply)` (or absent) while the snapshot is yet
/// to be made: it is taken from the state just read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct CopySnapshotInput {
    #[serde(default)]
    source_snapshot_id: Option<String>,
    encrypted: bool,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tag_specifications: Vec<TagSpecificationInput>,
    #[serde(default)]
    kms_key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct CreateVolumeInput {
    availability_zone: String,
    #[serde(default)]
    snapshot_id: Option<String>,
    volume_type: String,
    #[serde(default)]
    size: Option<i32>,
    encrypted: bool,
    #[serde(default)]
    tag_specifications: Vec<TagSpecificationInput>,
    #[serde(default)]
    iops: Option<i32>,
    #[serde(default)]
    throughput: Option<i32>,
    #[serde(default)]
    kms_key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct TagsInput {
    pub(super) resources: Vec<String>,
    pub(super) tags: Vec<TagInput>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct SnapshotIdInput {
    pub(super) snapshot_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct VolumeIdInput {
    volume_id: String,
}

/// A value of a call's input (`field` names it) that the plan could not know is taken
/// from the state just read, at `from`.
pub(super) fn resolve(
    change: &Change,
    given: Option<&str>,
    field: &str,
    current: &Value,
    from: &str,
) -> Result<String> {
    match given {
        Some(value) if value != KNOWN_AFTER_APPLY => Ok(value.to_string()),
        _ => current
            .pointer(from)
            .and_then(Value::as_str)
            .filter(|v| *v != KNOWN_AFTER_APPLY)
            .map(str::to_string)
            .ok_or_else(|| {
                Error::StalePlan { resource: change.resource.id.clone(), detail: format!("{field} is known only after an earlier change, and the state read has none at {from}") }
            }),
    }
}

fn tag_specifications(
    specs: &[TagSpecificationInput],
    resource: ResourceType,
) -> Vec<TagSpecification> {
    specs
        .iter()
        .map(|spec| {
            TagSpecification::builder()
                .resource_type(resource.clone())
                .set_tags(Some(
                    spec.tags
                        .iter()
                        .map(|t| {
                            Tag::builder()
                                .key(&t.key)
                                .value(t.value.as_deref().unwrap_or_default())
                                .build()
                        })
                        .collect(),
                ))
                .build()
        })
        .collect()
}

pub(super) fn wait_limit(change: &Change) -> Duration {
    Duration::from_secs(change.wait_timeout_seconds.unwrap_or(DEFAULT_WAIT_SECONDS))
}

/// A waiter's failure as the failure of the change: timed out, or the resource reached
/// a state it cannot leave (a snapshot in `error`).
pub(super) fn wait_failure<O, E>(
    operation: &str,
    what: &str,
    limit: Duration,
    error: WaiterError<O, E>,
) -> Error
where
    O: std::fmt::Debug,
    E: std::fmt::Debug,
{
    let (code, message) = match &error {
        WaiterError::ExceededMaxWait(_) => (
            "WaitTimeout",
            format!(
                "{what} was not ready within {} s (wait.timeout_seconds)",
                limit.as_secs()
            ),
        ),
        WaiterError::FailureState(_) => ("WaitFailed", format!("{what} reached a failed state")),
        _ => (
            "WaitError",
            format!("waiting for {what}: {error:?}").replace('\n', " "),
        ),
    };
    Error::Aws(AwsFailure {
        operation: operation.into(),
        code: code.into(),
        message,
        request_id: None,
    })
}

/// One attempt per send: the SDK must not repeat a create that has no idempotency
/// token, since a repeat after a lost answer makes a second snapshot.
fn single_attempt() -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::config::Builder::default()
        .retry_config(aws_smithy_types::retry::RetryConfig::standard().with_max_attempts(1))
}

/// Something the snapshot creates answer with.
trait SnapshotAnswer {
    fn snapshot(&self) -> Option<&str>;
}

impl SnapshotAnswer for aws_sdk_ec2::operation::create_snapshot::CreateSnapshotOutput {
    fn snapshot(&self) -> Option<&str> {
        self.snapshot_id()
    }
}

impl SnapshotAnswer for aws_sdk_ec2::operation::copy_snapshot::CopySnapshotOutput {
    fn snapshot(&self) -> Option<&str> {
        self.snapshot_id()
    }
}

/// How many times a snapshot create is sent when no answer comes back and no snapshot
/// it would have made is found.
const CREATE_ATTEMPTS: usize = 3;

/// Makes a snapshot (CreateSnapshot, CopySnapshot: no ClientToken in the EC2 API) at
/// most once: when no answer comes back (the connection dropped, a timeout, a 5xx),
/// the snapshot this run's call would have made is looked for by its tags (source
/// volume, stage and run id) and adopted if found; only if it is not there is the call
/// sent again. Returns the snapshot id and the request id.
async fn create_once<O, E, F, Fut>(
    clients: &RegionClients,
    operation: &str,
    specs: &[TagSpecificationInput],
    dry_run: bool,
    send: F,
) -> Result<(String, Option<String>)>
where
    O: SnapshotAnswer + RequestId,
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<O, SdkError<E, HttpResponse>>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match send().await {
            Ok(out) => {
                let id = out.snapshot().unwrap_or_default().to_string();
                return Ok((id, out.request_id().map(str::to_string)));
            }
            Err(e) => e,
        };
        let lost = !dry_run
            && match &error {
                SdkError::DispatchFailure(_)
                | SdkError::TimeoutError(_)
                | SdkError::ResponseError(_) => true,
                SdkError::ServiceError(s) => s.raw().status().is_server_error(),
                _ => false,
            };
        let failed = Error::Aws(failure(operation, &error));
        if !lost {
            return Err(failed);
        }
        if let Some(id) = made_by_this_call(clients, specs).await? {
            return Ok((id, None));
        }
        if attempt >= CREATE_ATTEMPTS {
            return Err(failed);
        }
    }
}

/// The snapshot this change's call made, if one is there: found by the tags the call
/// puts on it (source volume, stage, run id).
async fn made_by_this_call(
    clients: &RegionClients,
    specs: &[TagSpecificationInput],
) -> Result<Option<String>> {
    let tags = specs.first().map(|s| s.tags.as_slice()).unwrap_or_default();
    let mut request = clients.ec2.describe_snapshots().owner_ids("self");
    for key in [SOURCE_VOLUME_TAG, "harden:stage", RUN_ID_TAG] {
        let value = tags
            .iter()
            .find(|t| t.key == key)
            .and_then(|t| t.value.as_deref());
        let Some(value) = value else {
            return Ok(None);
        };
        request = request.filters(filter(&format!("tag:{key}"), vec![value.to_string()]));
    }
    let out = request
        .send()
        .await
        .map_err(|e| Error::Aws(failure("DescribeSnapshots", &e)))?;
    Ok(out
        .snapshots()
        .iter()
        .filter_map(|s| s.snapshot_id())
        .next()
        .map(str::to_string))
}

/// Makes a volume step's call. `current` is the volume's state just read and `after`
/// the volume's part of the change's after (the whole after for a volume's own chain):
/// together they tell which artifact a delete whose id the plan could not know is for.
pub(super) async fn call(
    clients: &RegionClients,
    change: &Change,
    current: &Value,
    after: &Value,
    dry_run: bool,
) -> Result<Applied> {
    let ec2 = &clients.ec2;
    let operation = change.call.operation.as_str();
    let limit = wait_limit(change);
    let aws = |e| Error::Aws(e);
    match typed_call::<VolumeCall>(change)? {
        VolumeCall::CreateSnapshot(input) => {
            let specs = &input.tag_specifications;
            let (id, request_id) = create_once(clients, operation, specs, dry_run, || {
                ec2.create_snapshot()
                    .volume_id(&input.volume_id)
                    .set_description(input.description.clone())
                    .set_tag_specifications(Some(tag_specifications(specs, ResourceType::Snapshot)))
                    .dry_run(dry_run)
                    .customize()
                    .config_override(single_attempt())
                    .send()
            })
            .await?;
            ec2.wait_until_snapshot_completed()
                .snapshot_ids(&id)
                .wait(limit)
                .await
                .map_err(|e| wait_failure(operation, &format!("snapshot {id}"), limit, e))?;
            Ok(Applied::request(request_id.as_deref()))
        }
        VolumeCall::CopySnapshot(input) => {
            let source = resolve(
                change,
                input.source_snapshot_id.as_deref(),
                "SourceSnapshotId",
                current,
                "/snapshot/id",
            )?;
            let specs = &input.tag_specifications;
            let (id, request_id) = create_once(clients, operation, specs, dry_run, || {
                ec2.copy_snapshot()
                    .source_snapshot_id(&source)
                    .source_region(&clients.region)
                    .encrypted(true)
                    .set_kms_key_id(input.kms_key_id.clone())
                    .set_description(input.description.clone())
                    .set_tag_specifications(Some(tag_specifications(specs, ResourceType::Snapshot)))
                    .dry_run(dry_run)
                    .customize()
                    .config_override(single_attempt())
                    .send()
            })
            .await?;
            ec2.wait_until_snapshot_completed()
                .snapshot_ids(&id)
                .wait(limit)
                .await
                .map_err(|e| wait_failure(operation, &format!("encrypted copy {id}"), limit, e))?;
            Ok(Applied::request(request_id.as_deref()))
        }
        VolumeCall::CreateVolume(input) => {
            let snapshot = resolve(
                change,
                input.snapshot_id.as_deref(),
                "SnapshotId",
                current,
                "/copy/id",
            )?;
            let out = ec2
                .create_volume()
                .availability_zone(input.availability_zone)
                .snapshot_id(snapshot)
                .volume_type(VolumeType::from(input.volume_type.as_str()))
                .set_size(input.size)
                .set_iops(input.iops)
                .set_throughput(input.throughput)
                .encrypted(true)
                .set_kms_key_id(input.kms_key_id)
                .set_tag_specifications(Some(tag_specifications(
                    &input.tag_specifications,
                    ResourceType::Volume,
                )))
                // One token per call, kept by the SDK's retries: a repeat after a lost
                // answer returns the volume already made instead of making another.
                .client_token(crate::actions::client_token())
                .dry_run(dry_run)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?;
            let id = out.volume_id().unwrap_or_default().to_string();
            ec2.wait_until_volume_available()
                .volume_ids(&id)
                .wait(limit)
                .await
                .map_err(|e| wait_failure(operation, &format!("volume {id}"), limit, e))?;
            Ok(Applied::request(out.request_id()))
        }
        VolumeCall::CreateTags(input) => {
            let tag = first_tag(change, &input)?;
            let value = resolve(
                change,
                tag.value.as_deref(),
                "Tags[0].Value",
                current,
                "/replacement/id",
            )?;
            let out = ec2
                .create_tags()
                .set_resources(Some(resources(change, &input)?))
                .tags(Tag::builder().key(&tag.key).value(value).build())
                .dry_run(dry_run)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?;
            Ok(Applied::request(out.request_id()))
        }
        VolumeCall::DeleteTags(input) => {
            let tag = first_tag(change, &input)?;
            let out = ec2
                .delete_tags()
                .set_resources(Some(resources(change, &input)?))
                .tags(Tag::builder().key(&tag.key).build())
                .dry_run(dry_run)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?;
            Ok(Applied::request(out.request_id()))
        }
        VolumeCall::DeleteSnapshot(input) => {
            // Which of the two: the one the change leaves gone.
            let gone = |field: &str| !current[field].is_null() && after[field].is_null();
            let from = if gone("copy") {
                "/copy/id"
            } else if gone("snapshot") {
                "/snapshot/id"
            } else if current
                .pointer("/copy/id")
                .and_then(Value::as_str)
                .is_some()
            {
                "/copy/id"
            } else {
                "/snapshot/id"
            };
            let id = resolve(
                change,
                Some(&input.snapshot_id),
                "SnapshotId",
                current,
                from,
            )?;
            let out = ec2
                .delete_snapshot()
                .snapshot_id(id)
                .dry_run(dry_run)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?;
            Ok(Applied::request(out.request_id()))
        }
        VolumeCall::DeleteVolume(input) => {
            let out = ec2
                .delete_volume()
                .volume_id(input.volume_id)
                .dry_run(dry_run)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?;
            Ok(Applied::request(out.request_id()))
        }
    }
}

/// The one tag a tagging change sets or removes.
fn first_tag<'a>(change: &Change, input: &'a TagsInput) -> Result<&'a TagInput> {
    input
        .tags
        .first()
        .ok_or_else(|| Error::plan_input(&change.id, "Tags names no tag"))
}

/// The ids a tagging change names (`Resources`): at least one.
fn resources(change: &Change, input: &TagsInput) -> Result<Vec<String>> {
    let ids = input.resources.clone();
    if ids.is_empty() {
        return Err(Error::plan_input(
            &change.id,
            "Resources names no volume or snapshot",
        ));
    }
    Ok(ids)
}

/// The rights of a volume's encryption: its snapshots, copies and volumes.
pub(crate) static VOLUME_RIGHTS: crate::actions::Rights = crate::actions::Rights {
    reads: &["ec2:DescribeVolumes", "ec2:DescribeSnapshots"],
    changes: &[
        "ec2:CreateSnapshot",
        "ec2:CopySnapshot",
        "ec2:CreateVolume",
        "ec2:DeleteSnapshot",
        "ec2:DeleteVolume",
        "ec2:CreateTags",
        "ec2:DeleteTags",
    ],
    passes_role_to: &[],
    kms_via_ec2: true,
    includes: &[],
};

#[async_trait]
impl Calls for VolumeCalls {
    fn rights(&self) -> &'static crate::actions::Rights {
        &VOLUME_RIGHTS
    }

    fn check(&self, change: &Change) -> Result<()> {
        typed_call::<VolumeCall>(change).map(drop)
    }

    async fn read(&self, clients: &RegionClients, resource_id: &str) -> Result<Value> {
        let mut volumes = list_volumes(
            clients,
            &BTreeMap::from([("volume-id".to_string(), vec![resource_id.to_string()])]),
        )
        .await?;
        Ok(state(volumes.pop().as_ref()))
    }

    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        current: &Value,
    ) -> Result<Applied> {
        call(clients, change, current, &change.after, false).await
    }

    async fn probe(&self, clients: &RegionClients, change: &Change) -> Probe {
        super::dry_run_answer(call(clients, change, &Value::Null, &change.after, true).await)
    }
}

/// Lists volumes (server-side filters) with the snapshots, copies and replacement
/// volumes harden made for them: three paginated calls whatever their number.
pub(super) async fn list_volumes(
    clients: &RegionClients,
    filters: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<Volume>> {
    let mut volumes = describe_volumes(clients, filters).await?;
    // Artifacts by the volumes' ids when reading a few; by the tag's presence otherwise.
    let by_id = filters.contains_key("volume-id");
    find_artifacts(clients, &mut volumes, by_id).await?;
    Ok(volumes)
}

/// An EC2 list filter.
pub(super) fn filter(name: &str, values: Vec<String>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values))
        .build()
}

/// Lists volumes (server-side filters), without what harden made for them: one
/// paginated call.
pub(super) async fn describe_volumes(
    clients: &RegionClients,
    filters: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<Volume>> {
    let ec2 = &clients.ec2;
    let mut request = ec2.describe_volumes().max_results(MAX_PAGE);
    for (name, values) in filters {
        request = request.filters(filter(name, values.clone()));
    }
    let mut volumes = Vec::new();
    let mut pages = request.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::Aws(failure("DescribeVolumes", &e)))?;
        for v in page.volumes() {
            let Some(id) = v.volume_id() else { continue };
            volumes.push(Volume {
                id: id.to_string(),
                availability_zone: v.availability_zone().unwrap_or_default().to_string(),
                size: v.size().unwrap_or_default(),
                volume_type: v
                    .volume_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                iops: v.iops(),
                throughput: v.throughput(),
                encrypted: v.encrypted().unwrap_or(false),
                state: v
                    .state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                attached_to: v
                    .attachments()
                    .iter()
                    .filter_map(|a| a.instance_id().map(str::to_string))
                    .collect(),
                tags: ec2_tags(v.tags()),
                snapshot: None,
                copy: None,
                replacement: None,
                strays: Vec::new(),
                stray_volumes: Vec::new(),
            });
        }
    }
    Ok(volumes)
}

/// Finds the snapshot, copy and replacement harden made for each of `volumes` (by
/// their tags): two paginated calls, filtered by the volumes' ids when `by_id`, else
/// by the tag's presence (cheaper than hundreds of ids when listing a region).
pub(super) async fn find_artifacts(
    clients: &RegionClients,
    volumes: &mut [Volume],
    by_id: bool,
) -> Result<()> {
    let ec2 = &clients.ec2;
    if volumes.is_empty() {
        return Ok(());
    }
    let sources: Vec<String> = volumes.iter().map(|v| v.id.clone()).collect();
    let source_filter = if by_id {
        filter(&format!("tag:{SOURCE_VOLUME_TAG}"), sources)
    } else {
        filter("tag-key", vec![SOURCE_VOLUME_TAG.to_string()])
    };
    let mut snapshots: BTreeMap<String, (Option<Artifact>, Option<Artifact>)> = BTreeMap::new();
    let mut strays: BTreeMap<String, Vec<Artifact>> = BTreeMap::new();
    let mut pages = ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(source_filter.clone())
        .max_results(1000)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::Aws(failure("DescribeSnapshots", &e)))?;
        for s in page.snapshots() {
            let tags = ec2_tags(s.tags());
            let Some(source) = tags.get(SOURCE_VOLUME_TAG) else {
                continue;
            };
            let artifact = Artifact {
                id: s.snapshot_id().unwrap_or_default().to_string(),
                state: s
                    .state()
                    .map(|st| st.as_str().to_string())
                    .unwrap_or_default(),
                encrypted: s.encrypted().unwrap_or(false),
                shape: None,
                placed: None,
            };
            let entry = snapshots.entry(source.clone()).or_default();
            let slot = if tags.get("harden:stage").map(String::as_str) == Some("copy") {
                &mut entry.1
            } else {
                &mut entry.0
            };
            // Two of one stage: keep a completed one (the lowest id of those), the
            // other is a stray the plan deletes.
            match slot.take() {
                None => *slot = Some(artifact),
                Some(kept) => {
                    let rank = |a: &Artifact| (a.state != "completed", a.id.clone());
                    let (keep, stray) = if rank(&artifact) < rank(&kept) {
                        (artifact, kept)
                    } else {
                        (kept, artifact)
                    };
                    *slot = Some(keep);
                    strays.entry(source.clone()).or_default().push(stray);
                }
            }
        }
    }
    let mut replacements: BTreeMap<String, Vec<Artifact>> = BTreeMap::new();
    let mut pages = ec2
        .describe_volumes()
        .filters(source_filter)
        .max_results(MAX_PAGE)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::Aws(failure("DescribeVolumes", &e)))?;
        for v in page.volumes() {
            let tags = ec2_tags(v.tags());
            let Some(source) = tags.get(SOURCE_VOLUME_TAG) else {
                continue;
            };
            replacements
                .entry(source.clone())
                .or_default()
                .push(Artifact {
                    id: v.volume_id().unwrap_or_default().to_string(),
                    state: v
                        .state()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    encrypted: v.encrypted().unwrap_or(false),
                    shape: Some(Box::new(VolumeShape {
                        volume_type: v
                            .volume_type()
                            .map(|t| t.as_str().to_string())
                            .unwrap_or_default(),
                        size: v.size().unwrap_or_default(),
                        iops: v.iops(),
                        throughput: v.throughput(),
                        tags,
                    })),
                    placed: placed(v),
                });
        }
    }
    for volume in volumes.iter_mut() {
        if let Some((snapshot, copy)) = snapshots.remove(&volume.id) {
            volume.snapshot = snapshot;
            volume.copy = copy;
        }
        // Two replacements of one volume: keep the one the original names, else the
        // one in use, else the lowest id; the others block the plan (artifact_problem).
        let mut found = replacements.remove(&volume.id).unwrap_or_default();
        let named = volume.replaced_by().map(str::to_string);
        found.sort_by_key(|a| {
            (
                Some(a.id.as_str()) != named.as_deref(),
                a.state != "in-use",
                a.id.clone(),
            )
        });
        let mut found = found.into_iter();
        volume.replacement = found.next();
        volume.stray_volumes = found.collect();
        volume.strays = strays.remove(&volume.id).unwrap_or_default();
        volume.strays.sort_by(|a, b| a.id.cmp(&b.id));
    }
    Ok(())
}

/// Since when a replacement has been in place: attached (its attachment's time), or
/// created (one that replaces an unattached volume), and how long that is now.
fn placed(volume: &aws_sdk_ec2::types::Volume) -> Option<Placed> {
    let time = volume
        .attachments()
        .iter()
        .find_map(|a| a.attach_time())
        .or(volume.create_time())?;
    let at = jiff::Timestamp::new(time.secs(), i32::try_from(time.subsec_nanos()).ok()?).ok()?;
    let age = jiff::Timestamp::now().duration_since(at);
    Some(Placed {
        at,
        age: std::time::Duration::try_from(age).unwrap_or_default(),
    })
}

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

#[cfg(test)]
mod tests {
    //! Planning on the model, and the waits with mocked responses (the emulators complete
    //! every snapshot and volume at once): a snapshot that is pending before it
    //! completes, one that stays pending past the timeout, one that fails.

    use aws_sdk_ec2::Client;
    use aws_sdk_ec2::operation::create_snapshot::CreateSnapshotOutput;
    use aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput;
    use aws_sdk_ec2::types::{Snapshot, SnapshotState};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    use super::*;
    use crate::plan::{ApiCall, ResourceRef};
    use crate::runbook::model::OnFailure;

    fn unattached() -> Volume {
        Volume {
            id: "vol-1".into(),
            availability_zone: "eu-west-1a".into(),
            size: 100,
            volume_type: "gp3".into(),
            iops: Some(4000),
            throughput: Some(250),
            encrypted: false,
            state: "available".into(),
            attached_to: Vec::new(),
            tags: BTreeMap::from([
                ("Name".to_string(), "data".to_string()),
                ("aws:cloudformation:stack-name".to_string(), "s".to_string()),
            ]),
            snapshot: None,
            copy: None,
            replacement: None,
            strays: Vec::new(),
            stray_volumes: Vec::new(),
        }
    }

    fn operations(plan: &ActionPlan) -> Vec<&str> {
        plan.changes
            .iter()
            .map(|c| c.call.operation.as_str())
            .collect()
    }

    #[test]
    fn an_unattached_volume_is_copied_encrypted_with_its_shape_and_tags_and_kept() {
        let planned = EncryptVolume
            .plan(
                &Resource::Volume(Box::new(unattached())),
                &json!({"kms_key_id": "alias/aws/ebs"}),
            )
            .expect("plans");
        assert_eq!(
            operations(&planned),
            [
                "CreateSnapshot",
                "CopySnapshot",
                "CreateVolume",
                "CreateTags",
                "DeleteSnapshot",
                "DeleteSnapshot"
            ]
        );
        assert_eq!(
            planned.changes[2].call.input,
            json!({"AvailabilityZone": "eu-west-1a", "SnapshotId": KNOWN_AFTER_APPLY,
                "VolumeType": "gp3", "Size": 100, "Encrypted": true, "Iops": 4000, "Throughput": 250,
                "KmsKeyId": "alias/aws/ebs",
                "TagSpecifications": [{"ResourceType": "volume", "Tags": [
                    {"Key": "Name", "Value": "data"},
                    {"Key": SOURCE_VOLUME_TAG, "Value": "vol-1"}]}]}),
            "same zone, type, size, IOPS, throughput and tags; AWS's own tags left out"
        );
        assert_eq!(
            planned.changes[2].after["replacement"]["shape"],
            json!({"volume_type": "gp3", "size": 100, "iops": 4000, "throughput": 250,
                   "tags": {"Name": "data", SOURCE_VOLUME_TAG: "vol-1"}}),
            "the read-back checks the new volume's shape and tags, not only that it exists"
        );
        for pair in planned.changes.windows(2) {
            assert_eq!(pair[0].after, pair[1].before);
        }
        assert!(
            !planned
                .changes
                .iter()
                .any(|c| c.call.operation == "DeleteVolume"),
            "the original is never deleted"
        );
        let Some(projected) = planned.projected else {
            panic!("projects")
        };
        assert_eq!(
            EncryptVolume.plan(&projected, &json!({})).expect("plans"),
            ActionPlan::default()
        );
        let kept = EncryptVolume
            .plan(
                &Resource::Volume(Box::new(unattached())),
                &json!({"keep_snapshots": true}),
            )
            .expect("plans");
        assert_eq!(
            operations(&kept),
            [
                "CreateSnapshot",
                "CopySnapshot",
                "CreateVolume",
                "CreateTags"
            ]
        );
    }

    #[test]
    fn a_replacement_left_half_way_is_planned_from_where_it_stopped() {
        let mut volume = unattached();
        volume.snapshot = Some(Artifact {
            id: "snap-1".into(),
            state: "completed".into(),
            encrypted: false,
            shape: None,
            placed: None,
        });
        volume.copy = Some(Artifact {
            id: "snap-2".into(),
            state: "completed".into(),
            encrypted: true,
            shape: None,
            placed: None,
        });
        let planned = EncryptVolume
            .plan(&Resource::Volume(Box::new(volume.clone())), &json!({}))
            .expect("plans");
        assert_eq!(
            operations(&planned),
            [
                "CreateVolume",
                "CreateTags",
                "DeleteSnapshot",
                "DeleteSnapshot"
            ]
        );
        assert_eq!(planned.changes[0].call.input["SnapshotId"], "snap-2");
        volume.copy = Some(Artifact {
            id: "snap-2".into(),
            state: "completed".into(),
            encrypted: false,
            shape: None,
            placed: None,
        });
        let refused = EncryptVolume
            .plan(&Resource::Volume(Box::new(volume)), &json!({}))
            .expect("plans");
        assert_eq!(
            refused.blocked.map(|b| b.0),
            Some(BlockReason::Failing),
            "never build on an unencrypted copy"
        );
    }

    #[test]
    fn attached_volumes_and_those_a_swap_detached_are_left_to_their_instance() {
        let mut volume = unattached();
        volume.attached_to = vec!["i-1".into()];
        volume.state = "in-use".into();
        let planned = EncryptVolume
            .plan(&Resource::Volume(Box::new(volume)), &json!({}))
            .expect("plans");
        assert_eq!(
            planned.blocked.map(|b| b.0),
            Some(BlockReason::NeedsDowntime)
        );
        assert!(planned.changes.is_empty());

        let mut detached = unattached();
        detached.replacement = Some(Artifact {
            id: "vol-2".into(),
            state: "available".into(),
            encrypted: true,
            shape: Some(Box::new(VolumeShape {
                volume_type: "gp3".into(),
                size: 100,
                iops: Some(4000),
                throughput: Some(250),
                tags: BTreeMap::from([(SWAP_INSTANCE_TAG.to_string(), "i-1".to_string())]),
            })),
            placed: None,
        });
        let planned = EncryptVolume
            .plan(&Resource::Volume(Box::new(detached)), &json!({}))
            .expect("plans");
        assert_eq!(
            planned.blocked.map(|b| b.0),
            Some(BlockReason::InUse),
            "an unfinished swap is its instance's to finish or undo, never retired from here"
        );
    }

    #[test]
    fn delete_originals_deletes_the_original_last_and_keeps_its_encrypted_copy() {
        let planned = EncryptVolume
            .plan(
                &Resource::Volume(Box::new(unattached())),
                &json!({"delete_originals": true}),
            )
            .expect("plans");
        assert_eq!(
            operations(&planned),
            [
                "CreateSnapshot",
                "CopySnapshot",
                "CreateVolume",
                "CreateTags",
                "DeleteSnapshot",
                "DeleteVolume"
            ]
        );
        assert_eq!(
            planned.changes[4].before["snapshot"]["encrypted"], false,
            "the unencrypted snapshot is deleted: a copy of unencrypted data is a finding of its own"
        );
        assert_eq!(
            planned.changes[4].after["copy"]["encrypted"], true,
            "the encrypted copy is the way back"
        );
        assert_eq!(planned.changes[5].after, json!({"exists": false}));
    }

    fn retired(copy: bool, snapshot: bool) -> Volume {
        let artifact = |id: &str, encrypted: bool| Artifact {
            id: id.into(),
            state: "completed".into(),
            encrypted,
            shape: None,
            placed: None,
        };
        let mut volume = unattached();
        volume.tags.insert(REPLACED_BY_TAG.into(), "vol-new".into());
        volume.copy = copy.then(|| artifact("snap-copy", true));
        volume.snapshot = snapshot.then(|| artifact("snap-raw", false));
        volume
    }

    #[test]
    fn a_second_replacement_volume_blocks_the_plan_naming_the_one_kept_and_the_other() {
        let volume_artifact = |id: &str| Artifact {
            id: id.into(),
            state: "available".into(),
            encrypted: true,
            shape: None,
            placed: None,
        };
        for mut volume in [unattached(), retired(true, true)] {
            volume.replacement = Some(volume_artifact("vol-new"));
            volume.stray_volumes = vec![volume_artifact("vol-twin")];
            let planned = EncryptVolume
                .plan(&Resource::Volume(Box::new(volume)), &json!({}))
                .expect("plans");
            let (reason, why) = planned.blocked.expect("blocked");
            assert_eq!(reason, BlockReason::Failing);
            assert!(planned.changes.is_empty(), "nothing is deleted or made");
            assert!(
                why.contains("(vol-twin, tagged harden:source-volume")
                    && why.contains("beside vol-new, the one harden keeps"),
                "{why}"
            );
        }
    }

    #[test]
    fn a_snapshot_made_twice_is_deleted_first_and_the_rest_builds_without_it() {
        let stray = |id: &str| Artifact {
            id: id.into(),
            state: "completed".into(),
            encrypted: false,
            shape: None,
            placed: None,
        };
        let mut volume = unattached();
        volume.snapshot = Some(stray("snap-a"));
        volume.strays = vec![stray("snap-b")];
        let planned = EncryptVolume
            .plan(&Resource::Volume(Box::new(volume)), &json!({}))
            .expect("plans");
        assert_eq!(
            planned.changes[0].call.input,
            json!({"SnapshotId": "snap-b"}),
            "the duplicate goes first"
        );
        assert_eq!(planned.changes[0].before["strays"], json!(["snap-b"]));
        assert!(planned.changes[0].after.get("strays").is_none());
        assert_eq!(
            operations(&planned)[1..],
            [
                "CopySnapshot",
                "CreateVolume",
                "CreateTags",
                "DeleteSnapshot",
                "DeleteSnapshot"
            ],
            "then the replacement from the snapshot it keeps"
        );
        for pair in planned.changes.windows(2) {
            assert_eq!(pair[0].after, pair[1].before, "one chain");
        }
        let mut done = retired(false, false);
        done.strays = vec![stray("snap-c")];
        assert_eq!(
            operations(
                &EncryptVolume
                    .plan(&Resource::Volume(Box::new(done)), &json!({}))
                    .expect("plans")
            ),
            ["DeleteSnapshot"],
            "a retired original's duplicates are leftovers too"
        );
    }

    #[test]
    fn retire_originals_after_deletes_an_original_only_once_its_replacement_is_old_enough() {
        let plan = |volume: Volume, args: Value| {
            EncryptVolume
                .plan(&Resource::Volume(Box::new(volume)), &args)
                .expect("plans")
        };
        let after = json!({"retire_originals_after": "30d"});
        let fresh = plan(unattached(), after.clone());
        assert_eq!(
            operations(&fresh),
            [
                "CreateSnapshot",
                "CopySnapshot",
                "CreateVolume",
                "CreateTags",
                "DeleteSnapshot"
            ],
            "the unencrypted snapshot goes, the encrypted copy stays as the way back, the original stays for now"
        );
        assert_eq!(fresh.changes[4].before["snapshot"]["encrypted"], false);

        let placed = |days: u64| {
            let mut volume = retired(true, false);
            volume.replacement = Some(Artifact {
                id: "vol-new".into(),
                state: "available".into(),
                encrypted: true,
                shape: None,
                placed: Some(Placed {
                    at: "2026-11-01T00:00:00Z".parse().expect("time"),
                    age: std::time::Duration::from_secs(days * 86_400),
                }),
            });
            volume
        };
        let (reason, detail) = plan(placed(29), after.clone())
            .blocked
            .expect("not yet due");
        assert_eq!(reason, BlockReason::NotYetDue);
        assert!(
            detail.contains("due for deletion at 2026-12-01T00:00:00Z"),
            "the plan says when: {detail}"
        );
        let due = plan(placed(31), after.clone());
        assert_eq!(operations(&due), ["DeleteVolume"]);
        assert!(
            due.changes[0]
                .summary
                .contains("snap-copy is kept as the way back")
        );
        let mut gone = placed(31);
        gone.copy = None;
        assert_eq!(
            plan(gone, after.clone()),
            ActionPlan::default(),
            "without its encrypted copy an original is the only way back: kept"
        );
        for bad in [
            json!({"retire_originals_after": "soon"}),
            json!({"retire_originals_after": "30d", "delete_originals": true}),
        ] {
            assert!(
                EncryptVolume
                    .plan(&Resource::Volume(Box::new(unattached())), &bad)
                    .is_err()
            );
        }
    }

    #[test]
    fn snapshots_a_run_left_after_retiring_the_original_are_planned_for_deletion() {
        let planned = |volume: Volume, args: Value| {
            EncryptVolume
                .plan(&Resource::Volume(Box::new(volume)), &args)
                .expect("plans")
        };
        let left = planned(retired(true, true), json!({}));
        assert_eq!(
            left.changes
                .iter()
                .map(|c| c.call.input["SnapshotId"].as_str().unwrap_or_default())
                .collect::<Vec<_>>(),
            ["snap-copy", "snap-raw"],
            "a run killed after tagging the original leaves both: the next plan shows them"
        );
        assert_eq!(
            planned(retired(false, false), json!({})),
            ActionPlan::default(),
            "a retired original with nothing left is done"
        );
        assert_eq!(
            planned(retired(true, true), json!({"keep_snapshots": true})),
            ActionPlan::default(),
            "kept on purpose"
        );
        assert_eq!(
            operations(&planned(
                retired(false, false),
                json!({"delete_originals": true})
            )),
            Vec::<&str>::new(),
            "an original whose encrypted copy is gone is never deleted: it is the only way back"
        );
        assert_eq!(
            operations(&planned(
                retired(true, false),
                json!({"delete_originals": true})
            )),
            ["DeleteVolume"],
            "with its encrypted copy kept, a later delete_originals run deletes it"
        );
    }

    fn snapshot_change(timeout: u64) -> Change {
        Change {
            id: "t/eu-west-1/replace/vol-1#1".into(),
            runbook: "t".into(),
            account_id: "123456789012".into(),
            region: "eu-west-1".into(),
            step: "replace".into(),
            action: "ec2:encrypt-volume".into(),
            resource: ResourceRef {
                kind: ResourceKind::Volume,
                id: "vol-1".into(),
                tags: Default::default(),
            },
            kind: ChangeKind::Create,
            summary: "snapshot".into(),
            before: Value::Null,
            after: Value::Null,
            call: ApiCall {
                service: "ec2".into(),
                operation: "CreateSnapshot".into(),
                input: json!({"VolumeId": "vol-1", "TagSpecifications": []}),
            },
            on_failure: OnFailure::Stop,
            wait_timeout_seconds: Some(timeout),
            probe: None,
        }
    }

    fn described(state: SnapshotState) -> DescribeSnapshotsOutput {
        DescribeSnapshotsOutput::builder()
            .snapshots(
                Snapshot::builder()
                    .snapshot_id("snap-1")
                    .state(state)
                    .build(),
            )
            .build()
    }

    async fn snapshot_with(states: Vec<SnapshotState>, timeout: u64) -> (Result<Applied>, usize) {
        let create = mock!(Client::create_snapshot).then_output(|| {
            CreateSnapshotOutput::builder()
                .snapshot_id("snap-1")
                .build()
        });
        let mut sequence = mock!(Client::describe_snapshots).sequence();
        for state in states {
            sequence = sequence.output(move || described(state.clone()));
        }
        let describe = sequence.repeatedly().build();
        let clock = crate::actions::test_support::tokio_time();
        let client = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&create, &describe],
            move |c| c.time_source(clock.clone())
        );
        let aws = crate::aws::Aws::with_ec2_client(client);
        let clients = aws.region("eu-west-1");
        let result = VolumeCalls
            .apply(&clients, &snapshot_change(timeout), &Value::Null)
            .await;
        (result, describe.num_calls())
    }

    #[tokio::test(start_paused = true)]
    async fn a_pending_snapshot_is_waited_for_until_it_completes() {
        let (result, polls) = snapshot_with(
            vec![
                SnapshotState::Pending,
                SnapshotState::Pending,
                SnapshotState::Completed,
            ],
            600,
        )
        .await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(polls, 3, "polled until completed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_snapshot_pending_past_the_timeout_fails_the_change() {
        let (result, polls) = snapshot_with(vec![SnapshotState::Pending], 120).await;
        let Err(Error::Aws(f)) = result else {
            panic!("must fail, got {result:?}")
        };
        assert_eq!(f.code, "WaitTimeout");
        assert!(
            f.message.contains("snap-1") && f.message.contains("120 s"),
            "{}",
            f.message
        );
        assert!(polls >= 2, "polled with backoff before giving up: {polls}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_snapshot_in_error_fails_the_change_without_waiting_out_the_timeout() {
        let (result, _) =
            snapshot_with(vec![SnapshotState::Pending, SnapshotState::Error], 3600).await;
        let Err(Error::Aws(f)) = result else {
            panic!("must fail, got {result:?}")
        };
        assert_eq!(f.code, "WaitFailed");
    }
}
