//! Putting an instance back when its swap stopped part-way: the originals at their
//! devices, DeleteOnTermination and the instance state as they were.

use super::*;
#[allow(unused_imports)]
use crate::aws::Answer;

/// How long each wait of a compensation may take: detaching, attaching, stopping and
/// starting take seconds to minutes.
pub(super) const UNDO_WAIT: Duration = Duration::from_secs(900);

/// One step of undoing a swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Undo {
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
    pub(super) fn call(&self, id: &str) -> (&'static str, Value) {
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
pub(super) struct Start {
    pub(super) state: String,
    /// An earlier run stopped it while running ([`WAS_RUNNING_TAG`]): "as it was" is
    /// running.
    #[serde(default)]
    pub(super) was_running: bool,
    pub(super) devices: BTreeMap<String, Device>,
}

impl Start {
    pub(super) fn from_state(value: &Value) -> Option<Self> {
        serde_json::from_value(value.clone()).ok()
    }

    /// The state the instance is to be left in.
    pub(super) fn state(&self) -> &str {
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
pub(super) fn undo_steps(start: &Start, now: &Instance) -> Vec<Undo> {
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
pub(super) fn swap_back(start: &Start, now: &Instance) -> Vec<Undo> {
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

/// Makes the undo steps, recording each call, then tags the replacements that are no
/// longer to be used.
pub(super) async fn undo(
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
        .or_failure(operation)?;
    done.request_ids
        .extend(out.request_id().map(str::to_string));
    Ok(())
}

/// Whether `after` is back as `start` was; the first difference otherwise.
pub(super) fn restored(start: &Start, after: &Instance) -> Option<String> {
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
