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

mod calls;
mod compensate;
mod kind;
mod plan;
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
    RecordedChange, ec2_tags, typed_call,
};
use crate::actions::{Resource, ResourceKind};
use crate::aws::RegionClients;
use crate::error::{AwsFailure, Error, Result};
use crate::event::KnownEvent;
use crate::inventory::{Filters, Kind, Narrowing, REPLACED_BY_TAG, SOURCE_VOLUME_TAG, Volume};
use crate::plan::{ApiCall, BlockReason, Change, ChangeKind, Probe};
use crate::template::{KNOWN_AFTER_APPLY, RUN_ID};

pub use calls::InstanceCalls;
use calls::*;
use compensate::*;
use kind::*;
pub use kind::{
    Device, Instance, ROLLED_BACK_TAG, SWAP_DELETE_ON_TERMINATION_TAG, SWAP_DEVICE_TAG,
    SWAP_INSTANCE_TAG, WAS_RUNNING_TAG,
};
use plan::*;
pub use plan::{EncryptInstanceVolumes, InstanceArgs};

#[cfg(test)]
mod tests;
