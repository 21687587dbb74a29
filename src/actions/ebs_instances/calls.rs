//! An instance swap's calls, typed, with their waits: stop, start, detach, attach,
//! DeleteOnTermination, the was-running tag, and each volume's calls.

use super::*;
#[allow(unused_imports)]
use crate::aws::Answer;

/// The calls on the instance itself in a swap, as a plan stores them (EC2's field
/// names); the swap's other calls are its volumes' ([`ebs_volumes::VolumeCall`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
pub(super) enum InstanceCall {
    StopInstances(InstanceIdsInput),
    StartInstances(InstanceIdsInput),
    DetachVolume(AttachmentInput),
    AttachVolume(AttachmentInput),
    ModifyInstanceAttribute(DeleteOnTerminationInput),
}

/// The operations of [`InstanceCall`].
pub(super) const INSTANCE_OPERATIONS: &[&str] = &[
    "StopInstances",
    "StartInstances",
    "DetachVolume",
    "AttachVolume",
    "ModifyInstanceAttribute",
];

/// A call of an instance's swap: on the instance, or on one of its volumes.
pub(super) enum SwapCall {
    Instance(InstanceCall),
    Volume(ebs_volumes::VolumeCall),
}

pub(super) fn swap_call(change: &Change) -> Result<SwapCall> {
    if INSTANCE_OPERATIONS.contains(&change.call.operation.as_str()) {
        typed_call(change).map(SwapCall::Instance)
    } else {
        typed_call(change).map(SwapCall::Volume)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct InstanceIdsInput {
    pub(super) instance_ids: Vec<String>,
}

/// A volume at a device of an instance; the `VolumeId` of an attach is `(known after
/// apply)` until the replacement is made, then taken from the state just read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct AttachmentInput {
    #[serde(default)]
    pub(super) volume_id: Option<String>,
    pub(super) instance_id: String,
    pub(super) device: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct DeleteOnTerminationInput {
    pub(super) instance_id: String,
    pub(super) block_device_mappings: Vec<MappingInput>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct MappingInput {
    pub(super) device_name: String,
    pub(super) ebs: EbsFlagInput,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct EbsFlagInput {
    pub(super) delete_on_termination: bool,
}

/// The one instance a start or stop names.
pub(super) fn instance_of<'a>(change: &Change, input: &'a InstanceIdsInput) -> Result<&'a str> {
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
pub(super) fn volume_of(
    change: &Change,
    call: &ebs_volumes::VolumeCall,
    current: &Value,
) -> Result<String> {
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
pub(super) fn replacement_for(current: &Value, device: &str) -> Option<String> {
    current["volumes"]
        .as_object()?
        .values()
        .find(|v| v["replacement"]["shape"]["tags"][SWAP_DEVICE_TAG] == device)?["replacement"]
        ["id"]
        .as_str()
        .filter(|id| *id != KNOWN_AFTER_APPLY)
        .map(str::to_string)
}

pub(super) async fn stop(
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
        .or_failure(operation)?;
    clients
        .ec2
        .wait_until_instance_stopped()
        .instance_ids(id)
        .wait(limit)
        .await
        .map_err(|e| wait_failure(operation, &format!("instance {id} stopping"), limit, e))?;
    Ok(Applied::request(out.request_id()))
}

pub(super) async fn start(
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
        .or_failure(operation)?;
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
pub(super) async fn detach(
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
        .or_failure(operation)?;
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
pub(super) async fn attach(
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
        .or_failure(operation)?;
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
pub(super) async fn set_delete_on_termination(
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
        .or_failure(operation)?;
    Ok(Applied::request(out.request_id()))
}

/// Puts [`WAS_RUNNING_TAG`] on the instance with `run` as its value, or removes it
/// (`None`).
pub(super) async fn mark_running(
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
                .or_failure(operation)?;
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
                .or_failure(operation)?;
            Ok(Applied::request(out.request_id()))
        }
    }
}

pub(super) async fn call(
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

/// The rights of an instance's swap: its own calls, and its volumes'.
pub(super) static INSTANCE_RIGHTS: crate::actions::Rights = crate::actions::Rights {
    reads: &["ec2:DescribeInstances"],
    changes: &[
        "ec2:StopInstances",
        "ec2:StartInstances",
        "ec2:DetachVolume",
        "ec2:AttachVolume",
        "ec2:ModifyInstanceAttribute",
        "ec2:DeleteTags",
    ],
    includes: &[&crate::actions::ebs_volumes::VOLUME_RIGHTS],
    ..crate::actions::Rights::NONE
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
        crate::actions::dry_run_answer(call(clients, change, &Value::Null, true).await)
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
