//! Undoing a run's swap of an instance (`harden rollback`): the run's changes of the
//! instance build one state together (stopped, copies made, devices moved, started
//! again), so they are undone as one chain rather than change by change.
//!
//! The chain puts every device back to the original volume it held, with its
//! DeleteOnTermination, and the instance in the state it was in (stopped for it once
//! more when it runs: the same downtime as the swap's). Then the originals lose their
//! `harden:replaced-by` tag and the replacements, detached, are kept and tagged
//! `harden:rolled-back`: they hold what the instance wrote while it ran on them, which
//! a rollback must not destroy. A later plan refuses to build on them until a person
//! deletes them. The tags come last so that a rollback cut short never leaves an
//! original that is in use looking retired (the plan refuses that state too).
//!
//! What cannot come back: an original the run deleted (`delete_originals`); its
//! encrypted snapshot is the way back, by hand. The intermediate snapshots the run
//! deleted are not made again: they were copies of originals that are still there.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{Start, Undo, swap_back};
use crate::actions::{Inverse, RecordedChange};
use crate::inventory::{Device, Instance, REPLACED_BY_TAG, ROLLED_BACK_TAG, WAS_RUNNING_TAG};
use crate::template::RUN_ID;

/// The changes that undo run `run_id`'s chain `made` on instance `id`.
pub(super) fn inverse_chain(
    run_id: &str,
    id: &str,
    made: &[RecordedChange<'_>],
) -> Result<Vec<Inverse>, String> {
    let (Some(first), Some(last)) = (made.first(), made.last()) else {
        return Ok(Vec::new());
    };
    let start = Start::from_state(first.before)
        .ok_or("the state recorded before the swap is not an instance's")?;
    let left = Start::from_state(last.after)
        .ok_or("the state recorded after the swap is not an instance's")?;
    let volumes = |state: &Value| state["volumes"].as_object().cloned().unwrap_or_default();
    let (found, after) = (volumes(first.before), volumes(last.after));
    if let Some(deleted) = after.keys().find(|v| after[*v]["exists"] == false) {
        let copy = made
            .iter()
            .rev()
            .find_map(|c| c.after["volumes"][deleted]["copy"]["id"].as_str())
            .or_else(|| found.get(deleted)?["copy"]["id"].as_str())
            .unwrap_or("(none recorded)");
        return Err(format!(
            "the run deleted the original {deleted}; its encrypted snapshot {copy} is the way back, by hand (a rollback cannot make an unencrypted volume again)"
        ));
    }
    // Originals this run retired (an earlier run's are not its to undo), and the
    // replacements made for the originals it puts back.
    let retired_before = |v: &str| found.get(v).is_some_and(|s| !s["replaced_by"].is_null());
    let untag: Vec<String> = after
        .iter()
        .filter(|(v, state)| !state["replaced_by"].is_null() && !retired_before(v))
        .map(|(v, _)| v.clone())
        .collect();
    let replacements: Vec<(String, String)> = after
        .iter()
        .filter(|(v, _)| !retired_before(v))
        .filter_map(|(v, state)| {
            Some((v.clone(), state["replacement"]["id"].as_str()?.to_string()))
        })
        .collect();

    let now = Instance {
        id: id.to_string(),
        state: left.state.clone(),
        availability_zone: String::new(),
        tags: marked(left.was_running),
        devices: left.devices.clone(),
        unencrypted: BTreeMap::new(),
    };
    let mut steps = swap_back(&start, &now);
    // Stopping it for the way back, harden tags it first as the swap did: a plan after
    // an interruption then knows to start it again.
    let mark = steps.contains(&Undo::Stop) && steps.contains(&Undo::Start) && !left.was_running;
    if mark {
        steps.push(Undo::Unmark);
    }

    let mut state = last.after.clone();
    let mut chain = Vec::new();
    let mut push = |summary: String, operation: &str, input: Value, state: &Value| {
        chain.push(Inverse::restoring(state, summary, operation, input));
    };
    if mark {
        set(&mut state, &["was_running"], json!(true));
        push(
            format!("tag {id} {WAS_RUNNING_TAG} before stopping it to put its originals back"),
            "CreateTags",
            json!({"Resources": [id], "Tags": [{"Key": WAS_RUNNING_TAG, "Value": RUN_ID}]}),
            &state,
        );
    }
    for step in &steps {
        let summary = match step {
            Undo::Stop => {
                set(&mut state, &["state"], json!("stopped"));
                format!("stop {id} (waits until stopped) to put its original volumes back")
            }
            Undo::Detach { volume, device } => {
                if let Some(devices) = state["devices"].as_object_mut() {
                    devices.remove(device);
                }
                if let Some(original) = replacements.iter().find(|(_, r)| r == volume) {
                    set(
                        &mut state,
                        &["volumes", &original.0, "replacement", "state"],
                        json!("available"),
                    );
                }
                format!("detach {volume} from {id} at {device} (waits until available)")
            }
            Undo::Attach { volume, device } => {
                // An attached volume is not deleted with the instance until told.
                let attached = json!(Device {
                    volume_id: volume.clone(),
                    delete_on_termination: false,
                    encrypted: start.devices.get(device).is_some_and(|d| d.encrypted),
                    replaces: None,
                });
                set(&mut state, &["devices", device], attached);
                if state["volumes"][volume].is_object() {
                    set(&mut state, &["volumes", volume, "state"], json!("in-use"));
                }
                format!(
                    "attach the original {volume} to {id} at {device} again (waits until in use)"
                )
            }
            Undo::DeleteOnTermination(flags) => {
                for (device, on) in flags {
                    set(
                        &mut state,
                        &["devices", device, "delete_on_termination"],
                        json!(on),
                    );
                }
                let devices: Vec<&str> = flags.iter().map(|(d, _)| d.as_str()).collect();
                format!(
                    "set DeleteOnTermination of {} of {id} back as the originals had it",
                    devices.join(", ")
                )
            }
            Undo::Start => {
                set(&mut state, &["state"], json!("running"));
                format!("start {id} again (waits until running)")
            }
            Undo::Unmark => {
                set(&mut state, &["was_running"], json!(false));
                format!("remove the {WAS_RUNNING_TAG} tag of {id}: it runs again")
            }
        };
        let (operation, input) = step.call(id);
        push(summary, operation, input, &state);
    }
    if !untag.is_empty() {
        for volume in &untag {
            set(&mut state, &["volumes", volume, "replaced_by"], Value::Null);
        }
        push(
            format!(
                "remove the {REPLACED_BY_TAG} tag of {}: in use again",
                untag.join(", ")
            ),
            "DeleteTags",
            json!({"Resources": untag, "Tags": [{"Key": REPLACED_BY_TAG}]}),
            &state,
        );
    }
    if !replacements.is_empty() {
        let cause = format!("rollback of {run_id}");
        for (volume, _) in &replacements {
            set(
                &mut state,
                &[
                    "volumes",
                    volume,
                    "replacement",
                    "shape",
                    "tags",
                    ROLLED_BACK_TAG,
                ],
                json!(cause),
            );
        }
        let ids: Vec<&str> = replacements.iter().map(|(_, r)| r.as_str()).collect();
        push(
            format!(
                "tag the replacements {} {ROLLED_BACK_TAG}: kept, with what {id} wrote on them, for a person to delete",
                ids.join(", ")
            ),
            "CreateTags",
            json!({"Resources": ids, "Tags": [{"Key": ROLLED_BACK_TAG, "Value": cause}]}),
            &state,
        );
    }
    Ok(chain)
}

/// Sets the field at `path` of `state`, making the objects on the way; a value on the
/// way that is not an object (a state recorded in another shape) is left alone.
fn set(state: &mut Value, path: &[&str], value: Value) {
    let Some((last, within)) = path.split_last() else {
        return;
    };
    let mut here = state;
    for key in within {
        if here.is_null() {
            *here = json!({});
        }
        let Some(object) = here.as_object_mut() else {
            return;
        };
        here = object.entry(*key).or_insert_with(|| json!({}));
    }
    if let Some(object) = here.as_object_mut() {
        object.insert((*last).to_string(), value);
    }
}

/// An instance's tags as far as a swap reads them: [`WAS_RUNNING_TAG`] or none.
fn marked(was_running: bool) -> BTreeMap<String, String> {
    if was_running {
        BTreeMap::from([(WAS_RUNNING_TAG.to_string(), String::new())])
    } else {
        BTreeMap::new()
    }
}
