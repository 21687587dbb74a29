use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::calls::VolumeCalls;
use super::kind::{Artifact, REPLACED_BY_TAG, RUN_ID_TAG, SOURCE_VOLUME_TAG, Volume, VolumeShape};
use super::retire::{Retired, Retirement, RetirementArgs, retirement_steps};
use crate::actions::{
    Action, ActionInfo, ActionPlan, ArgSpec, Calls, DraftChain, Inverse, RecordedChange, Resource,
    ResourceKind, arg, arguments_of, typed_args,
};
use crate::inventory::{ROLLED_BACK_TAG, SWAP_INSTANCE_TAG};
use crate::plan::{BlockReason, ChangeKind};
use crate::template::{KNOWN_AFTER_APPLY, RUN_ID};

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
pub(in crate::actions) fn state(volume: Option<&Volume>) -> Value {
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
pub(in crate::actions) fn undone(volume: &Volume) -> Option<ActionPlan> {
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
pub(in crate::actions) fn second_replacement(volume: &Volume) -> Option<String> {
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
pub(in crate::actions) fn stray_steps(volume: &mut Volume) -> Vec<VolumeStep> {
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
pub(in crate::actions) struct VolumeStep {
    pub kind: ChangeKind,
    pub summary: String,
    pub after: Option<Volume>,
    pub operation: &'static str,
    pub input: Value,
}

/// Why what an earlier run made for `volume` must not be built on, if it must not: an
/// artifact in state error, or a copy or replacement that is not encrypted.
pub(in crate::actions) fn artifact_problem(volume: &Volume) -> Option<String> {
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
pub(in crate::actions) fn replacement_steps(
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
        Some(super::rollback::inverse_chain(run_id, resource_id, made))
    }
}
