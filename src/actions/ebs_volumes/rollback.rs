//! Undoing a run's replacement of an unattached volume (`harden rollback`): the run's
//! changes of the volume (snapshot, encrypted copy, new volume, the original tagged
//! `harden:replaced-by`, the snapshots deleted) are undone as one chain.
//!
//! The original becomes the volume of record again (its `harden:replaced-by` tag is
//! removed); the replacement is kept, tagged `harden:rolled-back`, because someone may
//! have attached it and written to it since, and a rollback deletes no data. A later
//! plan refuses to build on it until a person deletes it. An original the run deleted
//! (`delete_originals`) cannot come back unencrypted; its encrypted snapshot is the way
//! back, by hand.

use serde_json::{Value, json};

use crate::actions::{Inverse, RecordedChange};
use crate::inventory::{REPLACED_BY_TAG, ROLLED_BACK_TAG};

/// The changes that undo run `run_id`'s chain `made` on volume `id`.
pub(super) fn inverse_chain(
    run_id: &str,
    id: &str,
    made: &[RecordedChange<'_>],
) -> Result<Vec<Inverse>, String> {
    let (Some(first), Some(last)) = (made.first(), made.last()) else {
        return Ok(Vec::new());
    };
    if last.after["exists"] == false {
        let copy = made
            .iter()
            .rev()
            .find_map(|c| c.before["copy"]["id"].as_str())
            .unwrap_or("(none recorded)");
        return Err(format!(
            "the run deleted the original {id}; its encrypted snapshot {copy} is the way back, by hand (a rollback cannot make an unencrypted volume again)"
        ));
    }
    // An original an earlier run retired is not this run's to give back.
    if !first.before["replaced_by"].is_null() {
        return Ok(Vec::new());
    }
    let mut state = last.after.clone();
    let mut chain = Vec::new();
    if !state["replaced_by"].is_null() {
        state["replaced_by"] = Value::Null;
        chain.push(Inverse::restoring(
            &state,
            format!("remove the {REPLACED_BY_TAG} tag of {id}: the volume of record again"),
            "DeleteTags",
            json!({"Resources": [id], "Tags": [{"Key": REPLACED_BY_TAG}]}),
        ));
    }
    if let Some(replacement) = state["replacement"]["id"].as_str().map(str::to_string) {
        let cause = format!("rollback of {run_id}");
        if let Some(tags) = state
            .pointer_mut("/replacement/shape/tags")
            .and_then(Value::as_object_mut)
        {
            tags.insert(ROLLED_BACK_TAG.into(), json!(cause));
        }
        chain.push(Inverse::restoring(
            &state,
            format!(
                "tag the replacement {replacement} of {id} {ROLLED_BACK_TAG}: kept, with anything written to it since, for a person to delete"
            ),
            "CreateTags",
            json!({"Resources": [replacement], "Tags": [{"Key": ROLLED_BACK_TAG, "Value": cause}]}),
        ));
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::ApiCall;

    fn call() -> ApiCall {
        ApiCall {
            service: "ec2".into(),
            operation: "CreateSnapshot".into(),
            input: json!({}),
        }
    }

    fn volume(replaced_by: Option<&str>, copy: Option<&str>) -> Value {
        json!({
            "exists": true,
            "encrypted": false,
            "state": "available",
            "replaced_by": replaced_by,
            "snapshot": null,
            "copy": copy.map(|id| json!({"id": id, "state": "completed", "encrypted": true})),
            "replacement": replaced_by.map(|id| json!({
                "id": id,
                "state": "available",
                "encrypted": true,
                "shape": {"volume_type": "gp3", "size": 20, "iops": 3000, "throughput": 125,
                          "tags": {"Name": "data", "harden:source-volume": "vol-1"}},
            })),
        })
    }

    fn undo(states: &[Value]) -> Result<Vec<Inverse>, String> {
        let call = call();
        let made: Vec<RecordedChange<'_>> = states
            .windows(2)
            .map(|pair| RecordedChange {
                call: &call,
                before: &pair[0],
                after: &pair[1],
            })
            .collect();
        inverse_chain("run-1", "vol-1", &made)
    }

    #[test]
    fn a_replacement_is_undone_by_untagging_the_original_and_tagging_the_copy_kept() {
        let chain = undo(&[volume(None, None), volume(Some("vol-2"), None)]).expect("a way back");
        let calls: Vec<(&str, &Value)> = chain
            .iter()
            .map(|i| (i.operation.as_str(), &i.input))
            .collect();
        assert_eq!(
            calls,
            [
                (
                    "DeleteTags",
                    &json!({"Resources": ["vol-1"], "Tags": [{"Key": REPLACED_BY_TAG}]})
                ),
                (
                    "CreateTags",
                    &json!({"Resources": ["vol-2"], "Tags": [{"Key": ROLLED_BACK_TAG, "Value": "rollback of run-1"}]})
                ),
            ]
        );
        let last = &chain[1].after;
        assert!(last["replaced_by"].is_null(), "the volume of record again");
        assert_eq!(
            last["replacement"]["shape"]["tags"][ROLLED_BACK_TAG],
            "rollback of run-1"
        );
        assert!(chain.iter().all(|i| !i.removes_created), "nothing deleted");
    }

    #[test]
    fn an_original_the_run_deleted_is_refused_naming_its_encrypted_snapshot() {
        let why = undo(&[volume(None, Some("snap-enc")), json!({"exists": false})])
            .expect_err("no way back");
        assert!(why.contains("deleted the original vol-1"), "{why}");
        assert!(why.contains("snap-enc"), "{why}");
    }

    #[test]
    fn an_original_an_earlier_run_retired_is_not_this_runs_to_give_back() {
        // The run only deleted a snapshot left over behind the retired original.
        let mut leftover = volume(Some("vol-2"), None);
        leftover["strays"] = json!(["snap-left"]);
        assert_eq!(
            undo(&[leftover, volume(Some("vol-2"), None)]),
            Ok(Vec::new())
        );
    }
}
