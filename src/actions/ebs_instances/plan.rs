//! Planning an instance's swap: the action, its arguments and the chain of changes.

#[allow(unused_imports)]
use super::*;

/// Replaces the unencrypted volumes attached to an instance by encrypted copies.
pub struct EncryptInstanceVolumes;

pub(super) static ENCRYPT_INSTANCE: ActionInfo = ActionInfo {
    name: "ec2:encrypt-instance-volumes",
    description: "replace the unencrypted volumes attached to an instance by encrypted copies: stop it once (allow_stop, when running), snapshot, encrypted copy and new volume per device, detach the original and attach the copy at the same device, restore DeleteOnTermination, start it again, verify; originals tagged harden:replaced-by and kept unless delete_originals; undone (originals re-attached, instance state restored) if it stops part-way",
    resource_kind: ResourceKind::Instance,
    outputs: &[],
    waits: true,
};

/// An instance as changes record it: its state, its EBS devices, and the unencrypted
/// volumes being replaced with their artifacts.
pub(super) fn state(instance: &Instance) -> Value {
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
pub(super) fn downtime(pending: &[(String, Volume)]) -> String {
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
pub(super) fn push_volume_step(
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

/// The arguments of `ec2:encrypt-instance-volumes`.
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceArgs {
    /// Stop a running instance for the replacement (default false: a running instance
    /// is blocked as needing downtime).
    #[serde(default, deserialize_with = "crate::actions::arg::flag")]
    pub allow_stop: Option<bool>,
    /// KMS key for the copies and new volumes; empty for the account's default EBS key.
    #[serde(default, deserialize_with = "crate::actions::arg::text")]
    pub kms_key_id: Option<String>,
    #[serde(flatten)]
    pub retirement: ebs_volumes::RetirementArgs,
}

impl Action for EncryptInstanceVolumes {
    fn arguments(&self) -> Vec<ArgSpec> {
        crate::actions::arguments_of::<InstanceArgs>()
    }

    fn info(&self) -> &'static ActionInfo {
        &ENCRYPT_INSTANCE
    }

    fn plan(&self, target: &Resource, args: &Value) -> std::result::Result<ActionPlan, String> {
        let Resource::Instance(instance) = target else {
            return Err(format!("expected an EC2 instance, given {}", target.kind()));
        };
        let args: InstanceArgs = crate::actions::typed_args(args)?;
        let allow_stop = args.allow_stop.unwrap_or(false);
        let kms = args.kms_key_id.clone();
        let retirement = Retirement::from_args(&args.retirement)?;
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
