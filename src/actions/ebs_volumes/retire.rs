use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::kind::{REPLACED_BY_TAG, Volume};
use super::plan::VolumeStep;
use crate::actions::arg;
use crate::plan::ChangeKind;
use crate::template::KNOWN_AFTER_APPLY;

/// What becomes of an original and its snapshots once its replacement is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(in crate::actions) struct Retirement {
    /// Keep the snapshot and its encrypted copy.
    pub keep_snapshots: bool,
    /// When the original goes.
    pub delete: Delete,
}

/// When an original is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(in crate::actions) enum Delete {
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

impl Retirement {
    /// Reads `keep_snapshots`, `delete_originals` and `retire_originals_after`.
    pub(in crate::actions) fn from_args(
        args: &RetirementArgs,
    ) -> std::result::Result<Self, String> {
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
pub(in crate::actions) struct Retired {
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
pub(in crate::actions) fn retirement_steps(volume: &Volume, retirement: Retirement) -> Retired {
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
