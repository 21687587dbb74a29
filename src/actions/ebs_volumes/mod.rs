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
//!
//! `kind` is the volume (with what harden made for it) as a resource, `read` listing
//! volumes and finding the snapshots and copies harden made, `plan` the action and the
//! replacement's steps, `retire` what becomes of the original and when, `calls` the typed
//! calls and their bounded waits, `rollback` undoing a run's replacements.

mod calls;
mod kind;
mod plan;
mod read;
mod retire;
mod rollback;
#[cfg(test)]
mod tests;

pub(crate) use calls::VOLUME_RIGHTS;
pub use calls::{DEFAULT_WAIT_SECONDS, VolumeCalls};
pub(super) use calls::{VolumeCall, call, wait_failure, wait_limit};
pub use kind::{
    Artifact, Placed, REPLACED_BY_TAG, RUN_ID_TAG, SOURCE_VOLUME_TAG, Volume, VolumeShape,
};
pub use plan::{EncryptVolume, VolumeArgs};
pub(super) use plan::{
    VolumeStep, artifact_problem, replacement_steps, second_replacement, state, stray_steps, undone,
};
pub(super) use read::{describe_volumes, filter, find_artifacts, list_volumes};
pub use retire::RetirementArgs;
pub(super) use retire::{Retired, Retirement, retirement_steps};
