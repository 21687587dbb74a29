//! Replacing the unencrypted EBS volumes attached to an instance (FSBP EC2.3) by
//! encrypted copies, with the instance stopped once for all of them.
//!
//! One chain of changes per instance: stop it (only with `allow_stop`, and only when it
//! is running), make each volume's snapshot, encrypted copy and replacement (the same
//! steps as [`super::ebs_volumes`]), then for each device detach the original and
//! attach the replacement at the same device, restore DeleteOnTermination, start the
//! instance if it was running, and only then tag the originals `harden:replaced-by` and
//! delete the intermediate snapshots. Every change is read back: the device must map to
//! an encrypted volume that replaces the original.
//!
//! The snapshots are taken after the stop, not before: a snapshot of a running instance
//! misses what it writes between the snapshot and the stop, and attaching a copy of it
//! would lose those writes. The price is downtime for the snapshot and the copy, which
//! the plan states per instance.
//!
//! A swap that stops part-way (a failure, `--concurrency` siblings failing, Ctrl-C)
//! is undone by [`Calls::compensate`]: the originals go back to their devices with
//! their DeleteOnTermination, the instance is started again if it was running, and the
//! replacements are kept, tagged `harden:rolled-back`, for a person to inspect (a later
//! plan refuses to build on them).
//!
//! Progress lives in AWS: replacements carry the instance, device and original
//! DeleteOnTermination as tags, so reading an instance finds an original a swap
//! detached and the device it belongs at. A stopped instance is resumed from what an
//! earlier run made; a running one with such leftovers is refused (they may miss what
//! it wrote since). What cannot be read back is whether a stopped instance was running
//! before a harden process died mid-swap: it is then left stopped.

mod rollback;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::operation::RequestId;
use aws_sdk_ec2::types::{
    EbsInstanceBlockDeviceSpecification, InstanceBlockDeviceMappingSpecification, Tag,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ebs_volumes::{
    self, Retired, Retirement, VolumeStep, artifact_problem, replacement_steps, retirement_steps,
    wait_failure, wait_limit,
};
use super::{
    Action, ActionInfo, ActionPlan, Applied, ArgSpec, Calls, Compensation, DraftChain, Inverse,
    RecordedChange, arg_bool, ec2_tags, typed_call,
};
use crate::actions::{Resource, ResourceKind};
use crate::aws::{RegionClients, failure};
use crate::error::{AwsFailure, Error, Result};
use crate::event::KnownEvent;
use crate::inventory::{
    Device, Filters, Instance, Kind, Narrowing, REPLACED_BY_TAG, ROLLED_BACK_TAG,
    SOURCE_VOLUME_TAG, SWAP_DELETE_ON_TERMINATION_TAG, SWAP_DEVICE_TAG, SWAP_INSTANCE_TAG, Volume,
    WAS_RUNNING_TAG,
};
use crate::plan::{ApiCall, BlockReason, Change, ChangeKind, Probe};
use crate::runbook::model::ParamType;
use crate::template::{KNOWN_AFTER_APPLY, RUN_ID};

/// How long each wait of a compensation may take: detaching, attaching, stopping and
/// starting take seconds to minutes.
const UNDO_WAIT: Duration = Duration::from_secs(900);

/// Replaces the unencrypted volumes attached to an instance by encrypted copies.
pub struct EncryptInstanceVolumes;

static ENCRYPT_INSTANCE: ActionInfo = ActionInfo {
    name: "ec2:encrypt-instance-volumes",
    description: "replace the unencrypted volumes attached to an instance by encrypted copies: stop it once (allow_stop, when running), snapshot, encrypted copy and new volume per device, detach the original and attach the copy at the same device, restore DeleteOnTermination, start it again, verify; originals tagged harden:replaced-by and kept unless delete_originals; undone (originals re-attached, instance state restored) if it stops part-way",
    resource_kind: ResourceKind::Instance,
    args: &[
        ArgSpec {
            name: "allow_stop",
            kind: ParamType::Bool,
            required: false,
            description: "stop a running instance for the replacement (default false: a running instance is blocked as needing downtime)",
        },
        ArgSpec {
            name: "kms_key_id",
            kind: ParamType::String,
            required: false,
            description: "KMS key for the copies and new volumes; empty for the account's default EBS key",
        },
        ArgSpec {
            name: "keep_snapshots",
            kind: ParamType::Bool,
            required: false,
            description: "keep the snapshots and their encrypted copies (default false)",
        },
        ArgSpec {
            name: "delete_originals",
            kind: ParamType::Bool,
            required: false,
            description: "delete the originals once the instance runs on the copies, keeping the encrypted copies of their snapshots as the way back (default false)",
        },
        ArgSpec {
            name: "retire_originals_after",
            kind: ParamType::String,
            required: false,
            description: "delete each original by a later plan once its replacement has been in place this long (30d, 72h), keeping the encrypted copy of its snapshot as the way back; the plan shows when each is due",
        },
    ],
    outputs: &[],
    waits: true,
};

/// An instance as changes record it: its state, its EBS devices, and the unencrypted
/// volumes being replaced with their artifacts.
fn state(instance: &Instance) -> Value {
    let devices: serde_json::Map<String, Value> = instance
        .devices
        .iter()
        .map(|(name, device)| (name.clone(), json!(device)))
        .collect();
    let volumes: serde_json::Map<String, Value> = instance
        .unencrypted
        .iter()
        .map(|(id, volume)| (id.clone(), ebs_volumes::state(volume.as_ref())))
        .collect();
    json!({"state": instance.state, "was_running": instance.stopped_by_harden(),
           "devices": devices, "volumes": volumes})
}

/// What the plan says about an instance's downtime.
fn downtime(pending: &[(String, Volume)]) -> String {
    let total: i64 = pending.iter().map(|(_, v)| i64::from(v.size)).sum();
    let list: Vec<String> = pending
        .iter()
        .map(|(device, v)| format!("{device} {} {} GiB", v.id, v.size))
        .collect();
    format!(
        "{} volume(s), {total} GiB ({})",
        pending.len(),
        list.join(", ")
    )
}

/// Adds a volume step to the instance's chain, projecting the volume into it.
fn push_volume_step(
    chain: &mut DraftChain,
    current: &mut Instance,
    volume_id: &str,
    step: VolumeStep,
) {
    current
        .unencrypted
        .insert(volume_id.to_string(), step.after);
    chain.push(
        step.kind,
        step.summary,
        state(current),
        step.operation,
        step.input,
    );
}

impl Action for EncryptInstanceVolumes {
    fn info(&self) -> &'static ActionInfo {
        &ENCRYPT_INSTANCE
    }

    fn plan(&self, target: &Resource, args: &Value) -> std::result::Result<ActionPlan, String> {
        let Resource::Instance(instance) = target else {
            return Err(format!("expected an EC2 instance, given {}", target.kind()));
        };
        let allow_stop = arg_bool(args, "allow_stop", false)?;
        let kms = super::arg_string(args, "kms_key_id")?;
        let retirement = Retirement::from_args(args)?;
        let id = instance.id.clone();

        // Originals not yet retired, in id order (the order their retirement runs in),
        // each with the device it belongs at.
        let mut pending: Vec<(String, Volume)> = Vec::new();
        for volume in instance.unencrypted.values().flatten() {
            let attached = instance.devices.values().any(|d| d.volume_id == volume.id);
            if let Some(problem) = ebs_volumes::second_replacement(volume) {
                return Ok(ActionPlan::blocked(BlockReason::Failing, problem));
            }
            if let Some(replacement) = volume.replaced_by() {
                if attached {
                    // Swapped back by a rollback that did not finish, or by a person:
                    // which of the two holds the newer data is not for harden to guess.
                    return Ok(ActionPlan::blocked(
                        BlockReason::Failing,
                        format!(
                            "{} is attached to {id} again though tagged {REPLACED_BY_TAG}={replacement}: decide which of the two holds the data to keep, then remove the tag (to swap again) or put {replacement} back",
                            volume.id
                        ),
                    ));
                }
                continue;
            }
            if let Some(undone) = ebs_volumes::undone(volume) {
                return Ok(undone);
            }
            if let Some(problem) = artifact_problem(volume) {
                return Ok(ActionPlan::blocked(
                    BlockReason::Failing,
                    format!("{}: {problem}", volume.id),
                ));
            }
            if volume.attached_to.len() > 1 {
                return Ok(ActionPlan::blocked(
                    BlockReason::InUse,
                    format!(
                        "{} is attached to {} (Multi-Attach): swapping it under one instance would cut the others off",
                        volume.id,
                        volume.attached_to.join(", ")
                    ),
                ));
            }
            let Some(device) = instance.device_of(volume) else {
                return Ok(ActionPlan::blocked(
                    BlockReason::Failing,
                    format!(
                        "{} is not attached and no replacement names its device",
                        volume.id
                    ),
                ));
            };
            if let Some(other) = instance.devices.get(&device).filter(|d| {
                d.volume_id != volume.id && d.replaces.as_deref() != Some(volume.id.as_str())
            }) {
                return Ok(ActionPlan::blocked(
                    BlockReason::Failing,
                    format!(
                        "{device} of {id} holds {}, neither {} nor its replacement",
                        other.volume_id, volume.id
                    ),
                ));
            }
            let mut volume = volume.clone();
            // Its strays are deleted first (below); the swap builds on it without them.
            volume.strays.clear();
            pending.push((device, volume));
        }
        // An earlier run stopped it and died before starting it again: it is owed a start
        // whether or not its swap is pending (and a tag to remove once it runs).
        let marked = instance.stopped_by_harden();
        // Snapshots made twice for any of its volumes: deleted first.
        let mut strays: Vec<(String, VolumeStep)> = Vec::new();
        for volume in instance.unencrypted.values().flatten() {
            let mut without = volume.clone();
            for step in ebs_volumes::stray_steps(&mut without) {
                strays.push((volume.id.clone(), step));
            }
        }
        let retired: Vec<(Volume, Retired)> = instance
            .unencrypted
            .values()
            .flatten()
            .filter(|v| v.replaced_by().is_some())
            .map(|v| {
                let mut v = v.clone();
                v.strays.clear();
                let retired = retirement_steps(&v, retirement);
                (v, retired)
            })
            .collect();
        let leftovers = retired.iter().any(|(_, r)| !r.steps.is_empty());
        if pending.is_empty() && !marked && !leftovers && strays.is_empty() {
            let due: Vec<&str> = retired
                .iter()
                .filter_map(|(_, r)| r.due.as_deref())
                .collect();
            return Ok(if due.is_empty() {
                ActionPlan::default()
            } else {
                ActionPlan::blocked(BlockReason::NotYetDue, due.join("; "))
            });
        }
        if marked && !matches!(instance.state.as_str(), "running" | "stopped") {
            return Ok(ActionPlan::blocked(
                BlockReason::Transitional,
                format!(
                    "{}: an earlier harden run stopped it for a swap and has yet to start it again; plan again when it is running or stopped",
                    instance.state
                ),
            ));
        }
        let swapped = |device: &str, volume: &Volume| {
            instance
                .devices
                .get(device)
                .is_some_and(|d| d.replaces.as_deref() == Some(volume.id.as_str()))
        };
        let needs_instance = pending.iter().any(|(d, v)| !swapped(d, v));
        if needs_instance {
            match instance.state.as_str() {
                "stopped" => {}
                "running" if !allow_stop => {
                    return Ok(ActionPlan::blocked(
                        BlockReason::NeedsDowntime,
                        format!(
                            "running: replacing {} needs it stopped from before the snapshots until the swap is verified; give allow_stop: true",
                            downtime(&pending)
                        ),
                    ));
                }
                "running" => {
                    if let Some((_, stale)) = pending.iter().find(|(d, v)| {
                        !swapped(d, v) && (v.snapshot.is_some() || v.replacement.is_some())
                    }) {
                        return Ok(ActionPlan::blocked(
                            BlockReason::Failing,
                            format!(
                                "a snapshot or replacement of {} from an earlier run exists, but {id} is running again and may have written since: delete them (tagged {SOURCE_VOLUME_TAG}={}), then plan again",
                                stale.id, stale.id
                            ),
                        ));
                    }
                }
                other => {
                    return Ok(ActionPlan::blocked(
                        BlockReason::Transitional,
                        format!("{other}: plan again when it is running or stopped"),
                    ));
                }
            }
        }

        let mut current = instance.clone();
        let mut chain = DraftChain::new("ec2", state(&current));
        for (volume, step) in strays {
            push_volume_step(&mut chain, &mut current, &volume, step);
        }
        let stops = needs_instance && instance.state == "running";
        let starts = stops || (marked && instance.state == "stopped");
        if stops && !marked {
            current.tags.insert(WAS_RUNNING_TAG.into(), RUN_ID.into());
            chain.push(
                ChangeKind::Update,
                format!(
                    "tag {id} {WAS_RUNNING_TAG}=<run id> before stopping it, so that a plan after an interruption knows to start it again"
                ),
                state(&current),
                "CreateTags",
                json!({"Resources": [id], "Tags": [{"Key": WAS_RUNNING_TAG, "Value": RUN_ID}]}),
            );
        }
        if stops {
            current.state = "stopped".into();
            chain.push(
                ChangeKind::Update,
                format!(
                    "stop {id} (waits until stopped); downtime until it is started below: snapshot, encrypted copy and new volume of {}, then the swap",
                    downtime(&pending)
                ),
                state(&current),
                "StopInstances",
                json!({"InstanceIds": [id]}),
            );
        }
        for (device, volume) in &pending {
            let markers = [
                (SWAP_INSTANCE_TAG, id.clone()),
                (SWAP_DEVICE_TAG, device.clone()),
                (
                    SWAP_DELETE_ON_TERMINATION_TAG,
                    instance.original_delete_on_termination(volume).to_string(),
                ),
            ];
            for step in replacement_steps(volume, kms.as_deref(), &markers) {
                push_volume_step(&mut chain, &mut current, &volume.id, step);
            }
        }
        let mut by_device = pending.clone();
        by_device.sort_by(|a, b| a.0.cmp(&b.0));
        for (device, original) in &by_device {
            if current
                .devices
                .get(device)
                .is_some_and(|d| d.volume_id == original.id)
            {
                current.devices.remove(device);
                if let Some(Some(volume)) = current.unencrypted.get_mut(&original.id) {
                    volume.state = "available".into();
                    volume.attached_to.clear();
                }
                chain.push(
                    ChangeKind::Update,
                    format!(
                        "detach {} from {id} at {device} (waits until available)",
                        original.id
                    ),
                    state(&current),
                    "DetachVolume",
                    json!({"VolumeId": original.id, "InstanceId": id, "Device": device}),
                );
            }
            if !current.devices.contains_key(device) {
                let mut replacement_id = KNOWN_AFTER_APPLY.to_string();
                if let Some(Some(volume)) = current.unencrypted.get_mut(&original.id)
                    && let Some(replacement) = volume.replacement.as_mut()
                {
                    replacement.state = "in-use".into();
                    replacement_id = replacement.id.clone();
                }
                current.devices.insert(
                    device.clone(),
                    Device {
                        volume_id: replacement_id.clone(),
                        delete_on_termination: false,
                        encrypted: true,
                        replaces: Some(original.id.clone()),
                    },
                );
                chain.push(
                    ChangeKind::Update,
                    format!(
                        "attach the encrypted replacement of {} to {id} at {device} (waits until in use)",
                        original.id
                    ),
                    state(&current),
                    "AttachVolume",
                    json!({"VolumeId": replacement_id, "InstanceId": id, "Device": device}),
                );
            }
        }
        let restore: Vec<&String> = by_device
            .iter()
            .filter(|(device, original)| {
                instance.original_delete_on_termination(original)
                    && current
                        .devices
                        .get(device)
                        .is_some_and(|d| !d.delete_on_termination)
            })
            .map(|(device, _)| device)
            .collect();
        if !restore.is_empty() {
            let mappings: Vec<Value> = restore
                .iter()
                .map(|device| json!({"DeviceName": device, "Ebs": {"DeleteOnTermination": true}}))
                .collect();
            for device in &restore {
                if let Some(d) = current.devices.get_mut(*device) {
                    d.delete_on_termination = true;
                }
            }
            chain.push(
                ChangeKind::Update,
                format!(
                    "set DeleteOnTermination back on for {} of {id}, as the originals had it",
                    restore
                        .iter()
                        .map(|d| d.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                state(&current),
                "ModifyInstanceAttribute",
                json!({"InstanceId": id, "BlockDeviceMappings": mappings}),
            );
        }
        if starts {
            current.state = "running".into();
            let why = if stops {
                String::new()
            } else {
                format!(": an earlier harden run stopped it ({WAS_RUNNING_TAG}) and did not finish")
            };
            chain.push(
                ChangeKind::Update,
                format!("start {id} again{why} (waits until running)"),
                state(&current),
                "StartInstances",
                json!({"InstanceIds": [id]}),
            );
        }
        if stops || marked {
            current.tags.remove(WAS_RUNNING_TAG);
            chain.push(
                ChangeKind::Update,
                format!("remove the {WAS_RUNNING_TAG} tag of {id}: it runs again"),
                state(&current),
                "DeleteTags",
                json!({"Resources": [id], "Tags": [{"Key": WAS_RUNNING_TAG}]}),
            );
        }
        for (_, original) in &pending {
            let Some(Some(replaced)) = current.unencrypted.get(&original.id).cloned() else {
                continue;
            };
            for step in retirement_steps(&replaced, retirement).steps {
                push_volume_step(&mut chain, &mut current, &original.id, step);
            }
        }
        // Originals an earlier run retired, with what it left (the snapshots of a run
        // that died after tagging them) and those now due for deletion.
        for (volume, retired) in retired {
            for step in retired.steps {
                push_volume_step(&mut chain, &mut current, &volume.id, step);
            }
        }
        Ok(chain.into_plan(Resource::Instance(current)))
    }

    fn calls(&self) -> &'static dyn Calls {
        &InstanceCalls
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

/// The calls on the instance itself in a swap, as a plan stores them (EC2's field
/// names); the swap's other calls are its volumes' ([`ebs_volumes::VolumeCall`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
enum InstanceCall {
    StopInstances(InstanceIdsInput),
    StartInstances(InstanceIdsInput),
    DetachVolume(AttachmentInput),
    AttachVolume(AttachmentInput),
    ModifyInstanceAttribute(DeleteOnTerminationInput),
}

/// The operations of [`InstanceCall`].
const INSTANCE_OPERATIONS: &[&str] = &[
    "StopInstances",
    "StartInstances",
    "DetachVolume",
    "AttachVolume",
    "ModifyInstanceAttribute",
];

/// A call of an instance's swap: on the instance, or on one of its volumes.
enum SwapCall {
    Instance(InstanceCall),
    Volume(ebs_volumes::VolumeCall),
}

fn swap_call(change: &Change) -> Result<SwapCall> {
    if INSTANCE_OPERATIONS.contains(&change.call.operation.as_str()) {
        typed_call(change).map(SwapCall::Instance)
    } else {
        typed_call(change).map(SwapCall::Volume)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct InstanceIdsInput {
    instance_ids: Vec<String>,
}

/// A volume at a device of an instance; the `VolumeId` of an attach is `(known after
/// apply)` until the replacement is made, then taken from the state just read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct AttachmentInput {
    #[serde(default)]
    volume_id: Option<String>,
    instance_id: String,
    device: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct DeleteOnTerminationInput {
    instance_id: String,
    block_device_mappings: Vec<MappingInput>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct MappingInput {
    device_name: String,
    ebs: EbsFlagInput,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct EbsFlagInput {
    delete_on_termination: bool,
}

/// The one instance a start or stop names.
fn instance_of<'a>(change: &Change, input: &'a InstanceIdsInput) -> Result<&'a str> {
    match input.instance_ids.as_slice() {
        [id] => Ok(id),
        _ => Err(Error::plan_input(
            &change.id,
            format!("{} must name exactly one instance", change.call.operation),
        )),
    }
}

/// Reads, applies (with waits), probes and undoes instance swaps.
pub struct InstanceCalls;

/// The volume a per-volume change of an instance's chain is about: named in its input
/// (`VolumeId`, `Resources`, the source tag of what it creates) or, for a
/// `DeleteSnapshot` whose id the plan could not know, the first retired volume (id
/// order, the order retirement runs in) that still has a copy or a snapshot.
fn volume_of(change: &Change, call: &ebs_volumes::VolumeCall, current: &Value) -> Result<String> {
    if let Some(id) = call.named_volume() {
        return Ok(id.to_string());
    }
    let volumes = current["volumes"].as_object();
    let snapshot = match call {
        ebs_volumes::VolumeCall::DeleteSnapshot(input) => Some(input.snapshot_id.as_str()),
        _ => None,
    }
    .filter(|s| *s != KNOWN_AFTER_APPLY);
    volumes
        .into_iter()
        .flatten()
        .find(|(id, v)| match snapshot {
            Some(s) => {
                v["copy"]["id"] == s
                    || v["snapshot"]["id"] == s
                    || v["strays"]
                        .as_array()
                        .is_some_and(|ids| ids.iter().any(|i| i == s))
            }
            // The volume whose snapshot or copy the change leaves gone.
            None => ["copy", "snapshot"]
                .iter()
                .any(|f| !v[f].is_null() && change.after["volumes"][id.as_str()][f].is_null()),
        })
        .map(|(id, _)| id.clone())
        .ok_or_else(|| Error::StalePlan {
            resource: change.resource.id.clone(),
            detail: "cannot tell which volume's snapshot to delete from the state read".into(),
        })
}

/// The replacement made for the volume that belongs at `device`, from the state read.
fn replacement_for(current: &Value, device: &str) -> Option<String> {
    current["volumes"]
        .as_object()?
        .values()
        .find(|v| v["replacement"]["shape"]["tags"][SWAP_DEVICE_TAG] == device)?["replacement"]
        ["id"]
        .as_str()
        .filter(|id| *id != KNOWN_AFTER_APPLY)
        .map(str::to_string)
}

async fn stop(
    clients: &RegionClients,
    id: &str,
    limit: Duration,
    dry_run: bool,
) -> Result<Applied> {
    let operation = "StopInstances";
    let out = clients
        .ec2
        .stop_instances()
        .instance_ids(id)
        .dry_run(dry_run)
        .send()
        .await
        .map_err(|e| Error::Aws(failure(operation, &e)))?;
    clients
        .ec2
        .wait_until_instance_stopped()
        .instance_ids(id)
        .wait(limit)
        .await
        .map_err(|e| wait_failure(operation, &format!("instance {id} stopping"), limit, e))?;
    Ok(Applied::request(out.request_id()))
}

async fn start(
    clients: &RegionClients,
    id: &str,
    limit: Duration,
    dry_run: bool,
) -> Result<Applied> {
    let operation = "StartInstances";
    let out = clients
        .ec2
        .start_instances()
        .instance_ids(id)
        .dry_run(dry_run)
        .send()
        .await
        .map_err(|e| Error::Aws(failure(operation, &e)))?;
    clients
        .ec2
        .wait_until_instance_running()
        .instance_ids(id)
        .wait(limit)
        .await
        .map_err(|e| wait_failure(operation, &format!("instance {id} starting"), limit, e))?;
    Ok(Applied::request(out.request_id()))
}

/// Detaches `volume` from `instance` at `device` (all three sent: more precise, and
/// both emulators fail without them) and waits until the volume is available.
async fn detach(
    clients: &RegionClients,
    volume: &str,
    instance: &str,
    device: &str,
    limit: Duration,
    dry_run: bool,
) -> Result<Applied> {
    let operation = "DetachVolume";
    let out = clients
        .ec2
        .detach_volume()
        .volume_id(volume)
        .instance_id(instance)
        .device(device)
        .dry_run(dry_run)
        .send()
        .await
        .map_err(|e| Error::Aws(failure(operation, &e)))?;
    clients
        .ec2
        .wait_until_volume_available()
        .volume_ids(volume)
        .wait(limit)
        .await
        .map_err(|e| {
            wait_failure(
                operation,
                &format!("volume {volume} detaching from {instance}"),
                limit,
                e,
            )
        })?;
    Ok(Applied::request(out.request_id()))
}

/// Attaches `volume` to `instance` at `device` and waits until it is in use.
async fn attach(
    clients: &RegionClients,
    volume: &str,
    instance: &str,
    device: &str,
    limit: Duration,
    dry_run: bool,
) -> Result<Applied> {
    let operation = "AttachVolume";
    let out = clients
        .ec2
        .attach_volume()
        .volume_id(volume)
        .instance_id(instance)
        .device(device)
        .dry_run(dry_run)
        .send()
        .await
        .map_err(|e| Error::Aws(failure(operation, &e)))?;
    clients
        .ec2
        .wait_until_volume_in_use()
        .volume_ids(volume)
        .wait(limit)
        .await
        .map_err(|e| {
            wait_failure(
                operation,
                &format!("volume {volume} attaching to {instance} at {device}"),
                limit,
                e,
            )
        })?;
    Ok(Applied::request(out.request_id()))
}

/// Sets DeleteOnTermination of the given devices.
async fn set_delete_on_termination(
    clients: &RegionClients,
    instance: &str,
    devices: &[(String, bool)],
    dry_run: bool,
) -> Result<Applied> {
    let operation = "ModifyInstanceAttribute";
    let out = clients
        .ec2
        .modify_instance_attribute()
        .instance_id(instance)
        .set_block_device_mappings(Some(
            devices
                .iter()
                .map(|(device, delete)| {
                    InstanceBlockDeviceMappingSpecification::builder()
                        .device_name(device)
                        .ebs(
                            EbsInstanceBlockDeviceSpecification::builder()
                                .delete_on_termination(*delete)
                                .build(),
                        )
                        .build()
                })
                .collect(),
        ))
        .dry_run(dry_run)
        .send()
        .await
        .map_err(|e| Error::Aws(failure(operation, &e)))?;
    Ok(Applied::request(out.request_id()))
}

/// Puts [`WAS_RUNNING_TAG`] on the instance with `run` as its value, or removes it
/// (`None`).
async fn mark_running(
    clients: &RegionClients,
    id: &str,
    run: Option<&str>,
    dry_run: bool,
) -> Result<Applied> {
    match run {
        Some(run) => {
            let operation = "CreateTags";
            let out = clients
                .ec2
                .create_tags()
                .resources(id)
                .tags(Tag::builder().key(WAS_RUNNING_TAG).value(run).build())
                .dry_run(dry_run)
                .send()
                .await
                .map_err(|e| Error::Aws(failure(operation, &e)))?;
            Ok(Applied::request(out.request_id()))
        }
        None => {
            let operation = "DeleteTags";
            let out = clients
                .ec2
                .delete_tags()
                .resources(id)
                .tags(Tag::builder().key(WAS_RUNNING_TAG).build())
                .dry_run(dry_run)
                .send()
                .await
                .map_err(|e| Error::Aws(failure(operation, &e)))?;
            Ok(Applied::request(out.request_id()))
        }
    }
}

async fn call(
    clients: &RegionClients,
    change: &Change,
    current: &Value,
    dry_run: bool,
) -> Result<Applied> {
    let limit = wait_limit(change);
    let call = match swap_call(change)? {
        SwapCall::Instance(call) => call,
        SwapCall::Volume(ebs_volumes::VolumeCall::CreateTags(input))
            if input.resources.first() == Some(&change.resource.id) =>
        {
            let value = input
                .tags
                .first()
                .and_then(|t| t.value.as_deref())
                .ok_or_else(|| {
                    Error::plan_input(&change.id, "CreateTags on the instance sets no Value")
                })?;
            return mark_running(clients, &change.resource.id, Some(value), dry_run).await;
        }
        SwapCall::Volume(ebs_volumes::VolumeCall::DeleteTags(input))
            if input.resources.first() == Some(&change.resource.id) =>
        {
            return mark_running(clients, &change.resource.id, None, dry_run).await;
        }
        SwapCall::Volume(volume_call) => {
            // A volume's own step: the volume calls resolve their unknown ids from
            // that volume's part of the instance's state.
            let volume = volume_of(change, &volume_call, current)?;
            return ebs_volumes::call(
                clients,
                change,
                &current["volumes"][&volume],
                &change.after["volumes"][&volume],
                dry_run,
            )
            .await;
        }
    };
    match call {
        InstanceCall::StopInstances(input) => {
            stop(clients, instance_of(change, &input)?, limit, dry_run).await
        }
        InstanceCall::StartInstances(input) => {
            start(clients, instance_of(change, &input)?, limit, dry_run).await
        }
        InstanceCall::DetachVolume(input) => {
            let volume = input
                .volume_id
                .ok_or_else(|| Error::plan_input(&change.id, "DetachVolume names no VolumeId"))?;
            detach(
                clients,
                &volume,
                &input.instance_id,
                &input.device,
                limit,
                dry_run,
            )
            .await
        }
        InstanceCall::AttachVolume(input) => {
            let device = input.device.as_str();
            let volume = match input.volume_id {
                Some(id) if id != KNOWN_AFTER_APPLY => id,
                _ => replacement_for(current, device).ok_or_else(|| Error::StalePlan {
                    resource: change.resource.id.clone(),
                    detail: format!("the state read has no replacement made for {device}"),
                })?,
            };
            attach(clients, &volume, &input.instance_id, device, limit, dry_run).await
        }
        InstanceCall::ModifyInstanceAttribute(input) => {
            let devices: Vec<(String, bool)> = input
                .block_device_mappings
                .into_iter()
                .map(|m| (m.device_name, m.ebs.delete_on_termination))
                .collect();
            set_delete_on_termination(clients, &input.instance_id, &devices, dry_run).await
        }
    }
}

/// One step of undoing a swap.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Undo {
    Stop,
    Detach {
        volume: String,
        device: String,
    },
    Attach {
        volume: String,
        device: String,
    },
    DeleteOnTermination(Vec<(String, bool)>),
    Start,
    /// Remove [`WAS_RUNNING_TAG`]: the instance runs again.
    Unmark,
}

impl Undo {
    /// Its call on instance `id`: the operation and its input, with AWS's field names.
    fn call(&self, id: &str) -> (&'static str, Value) {
        match self {
            Undo::Stop => ("StopInstances", json!({"InstanceIds": [id]})),
            Undo::Start => ("StartInstances", json!({"InstanceIds": [id]})),
            Undo::Unmark => (
                "DeleteTags",
                json!({"Resources": [id], "Tags": [{"Key": WAS_RUNNING_TAG}]}),
            ),
            Undo::Detach { volume, device } => (
                "DetachVolume",
                json!({"VolumeId": volume, "InstanceId": id, "Device": device}),
            ),
            Undo::Attach { volume, device } => (
                "AttachVolume",
                json!({"VolumeId": volume, "InstanceId": id, "Device": device}),
            ),
            Undo::DeleteOnTermination(flags) => (
                "ModifyInstanceAttribute",
                json!({"InstanceId": id, "BlockDeviceMappings": flags.iter().map(|(d, v)|
                    json!({"DeviceName": d, "Ebs": {"DeleteOnTermination": v}})).collect::<Vec<_>>()}),
            ),
        }
    }
}

/// An instance's state and devices as its chain found them: the part of its recorded
/// state (see [`state`]) an undo restores.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
struct Start {
    state: String,
    /// An earlier run stopped it while running ([`WAS_RUNNING_TAG`]): "as it was" is
    /// running.
    #[serde(default)]
    was_running: bool,
    devices: BTreeMap<String, Device>,
}

impl Start {
    fn from_state(value: &Value) -> Option<Self> {
        serde_json::from_value(value.clone()).ok()
    }

    /// The state the instance is to be left in.
    fn state(&self) -> &str {
        if self.was_running {
            "running"
        } else {
            &self.state
        }
    }
}

/// What puts `now` back as `start` was, unless the swap finished (each device holds
/// the original or its replacement with the original's DeleteOnTermination, and the
/// instance is in its starting state): then nothing.
fn undo_steps(start: &Start, now: &Instance) -> Vec<Undo> {
    let finished = now.state == start.state()
        && start.devices.iter().all(|(name, was)| {
            now.devices.get(name).is_some_and(|d| {
                (d.volume_id == was.volume_id || d.replaces.as_ref() == Some(&was.volume_id))
                    && d.delete_on_termination == was.delete_on_termination
            })
        });
    if finished {
        return Vec::new();
    }
    swap_back(start, now)
}

/// What puts every device of `now` back to the volume `start` had there, with its
/// DeleteOnTermination, and the instance in its starting state: a finished swap too
/// (the way a rollback undoes one).
fn swap_back(start: &Start, now: &Instance) -> Vec<Undo> {
    let mut steps = Vec::new();
    let moved: Vec<(&String, &String)> = start
        .devices
        .iter()
        .filter(|(name, was)| now.devices.get(*name).map(|d| &d.volume_id) != Some(&was.volume_id))
        .map(|(name, was)| (name, &was.volume_id))
        .collect();
    if !moved.is_empty() && now.state != "stopped" {
        steps.push(Undo::Stop);
    }
    let mut reattached = BTreeSet::new();
    for (device, volume) in &moved {
        if let Some(other) = now.devices.get(*device) {
            steps.push(Undo::Detach {
                volume: other.volume_id.clone(),
                device: (*device).clone(),
            });
        }
        steps.push(Undo::Attach {
            volume: (*volume).clone(),
            device: (*device).clone(),
        });
        reattached.insert((*device).clone());
    }
    let flags: Vec<(String, bool)> = start
        .devices
        .iter()
        .filter(|(name, was)| {
            // A volume attached by AttachVolume is not deleted with the instance.
            let after = if reattached.contains(*name) {
                false
            } else {
                now.devices
                    .get(*name)
                    .is_some_and(|d| d.delete_on_termination)
            };
            after != was.delete_on_termination
        })
        .map(|(name, was)| (name.clone(), was.delete_on_termination))
        .collect();
    if !flags.is_empty() {
        steps.push(Undo::DeleteOnTermination(flags));
    }
    let stopped_here = steps.contains(&Undo::Stop);
    if start.state() == "running" && (now.state != "running" || stopped_here) {
        steps.push(Undo::Start);
    }
    if start.state() == "running" && now.stopped_by_harden() {
        steps.push(Undo::Unmark);
    }
    steps
}

/// The rights of an instance's swap: its own calls, and its volumes'.
static INSTANCE_RIGHTS: crate::actions::Rights = crate::actions::Rights {
    reads: &["ec2:DescribeInstances"],
    changes: &[
        "ec2:StopInstances",
        "ec2:StartInstances",
        "ec2:DetachVolume",
        "ec2:AttachVolume",
        "ec2:ModifyInstanceAttribute",
        "ec2:DeleteTags",
    ],
    passes_role_to: &[],
    kms_via_ec2: false,
    includes: &[&super::ebs_volumes::VOLUME_RIGHTS],
};

#[async_trait]
impl Calls for InstanceCalls {
    fn rights(&self) -> &'static crate::actions::Rights {
        &INSTANCE_RIGHTS
    }

    fn check(&self, change: &Change) -> Result<()> {
        swap_call(change).map(drop)
    }

    async fn read(&self, clients: &RegionClients, resource_id: &str) -> Result<Value> {
        Ok(state(&read_instance(clients, resource_id).await?))
    }

    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        current: &Value,
    ) -> Result<Applied> {
        call(clients, change, current, false).await
    }

    async fn probe(&self, clients: &RegionClients, change: &Change) -> Probe {
        super::dry_run_answer(call(clients, change, &Value::Null, true).await)
    }

    async fn compensate(
        &self,
        clients: &RegionClients,
        resource_id: &str,
        start: &Value,
        cause: &str,
    ) -> Option<Compensation> {
        let start = Start::from_state(start)?;
        let now = match read_instance(clients, resource_id).await {
            Ok(now) => now,
            Err(e) => {
                return Some(Compensation {
                    failure: Some(format!(
                        "could not read {resource_id} to undo its swap: {e}"
                    )),
                    ..Compensation::default()
                });
            }
        };
        let steps = undo_steps(&start, &now);
        if steps.is_empty() {
            return None;
        }
        let mut done = Compensation {
            before: state(&now),
            ..Compensation::default()
        };
        if let Err(e) = undo(clients, resource_id, &steps, &now, cause, &mut done).await {
            done.failure = Some(e.to_string());
        }
        match read_instance(clients, resource_id).await {
            Ok(after) => {
                if done.failure.is_none() {
                    done.failure = restored(&start, &after);
                }
                done.after = state(&after);
            }
            Err(e) => {
                done.failure
                    .get_or_insert(format!("could not read back {resource_id}: {e}"));
            }
        }
        Some(done)
    }
}

/// Makes the undo steps, recording each call, then tags the replacements that are no
/// longer to be used.
async fn undo(
    clients: &RegionClients,
    id: &str,
    steps: &[Undo],
    now: &Instance,
    cause: &str,
    done: &mut Compensation,
) -> Result<()> {
    for step in steps {
        let (operation, input) = step.call(id);
        let result = match step {
            Undo::Stop => stop(clients, id, UNDO_WAIT, false).await,
            Undo::Start => start(clients, id, UNDO_WAIT, false).await,
            Undo::Unmark => mark_running(clients, id, None, false).await,
            Undo::Detach { volume, device } => {
                detach(clients, volume, id, device, UNDO_WAIT, false).await
            }
            Undo::Attach { volume, device } => {
                attach(clients, volume, id, device, UNDO_WAIT, false).await
            }
            Undo::DeleteOnTermination(flags) => {
                set_delete_on_termination(clients, id, flags, false).await
            }
        };
        done.calls.push(ApiCall {
            service: "ec2".into(),
            operation: operation.into(),
            input,
        });
        let applied = result?;
        done.request_ids.extend(applied.request_ids);
    }
    let replacements: Vec<String> = now
        .unencrypted
        .values()
        .flatten()
        .filter(|v| v.replaced_by().is_none())
        .filter_map(|v| v.replacement.as_ref().map(|r| r.id.clone()))
        .collect();
    if replacements.is_empty() {
        return Ok(());
    }
    let operation = "CreateTags";
    done.calls.push(ApiCall {
        service: "ec2".into(),
        operation: operation.into(),
        input: json!({"Resources": replacements, "Tags": [{"Key": ROLLED_BACK_TAG, "Value": cause}]}),
    });
    let out = clients
        .ec2
        .create_tags()
        .set_resources(Some(replacements))
        .tags(Tag::builder().key(ROLLED_BACK_TAG).value(cause).build())
        .send()
        .await
        .map_err(|e| Error::Aws(failure(operation, &e)))?;
    done.request_ids
        .extend(out.request_id().map(str::to_string));
    Ok(())
}

/// Whether `after` is back as `start` was; the first difference otherwise.
fn restored(start: &Start, after: &Instance) -> Option<String> {
    if after.state != start.state() {
        return Some(format!(
            "{} is {}, it was {} before the swap",
            after.id,
            after.state,
            start.state()
        ));
    }
    for (device, was) in &start.devices {
        let (volume, delete) = (&was.volume_id, was.delete_on_termination);
        match after.devices.get(device) {
            Some(d) if d.volume_id == *volume && d.delete_on_termination == delete => {}
            Some(d) => {
                return Some(format!(
                    "{device} holds {} (DeleteOnTermination {}), it held {volume} ({delete}) before the swap",
                    d.volume_id, d.delete_on_termination
                ));
            }
            None => {
                return Some(format!(
                    "{device} is empty, it held {volume} before the swap"
                ));
            }
        }
    }
    None
}

/// An instance as `DescribeInstances` gives it, before its volumes are joined in.
struct Described {
    id: String,
    state: String,
    availability_zone: String,
    tags: BTreeMap<String, String>,
    /// Device name to volume id and DeleteOnTermination.
    devices: BTreeMap<String, (String, bool)>,
}

const MAX_INSTANCES_PAGE: i32 = 1000;

async fn describe(
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
        let page = page.map_err(|e| Error::Aws(failure("DescribeInstances", &e)))?;
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
fn assemble(described: Vec<Described>, volumes: &[Volume]) -> Vec<Instance> {
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
async fn read_instance(clients: &RegionClients, id: &str) -> Result<Instance> {
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

#[cfg(test)]
mod tests {
    //! Planning on the model, undoing from the states a swap can stop in, and the
    //! waits and refusals with mocked responses (the emulators never leave a volume
    //! detaching or refuse an attach).

    use aws_sdk_ec2::Client;
    use aws_sdk_ec2::operation::attach_volume::{AttachVolumeError, AttachVolumeOutput};
    use aws_sdk_ec2::operation::create_tags::CreateTagsOutput;
    use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
    use aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput;
    use aws_sdk_ec2::operation::detach_volume::DetachVolumeOutput;
    use aws_sdk_ec2::operation::modify_instance_attribute::ModifyInstanceAttributeOutput;
    use aws_sdk_ec2::operation::start_instances::StartInstancesOutput;
    use aws_sdk_ec2::types::{
        Instance as Ec2Instance, InstanceState, InstanceStateName, Reservation,
        Volume as Ec2Volume, VolumeState,
    };
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;
    use crate::inventory::{Artifact, REPLACED_BY_TAG};
    use crate::plan::ResourceRef;
    use crate::runbook::model::OnFailure;

    fn volume(id: &str, size: i32) -> Volume {
        Volume {
            id: id.into(),
            availability_zone: "eu-west-1a".into(),
            size,
            volume_type: "gp3".into(),
            iops: Some(3000),
            throughput: Some(125),
            encrypted: false,
            state: "in-use".into(),
            attached_to: vec!["i-1".into()],
            tags: BTreeMap::from([("Name".to_string(), id.to_string())]),
            snapshot: None,
            copy: None,
            replacement: None,
            strays: Vec::new(),
            stray_volumes: Vec::new(),
        }
    }

    fn device(volume_id: &str, delete: bool) -> Device {
        Device {
            volume_id: volume_id.into(),
            delete_on_termination: delete,
            encrypted: false,
            replaces: None,
        }
    }

    /// A running instance: root vol-r (8 GiB, deleted with it) at /dev/xvda, data
    /// vol-d (100 GiB, kept) at /dev/sdf.
    fn web() -> Instance {
        Instance {
            id: "i-1".into(),
            state: "running".into(),
            availability_zone: "eu-west-1a".into(),
            tags: BTreeMap::new(),
            devices: BTreeMap::from([
                ("/dev/xvda".to_string(), device("vol-r", true)),
                ("/dev/sdf".to_string(), device("vol-d", false)),
            ]),
            unencrypted: BTreeMap::from([
                ("vol-d".to_string(), Some(volume("vol-d", 100))),
                ("vol-r".to_string(), Some(volume("vol-r", 8))),
            ]),
        }
    }

    fn operations(plan: &ActionPlan) -> Vec<&str> {
        plan.changes
            .iter()
            .map(|c| c.call.operation.as_str())
            .collect()
    }

    fn plan(instance: &Instance, args: Value) -> ActionPlan {
        EncryptInstanceVolumes
            .plan(&Resource::Instance(instance.clone()), &args)
            .expect("plans")
    }

    #[test]
    fn a_running_instance_needs_allow_stop_and_the_block_says_what_the_downtime_covers() {
        let planned = plan(&web(), json!({}));
        assert!(planned.changes.is_empty());
        let (reason, detail) = planned.blocked.expect("blocked");
        assert_eq!(reason, BlockReason::NeedsDowntime);
        assert!(
            detail.contains("2 volume(s), 108 GiB")
                && detail.contains("/dev/sdf vol-d 100 GiB")
                && detail.contains("allow_stop"),
            "{detail}"
        );
    }

    #[test]
    fn it_stops_once_before_the_snapshots_and_starts_after_the_devices_are_swapped() {
        let planned = plan(
            &web(),
            json!({"allow_stop": true, "kms_key_id": "alias/aws/ebs"}),
        );
        assert_eq!(
            operations(&planned),
            [
                "CreateTags",
                "StopInstances",
                // vol-d then vol-r (id order): snapshot, encrypted copy, new volume.
                "CreateSnapshot",
                "CopySnapshot",
                "CreateVolume",
                "CreateSnapshot",
                "CopySnapshot",
                "CreateVolume",
                // Device order.
                "DetachVolume",
                "AttachVolume",
                "DetachVolume",
                "AttachVolume",
                "ModifyInstanceAttribute",
                "StartInstances",
                "DeleteTags",
                "CreateTags",
                "DeleteSnapshot",
                "DeleteSnapshot",
                "CreateTags",
                "DeleteSnapshot",
                "DeleteSnapshot",
            ]
        );
        assert_eq!(
            planned.changes[0].call.input,
            json!({"Resources": ["i-1"], "Tags": [{"Key": WAS_RUNNING_TAG, "Value": RUN_ID}]}),
            "before it is stopped, the instance says it was running"
        );
        assert_eq!(planned.changes[0].after["was_running"], true);
        assert_eq!(
            planned.changes[14].call.input,
            json!({"Resources": ["i-1"], "Tags": [{"Key": WAS_RUNNING_TAG}]}),
            "and once started again, no longer"
        );
        assert!(
            planned.changes[1].summary.contains("2 volume(s), 108 GiB"),
            "the plan states the downtime: {}",
            planned.changes[1].summary
        );
        assert_eq!(
            planned.changes[8].call.input,
            json!({"VolumeId": "vol-d", "InstanceId": "i-1", "Device": "/dev/sdf"}),
            "detached with InstanceId and Device"
        );
        assert_eq!(
            planned.changes[9].call.input,
            json!({"VolumeId": KNOWN_AFTER_APPLY, "InstanceId": "i-1", "Device": "/dev/sdf"})
        );
        assert_eq!(
            planned.changes[9].after["devices"]["/dev/sdf"],
            json!({"volume_id": KNOWN_AFTER_APPLY, "delete_on_termination": false,
                   "encrypted": true, "replaces": "vol-d"}),
            "the read-back checks the device maps to an encrypted copy of the original"
        );
        assert_eq!(
            planned.changes[12].call.input,
            json!({"InstanceId": "i-1", "BlockDeviceMappings": [
                {"DeviceName": "/dev/xvda", "Ebs": {"DeleteOnTermination": true}}]}),
            "DeleteOnTermination restored where the original had it, only there"
        );
        let tags = &planned.changes[4].call.input["TagSpecifications"][0]["Tags"];
        assert_eq!(
            tags,
            &json!([
                {"Key": "Name", "Value": "vol-d"},
                {"Key": SOURCE_VOLUME_TAG, "Value": "vol-d"},
                {"Key": SWAP_INSTANCE_TAG, "Value": "i-1"},
                {"Key": SWAP_DEVICE_TAG, "Value": "/dev/sdf"},
                {"Key": SWAP_DELETE_ON_TERMINATION_TAG, "Value": "false"}
            ]),
            "the original's tags, and where the copy goes"
        );
        for pair in planned.changes.windows(2) {
            assert_eq!(pair[0].after, pair[1].before, "one chain");
        }
        assert!(!operations(&planned).contains(&"DeleteVolume"));
        let Some(projected) = planned.projected else {
            panic!("projects")
        };
        assert_eq!(
            EncryptInstanceVolumes
                .plan(&projected, &json!({"allow_stop": true}))
                .expect("plans"),
            ActionPlan::default(),
            "what apply leaves needs nothing more"
        );
    }

    #[test]
    fn a_stopped_instance_is_neither_stopped_nor_started() {
        let mut stopped = web();
        stopped.state = "stopped".into();
        let running = plan(&web(), json!({"allow_stop": true}));
        let without_stop_and_start: Vec<&str> = running
            .changes
            .iter()
            .filter(|c| {
                !c.call.operation.ends_with("Instances") && c.call.input["Resources"][0] != "i-1"
            })
            .map(|c| c.call.operation.as_str())
            .collect();
        assert_eq!(
            operations(&plan(&stopped, json!({}))),
            without_stop_and_start,
            "the same swap, without allow_stop, and the instance left stopped"
        );
        let mut shared = stopped.clone();
        if let Some(Some(data)) = shared.unencrypted.get_mut("vol-d") {
            data.attached_to.push("i-2".into());
        }
        assert_eq!(
            plan(&shared, json!({})).blocked.map(|b| b.0),
            Some(BlockReason::InUse),
            "a Multi-Attach volume is never swapped under one of its instances"
        );
        let mut busy = web();
        busy.state = "stopping".into();
        assert_eq!(
            plan(&busy, json!({"allow_stop": true}))
                .blocked
                .map(|b| b.0),
            Some(BlockReason::Transitional)
        );
    }

    fn replacement(id: &str, source: &str, device: &str, delete: bool) -> Artifact {
        Artifact {
            id: id.into(),
            state: "available".into(),
            encrypted: true,
            shape: Some(Box::new(crate::inventory::VolumeShape {
                volume_type: "gp3".into(),
                size: 8,
                iops: Some(3000),
                throughput: Some(125),
                tags: BTreeMap::from([
                    (SOURCE_VOLUME_TAG.to_string(), source.to_string()),
                    (SWAP_INSTANCE_TAG.to_string(), "i-1".to_string()),
                    (SWAP_DEVICE_TAG.to_string(), device.to_string()),
                    (
                        SWAP_DELETE_ON_TERMINATION_TAG.to_string(),
                        delete.to_string(),
                    ),
                ]),
            })),
            placed: None,
        }
    }

    /// The state a process killed after detaching vol-d leaves: the root already on
    /// its copy (DeleteOnTermination not yet restored), /dev/sdf empty, vol-d
    /// available with its copy beside it, the instance stopped.
    fn half_swapped() -> Instance {
        let mut instance = web();
        instance.state = "stopped".into();
        instance.devices = BTreeMap::from([(
            "/dev/xvda".to_string(),
            Device {
                volume_id: "vol-r2".into(),
                delete_on_termination: false,
                encrypted: true,
                replaces: Some("vol-r".into()),
            },
        )]);
        for (id, copy, device, delete) in [
            ("vol-d", "vol-d2", "/dev/sdf", false),
            ("vol-r", "vol-r2", "/dev/xvda", true),
        ] {
            let mut original = volume(id, 8);
            original.state = "available".into();
            original.attached_to.clear();
            original.replacement = Some(replacement(copy, id, device, delete));
            instance.unencrypted.insert(id.into(), Some(original));
        }
        instance
    }

    #[test]
    fn a_swap_left_half_way_is_planned_from_where_it_stopped() {
        let planned = plan(&half_swapped(), json!({}));
        assert_eq!(
            operations(&planned),
            [
                "AttachVolume",
                "ModifyInstanceAttribute",
                "CreateTags",
                "CreateTags"
            ],
            "the device and DeleteOnTermination read from the copy's tags"
        );
        assert_eq!(
            planned.changes[0].call.input,
            json!({"VolumeId": "vol-d2", "InstanceId": "i-1", "Device": "/dev/sdf"})
        );
    }

    #[test]
    fn copies_an_undone_swap_left_are_never_built_on() {
        let mut instance = web();
        if let Some(Some(root)) = instance.unencrypted.get_mut("vol-r") {
            let mut copy = replacement("vol-r2", "vol-r", "/dev/xvda", true);
            if let Some(shape) = copy.shape.as_mut() {
                shape
                    .tags
                    .insert(ROLLED_BACK_TAG.into(), "i-1#9 failed".into());
            }
            root.replacement = Some(copy);
        }
        let (reason, detail) = plan(&instance, json!({"allow_stop": true}))
            .blocked
            .expect("blocked");
        assert_eq!(reason, BlockReason::Failing);
        assert!(detail.contains("vol-r2"), "{detail}");
    }

    #[test]
    fn delete_originals_deletes_them_after_the_instance_runs_on_the_copies() {
        let planned = plan(
            &web(),
            json!({"allow_stop": true, "delete_originals": true}),
        );
        let ops = operations(&planned);
        let started = ops.iter().position(|o| *o == "StartInstances");
        let deletes: Vec<usize> = ops
            .iter()
            .enumerate()
            .filter(|(_, o)| **o == "DeleteVolume")
            .map(|(i, _)| i)
            .collect();
        assert_eq!(deletes.len(), 2);
        assert!(deletes.iter().all(|d| Some(*d) > started));
        let deleted: Vec<&crate::actions::ChangeDraft> = planned
            .changes
            .iter()
            .filter(|c| c.call.operation == "DeleteSnapshot")
            .collect();
        assert_eq!(deleted.len(), 2);
        assert!(
            deleted
                .iter()
                .all(|c| c.summary.contains("unencrypted snapshot")),
            "the unencrypted snapshots go, the encrypted copies stay as the way back"
        );
    }

    /// A swap finished and its originals retired, the instance stopped.
    fn retired() -> Instance {
        let mut finished = half_swapped();
        finished.devices.insert(
            "/dev/sdf".into(),
            Device {
                volume_id: "vol-d2".into(),
                delete_on_termination: false,
                encrypted: true,
                replaces: Some("vol-d".into()),
            },
        );
        if let Some(root) = finished.devices.get_mut("/dev/xvda") {
            root.delete_on_termination = true;
        }
        for original in finished.unencrypted.values_mut().flatten() {
            original.tags.insert(REPLACED_BY_TAG.into(), "vol-x".into());
        }
        finished
    }

    #[test]
    fn an_instance_a_dead_run_stopped_is_started_again_and_one_a_person_stopped_is_not() {
        let finished = retired();
        assert_eq!(
            plan(&finished, json!({})),
            ActionPlan::default(),
            "stopped without the tag: a person stopped it, it stays stopped"
        );
        let mut marked = finished.clone();
        marked.tags.insert(WAS_RUNNING_TAG.into(), "run-1".into());
        let planned = plan(&marked, json!({}));
        assert_eq!(operations(&planned), ["StartInstances", "DeleteTags"]);
        assert!(
            planned.changes[0]
                .summary
                .contains("an earlier harden run stopped it")
        );
        marked.state = "running".into();
        assert_eq!(
            operations(&plan(&marked, json!({}))),
            ["DeleteTags"],
            "started but killed before the tag went"
        );
        let mut mid_swap = half_swapped();
        mid_swap.tags.insert(WAS_RUNNING_TAG.into(), "run-1".into());
        assert_eq!(
            operations(&plan(&mid_swap, json!({}))),
            [
                "AttachVolume",
                "ModifyInstanceAttribute",
                "StartInstances",
                "DeleteTags",
                "CreateTags",
                "CreateTags"
            ],
            "a swap a killed run left half-way is finished and the instance started, without allow_stop: it was stopped by harden"
        );
        assert_eq!(
            undo_steps(&start_of(&mid_swap), &mid_swap).last(),
            Some(&Undo::Unmark),
            "undoing it leaves it running and untagged"
        );
        assert!(undo_steps(&start_of(&mid_swap), &mid_swap).contains(&Undo::Start));
    }

    #[test]
    fn snapshots_left_behind_a_retired_original_are_deleted_by_the_next_plan() {
        let mut done = retired();
        done.state = "running".into();
        if let Some(Some(d)) = done.unencrypted.get_mut("vol-d") {
            d.snapshot = Some(Artifact {
                id: "snap-left".into(),
                state: "completed".into(),
                encrypted: false,
                shape: None,
                placed: None,
            });
        }
        let planned = plan(&done, json!({}));
        assert_eq!(operations(&planned), ["DeleteSnapshot"]);
        assert_eq!(
            planned.changes[0].call.input,
            json!({"SnapshotId": "snap-left"})
        );
    }

    fn start_of(instance: &Instance) -> Start {
        Start::from_state(&state(instance)).expect("a start state")
    }

    #[test]
    fn undoing_puts_every_original_back_at_its_device_and_restarts_the_instance() {
        assert_eq!(
            undo_steps(&start_of(&web()), &half_swapped()),
            [
                Undo::Attach {
                    volume: "vol-d".into(),
                    device: "/dev/sdf".into()
                },
                Undo::Detach {
                    volume: "vol-r2".into(),
                    device: "/dev/xvda".into()
                },
                Undo::Attach {
                    volume: "vol-r".into(),
                    device: "/dev/xvda".into()
                },
                Undo::DeleteOnTermination(vec![("/dev/xvda".into(), true)]),
                Undo::Start,
            ]
        );
        let mut stopped_only = web();
        stopped_only.state = "stopped".into();
        assert_eq!(
            undo_steps(&start_of(&web()), &stopped_only),
            [Undo::Start],
            "a failure before any detach only needs the instance started"
        );
    }

    /// The state a finished swap of [`web`] leaves: running on vol-r2 and vol-d2 with
    /// the originals' DeleteOnTermination, the originals tagged replaced-by, the
    /// intermediate snapshots deleted.
    fn swapped() -> Instance {
        let mut done = half_swapped();
        done.state = "running".into();
        done.devices = BTreeMap::from([
            (
                "/dev/xvda".to_string(),
                Device {
                    volume_id: "vol-r2".into(),
                    delete_on_termination: true,
                    encrypted: true,
                    replaces: Some("vol-r".into()),
                },
            ),
            (
                "/dev/sdf".to_string(),
                Device {
                    volume_id: "vol-d2".into(),
                    delete_on_termination: false,
                    encrypted: true,
                    replaces: Some("vol-d".into()),
                },
            ),
        ]);
        for volume in done.unencrypted.values_mut().flatten() {
            let replacement = volume.replacement.as_mut().expect("a replacement");
            replacement.state = "in-use".into();
            volume
                .tags
                .insert(REPLACED_BY_TAG.into(), replacement.id.clone());
        }
        done
    }

    /// The run that swapped [`web`] as audited: its first before and its last after.
    fn rolled_back(before: &Instance, after: &Instance) -> Result<Vec<Inverse>, String> {
        let call = ApiCall {
            service: "ec2".into(),
            operation: "StopInstances".into(),
            input: json!({}),
        };
        let (before, after) = (state(before), state(after));
        let made = [
            RecordedChange {
                call: &call,
                before: &before,
                after: &before,
            },
            RecordedChange {
                call: &call,
                before: &before,
                after: &after,
            },
        ];
        rollback::inverse_chain("run-1", "i-1", &made)
    }

    #[test]
    fn a_rollback_stops_the_instance_once_puts_every_original_back_and_keeps_the_copies() {
        let undo = rolled_back(&web(), &swapped()).expect("a way back");
        let calls: Vec<(&str, &Value)> = undo
            .iter()
            .map(|i| (i.operation.as_str(), &i.input))
            .collect();
        let on = |operation, input| (operation, input);
        assert_eq!(
            calls,
            [
                on(
                    "CreateTags",
                    &json!({"Resources": ["i-1"], "Tags": [{"Key": WAS_RUNNING_TAG, "Value": RUN_ID}]})
                ),
                on("StopInstances", &json!({"InstanceIds": ["i-1"]})),
                on(
                    "DetachVolume",
                    &json!({"VolumeId": "vol-d2", "InstanceId": "i-1", "Device": "/dev/sdf"})
                ),
                on(
                    "AttachVolume",
                    &json!({"VolumeId": "vol-d", "InstanceId": "i-1", "Device": "/dev/sdf"})
                ),
                on(
                    "DetachVolume",
                    &json!({"VolumeId": "vol-r2", "InstanceId": "i-1", "Device": "/dev/xvda"})
                ),
                on(
                    "AttachVolume",
                    &json!({"VolumeId": "vol-r", "InstanceId": "i-1", "Device": "/dev/xvda"})
                ),
                on(
                    "ModifyInstanceAttribute",
                    &json!({"InstanceId": "i-1", "BlockDeviceMappings": [
                    {"DeviceName": "/dev/xvda", "Ebs": {"DeleteOnTermination": true}}]})
                ),
                on("StartInstances", &json!({"InstanceIds": ["i-1"]})),
                on(
                    "DeleteTags",
                    &json!({"Resources": ["i-1"], "Tags": [{"Key": WAS_RUNNING_TAG}]})
                ),
                on(
                    "DeleteTags",
                    &json!({"Resources": ["vol-d", "vol-r"], "Tags": [{"Key": REPLACED_BY_TAG}]})
                ),
                on(
                    "CreateTags",
                    &json!({"Resources": ["vol-d2", "vol-r2"], "Tags": [
                    {"Key": ROLLED_BACK_TAG, "Value": "rollback of run-1"}]})
                ),
            ]
        );
        // It ends as the instance was, with the copies beside the originals, detached
        // and tagged: exactly what reading it back must show.
        let mut expected = web();
        for (id, volume) in &mut expected.unencrypted {
            let swapped = swapped();
            let mut replacement = swapped.unencrypted[id]
                .as_ref()
                .and_then(|v| v.replacement.clone())
                .expect("a replacement");
            replacement.state = "available".into();
            if let Some(shape) = replacement.shape.as_mut() {
                shape
                    .tags
                    .insert(ROLLED_BACK_TAG.into(), "rollback of run-1".into());
            }
            if let Some(volume) = volume {
                volume.replacement = Some(replacement);
            }
        }
        assert_eq!(undo.last().map(|i| &i.after), Some(&state(&expected)));
        // Each step's state follows from the one before: the instance stays stopped
        // from the stop to the start.
        let states: Vec<&str> = undo
            .iter()
            .map(|i| i.after["state"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(states[0], "running");
        assert!(states[1..7].iter().all(|s| *s == "stopped"), "{states:?}");
        assert_eq!(states[7..], ["running"; 4]);
        // And a later plan refuses to build on the copies kept.
        let blocked = plan(&expected, json!({"allow_stop": true}))
            .blocked
            .expect("blocked");
        assert_eq!(blocked.0, BlockReason::Failing);
        assert!(
            blocked.1.contains("was undone (rollback of run-1)"),
            "{}",
            blocked.1
        );
    }

    #[test]
    fn a_rollback_cut_short_after_the_originals_are_back_is_refused_by_the_next_plan() {
        // Swapped back but still tagged replaced-by: it must not read as retired.
        let mut back = web();
        for (id, volume) in &mut back.unencrypted {
            if let Some(volume) = volume {
                volume.tags.insert(REPLACED_BY_TAG.into(), format!("{id}2"));
            }
        }
        let blocked = plan(&back, json!({"allow_stop": true}))
            .blocked
            .expect("blocked");
        assert_eq!(blocked.0, BlockReason::Failing);
        assert!(blocked.1.contains("attached to i-1 again"), "{}", blocked.1);
    }

    #[test]
    fn a_second_replacement_volume_blocks_the_instance_naming_it_whether_swapped_or_not() {
        let second = |mut instance: Instance| {
            if let Some(Some(volume)) = instance.unencrypted.get_mut("vol-d") {
                let mut other = volume.replacement.clone().unwrap_or_else(|| Artifact {
                    id: String::new(),
                    state: String::new(),
                    encrypted: true,
                    shape: None,
                    placed: None,
                });
                other.id = "vol-d3".into();
                other.state = "available".into();
                volume.stray_volumes = vec![other];
            }
            plan(&instance, json!({"allow_stop": true}))
                .blocked
                .expect("blocked")
        };
        for (what, instance) in [("pending", web()), ("swapped", swapped())] {
            let blocked = second(instance);
            assert_eq!(blocked.0, BlockReason::Failing, "{what}");
            assert!(
                blocked
                    .1
                    .contains("a second replacement volume of vol-d exists (vol-d3"),
                "{what}: {}",
                blocked.1
            );
        }
    }

    #[test]
    fn a_rollback_cannot_bring_back_an_original_the_run_deleted() {
        let mut gone = swapped();
        gone.unencrypted.insert("vol-d".into(), None);
        let mut before = web();
        if let Some(Some(volume)) = before.unencrypted.get_mut("vol-d") {
            volume.copy = Some(Artifact {
                id: "snap-dc".into(),
                state: "completed".into(),
                encrypted: true,
                shape: None,
                placed: None,
            });
        }
        let why = rolled_back(&before, &gone).expect_err("no way back");
        assert!(why.contains("deleted the original vol-d"), "{why}");
        assert!(why.contains("snap-dc"), "{why}");
    }

    #[test]
    fn a_finished_swap_is_not_undone() {
        let mut done = half_swapped();
        done.state = "running".into();
        done.devices.insert(
            "/dev/sdf".into(),
            Device {
                volume_id: "vol-d2".into(),
                delete_on_termination: false,
                encrypted: true,
                replaces: Some("vol-d".into()),
            },
        );
        if let Some(root) = done.devices.get_mut("/dev/xvda") {
            root.delete_on_termination = true;
        }
        assert_eq!(
            undo_steps(&start_of(&web()), &done),
            Vec::new(),
            "only its clean-up failed: the instance runs on its copies"
        );
    }

    fn change(operation: &str, input: Value, timeout: u64) -> Change {
        Change {
            id: "t/eu-west-1/swap/i-1#8".into(),
            runbook: "t".into(),
            account_id: "123456789012".into(),
            region: "eu-west-1".into(),
            step: "swap".into(),
            action: "ec2:encrypt-instance-volumes".into(),
            resource: ResourceRef {
                kind: ResourceKind::Instance,
                id: "i-1".into(),
                tags: Default::default(),
            },
            kind: ChangeKind::Update,
            summary: String::new(),
            before: Value::Null,
            after: Value::Null,
            call: ApiCall {
                service: "ec2".into(),
                operation: operation.into(),
                input,
            },
            on_failure: OnFailure::Stop,
            wait_timeout_seconds: Some(timeout),
            probe: None,
        }
    }

    fn volume_in(id: &str, state: VolumeState) -> DescribeVolumesOutput {
        DescribeVolumesOutput::builder()
            .volumes(Ec2Volume::builder().volume_id(id).state(state).build())
            .build()
    }

    fn clients_for(rules: &[&aws_smithy_mocks::Rule]) -> RegionClients {
        let clock = crate::actions::test_support::tokio_time();
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, rules, move |c| c
            .time_source(clock.clone()));
        crate::aws::Aws::with_ec2_client(client).region("eu-west-1")
    }

    #[tokio::test(start_paused = true)]
    async fn a_detach_that_stays_busy_fails_the_change_at_its_timeout() {
        let detach = mock!(Client::detach_volume)
            .match_requests(|r| {
                r.volume_id() == Some("vol-d")
                    && r.instance_id() == Some("i-1")
                    && r.device() == Some("/dev/sdf")
            })
            .then_output(|| DetachVolumeOutput::builder().build());
        let describe =
            mock!(Client::describe_volumes).then_output(|| volume_in("vol-d", VolumeState::InUse));
        let clients = clients_for(&[&detach, &describe]);
        let result = InstanceCalls
            .apply(
                &clients,
                &change(
                    "DetachVolume",
                    json!({"VolumeId": "vol-d", "InstanceId": "i-1", "Device": "/dev/sdf"}),
                    300,
                ),
                &Value::Null,
            )
            .await;
        let Err(Error::Aws(f)) = result else {
            panic!("must fail, got {result:?}")
        };
        assert_eq!(f.code, "WaitTimeout");
        assert!(f.message.contains("300 s"), "{}", f.message);
        assert_eq!(detach.num_calls(), 1, "detached with InstanceId and Device");
        assert!(describe.num_calls() >= 2, "polled before giving up");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_attach_fails_the_change_with_the_services_reason() {
        let attach = mock!(Client::attach_volume).then_error(|| {
            AttachVolumeError::generic(
                ErrorMetadata::builder()
                    .code("IncorrectState")
                    .message("vol-d2 is not available")
                    .build(),
            )
        });
        let clients = clients_for(&[&attach]);
        let current = state(&half_swapped());
        let result = InstanceCalls
            .apply(
                &clients,
                &change(
                    "AttachVolume",
                    json!({"VolumeId": KNOWN_AFTER_APPLY, "InstanceId": "i-1", "Device": "/dev/sdf"}),
                    300,
                ),
                &current,
            )
            .await;
        let Err(Error::Aws(f)) = result else {
            panic!("must fail, got {result:?}")
        };
        assert_eq!(f.code, "IncorrectState");
        assert_eq!(attach.num_calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn undoing_waits_for_each_volume_and_the_instance_and_tags_the_copies() {
        let detach = mock!(Client::detach_volume)
            .match_requests(|r| r.volume_id() == Some("vol-r2") && r.device() == Some("/dev/xvda"))
            .then_output(|| DetachVolumeOutput::builder().build());
        let attach_root = mock!(Client::attach_volume)
            .match_requests(|r| r.volume_id() == Some("vol-r") && r.device() == Some("/dev/xvda"))
            .then_output(|| AttachVolumeOutput::builder().build());
        let attach_data = mock!(Client::attach_volume)
            .match_requests(|r| r.volume_id() == Some("vol-d") && r.device() == Some("/dev/sdf"))
            .then_output(|| AttachVolumeOutput::builder().build());
        // Each volume is still changing at the first poll.
        let volumes = mock!(Client::describe_volumes)
            .sequence()
            .output(|| volume_in("vol-d", VolumeState::Available))
            .output(|| volume_in("vol-d", VolumeState::InUse))
            .output(|| volume_in("vol-r2", VolumeState::InUse))
            .output(|| volume_in("vol-r2", VolumeState::Available))
            .output(|| volume_in("vol-r", VolumeState::Available))
            .output(|| volume_in("vol-r", VolumeState::InUse))
            .build();
        let flags = mock!(Client::modify_instance_attribute)
            .match_requests(|r| {
                r.block_device_mappings().len() == 1
                    && r.block_device_mappings()[0].device_name() == Some("/dev/xvda")
                    && r.block_device_mappings()[0]
                        .ebs()
                        .and_then(|e| e.delete_on_termination())
                        == Some(true)
            })
            .then_output(|| ModifyInstanceAttributeOutput::builder().build());
        let start_call =
            mock!(Client::start_instances).then_output(|| StartInstancesOutput::builder().build());
        let instance_in = |name: InstanceStateName| {
            DescribeInstancesOutput::builder()
                .reservations(
                    Reservation::builder()
                        .instances(
                            Ec2Instance::builder()
                                .instance_id("i-1")
                                .state(InstanceState::builder().name(name).build())
                                .build(),
                        )
                        .build(),
                )
                .build()
        };
        let instances = mock!(Client::describe_instances)
            .sequence()
            .output(move || instance_in(InstanceStateName::Pending))
            .output(move || instance_in(InstanceStateName::Running))
            .build();
        let tags = mock!(Client::create_tags)
            .match_requests(|r| {
                r.resources() == ["vol-d2", "vol-r2"]
                    && r.tags()[0].key() == Some(ROLLED_BACK_TAG)
                    && r.tags()[0].value() == Some("i-1#11 failed: IncorrectState")
            })
            .then_output(|| CreateTagsOutput::builder().build());
        let clients = clients_for(&[
            &detach,
            &attach_root,
            &attach_data,
            &volumes,
            &flags,
            &start_call,
            &instances,
            &tags,
        ]);
        let now = half_swapped();
        let mut done = Compensation::default();
        undo(
            &clients,
            "i-1",
            &undo_steps(&start_of(&web()), &now),
            &now,
            "i-1#11 failed: IncorrectState",
            &mut done,
        )
        .await
        .expect("undone");
        assert_eq!(
            done.calls
                .iter()
                .map(|c| c.operation.as_str())
                .collect::<Vec<_>>(),
            [
                "AttachVolume",
                "DetachVolume",
                "AttachVolume",
                "ModifyInstanceAttribute",
                "StartInstances",
                "CreateTags"
            ],
            "device order: /dev/sdf, then /dev/xvda"
        );
        for (rule, calls) in [
            (&detach, 1),
            (&attach_root, 1),
            (&attach_data, 1),
            (&volumes, 6),
            (&flags, 1),
            (&start_call, 1),
            (&instances, 2),
            (&tags, 1),
        ] {
            assert_eq!(rule.num_calls(), calls);
        }
    }
}
