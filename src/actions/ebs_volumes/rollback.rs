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
