//! Planning on the model, and the waits with mocked responses (the emulators complete
//! every snapshot and volume at once): a snapshot that is pending before it
//! completes, one that stays pending past the timeout, one that fails.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::calls::VolumeCalls;
use super::kind::{Artifact, Placed, REPLACED_BY_TAG, SOURCE_VOLUME_TAG, Volume, VolumeShape};
use super::plan::EncryptVolume;
use crate::actions::{Action, ActionPlan, Applied, Calls, Resource, ResourceKind};
use crate::error::{Error, Result};
use crate::inventory::SWAP_INSTANCE_TAG;
use crate::plan::{BlockReason, Change, ChangeKind};
use crate::template::KNOWN_AFTER_APPLY;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::operation::create_snapshot::CreateSnapshotOutput;
use aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput;
use aws_sdk_ec2::types::{Snapshot, SnapshotState};
use aws_smithy_mocks::{RuleMode, mock, mock_client};

use crate::plan::{ApiCall, ResourceRef};
use crate::runbook::model::OnFailure;

fn unattached() -> Volume {
    Volume {
        id: "vol-1".into(),
        availability_zone: "eu-west-1a".into(),
        size: 100,
        volume_type: "gp3".into(),
        iops: Some(4000),
        throughput: Some(250),
        encrypted: false,
        state: "available".into(),
        attached_to: Vec::new(),
        tags: BTreeMap::from([
            ("Name".to_string(), "data".to_string()),
            ("aws:cloudformation:stack-name".to_string(), "s".to_string()),
        ]),
        snapshot: None,
        copy: None,
        replacement: None,
        strays: Vec::new(),
        stray_volumes: Vec::new(),
    }
}

fn operations(plan: &ActionPlan) -> Vec<&str> {
    plan.changes
        .iter()
        .map(|c| c.call.operation.as_str())
        .collect()
}

#[test]
fn an_unattached_volume_is_copied_encrypted_with_its_shape_and_tags_and_kept() {
    let planned = EncryptVolume
        .plan(
            &Resource::Volume(Box::new(unattached())),
            &json!({"kms_key_id": "alias/aws/ebs"}),
        )
        .expect("plans");
    assert_eq!(
        operations(&planned),
        [
            "CreateSnapshot",
            "CopySnapshot",
            "CreateVolume",
            "CreateTags",
            "DeleteSnapshot",
            "DeleteSnapshot"
        ]
    );
    assert_eq!(
        planned.changes[2].call.input,
        json!({"AvailabilityZone": "eu-west-1a", "SnapshotId": KNOWN_AFTER_APPLY,
            "VolumeType": "gp3", "Size": 100, "Encrypted": true, "Iops": 4000, "Throughput": 250,
            "KmsKeyId": "alias/aws/ebs",
            "TagSpecifications": [{"ResourceType": "volume", "Tags": [
                {"Key": "Name", "Value": "data"},
                {"Key": SOURCE_VOLUME_TAG, "Value": "vol-1"}]}]}),
        "same zone, type, size, IOPS, throughput and tags; AWS's own tags left out"
    );
    assert_eq!(
        planned.changes[2].after["replacement"]["shape"],
        json!({"volume_type": "gp3", "size": 100, "iops": 4000, "throughput": 250,
               "tags": {"Name": "data", SOURCE_VOLUME_TAG: "vol-1"}}),
        "the read-back checks the new volume's shape and tags, not only that it exists"
    );
    for pair in planned.changes.windows(2) {
        assert_eq!(pair[0].after, pair[1].before);
    }
    assert!(
        !planned
            .changes
            .iter()
            .any(|c| c.call.operation == "DeleteVolume"),
        "the original is never deleted"
    );
    let Some(projected) = planned.projected else {
        panic!("projects")
    };
    assert_eq!(
        EncryptVolume.plan(&projected, &json!({})).expect("plans"),
        ActionPlan::default()
    );
    let kept = EncryptVolume
        .plan(
            &Resource::Volume(Box::new(unattached())),
            &json!({"keep_snapshots": true}),
        )
        .expect("plans");
    assert_eq!(
        operations(&kept),
        [
            "CreateSnapshot",
            "CopySnapshot",
            "CreateVolume",
            "CreateTags"
        ]
    );
}

#[test]
fn a_replacement_left_half_way_is_planned_from_where_it_stopped() {
    let mut volume = unattached();
    volume.snapshot = Some(Artifact {
        id: "snap-1".into(),
        state: "completed".into(),
        encrypted: false,
        shape: None,
        placed: None,
    });
    volume.copy = Some(Artifact {
        id: "snap-2".into(),
        state: "completed".into(),
        encrypted: true,
        shape: None,
        placed: None,
    });
    let planned = EncryptVolume
        .plan(&Resource::Volume(Box::new(volume.clone())), &json!({}))
        .expect("plans");
    assert_eq!(
        operations(&planned),
        [
            "CreateVolume",
            "CreateTags",
            "DeleteSnapshot",
            "DeleteSnapshot"
        ]
    );
    assert_eq!(planned.changes[0].call.input["SnapshotId"], "snap-2");
    volume.copy = Some(Artifact {
        id: "snap-2".into(),
        state: "completed".into(),
        encrypted: false,
        shape: None,
        placed: None,
    });
    let refused = EncryptVolume
        .plan(&Resource::Volume(Box::new(volume)), &json!({}))
        .expect("plans");
    assert_eq!(
        refused.blocked.map(|b| b.0),
        Some(BlockReason::Failing),
        "never build on an unencrypted copy"
    );
}

#[test]
fn attached_volumes_and_those_a_swap_detached_are_left_to_their_instance() {
    let mut volume = unattached();
    volume.attached_to = vec!["i-1".into()];
    volume.state = "in-use".into();
    let planned = EncryptVolume
        .plan(&Resource::Volume(Box::new(volume)), &json!({}))
        .expect("plans");
    assert_eq!(
        planned.blocked.map(|b| b.0),
        Some(BlockReason::NeedsDowntime)
    );
    assert!(planned.changes.is_empty());

    let mut detached = unattached();
    detached.replacement = Some(Artifact {
        id: "vol-2".into(),
        state: "available".into(),
        encrypted: true,
        shape: Some(Box::new(VolumeShape {
            volume_type: "gp3".into(),
            size: 100,
            iops: Some(4000),
            throughput: Some(250),
            tags: BTreeMap::from([(SWAP_INSTANCE_TAG.to_string(), "i-1".to_string())]),
        })),
        placed: None,
    });
    let planned = EncryptVolume
        .plan(&Resource::Volume(Box::new(detached)), &json!({}))
        .expect("plans");
    assert_eq!(
        planned.blocked.map(|b| b.0),
        Some(BlockReason::InUse),
        "an unfinished swap is its instance's to finish or undo, never retired from here"
    );
}

#[test]
fn delete_originals_deletes_the_original_last_and_keeps_its_encrypted_copy() {
    let planned = EncryptVolume
        .plan(
            &Resource::Volume(Box::new(unattached())),
            &json!({"delete_originals": true}),
        )
        .expect("plans");
    assert_eq!(
        operations(&planned),
        [
            "CreateSnapshot",
            "CopySnapshot",
            "CreateVolume",
            "CreateTags",
            "DeleteSnapshot",
            "DeleteVolume"
        ]
    );
    assert_eq!(
        planned.changes[4].before["snapshot"]["encrypted"], false,
        "the unencrypted snapshot is deleted: a copy of unencrypted data is a finding of its own"
    );
    assert_eq!(
        planned.changes[4].after["copy"]["encrypted"], true,
        "the encrypted copy is the way back"
    );
    assert_eq!(planned.changes[5].after, json!({"exists": false}));
}

fn retired(copy: bool, snapshot: bool) -> Volume {
    let artifact = |id: &str, encrypted: bool| Artifact {
        id: id.into(),
        state: "completed".into(),
        encrypted,
        shape: None,
        placed: None,
    };
    let mut volume = unattached();
    volume.tags.insert(REPLACED_BY_TAG.into(), "vol-new".into());
    volume.copy = copy.then(|| artifact("snap-copy", true));
    volume.snapshot = snapshot.then(|| artifact("snap-raw", false));
    volume
}

#[test]
fn a_second_replacement_volume_blocks_the_plan_naming_the_one_kept_and_the_other() {
    let volume_artifact = |id: &str| Artifact {
        id: id.into(),
        state: "available".into(),
        encrypted: true,
        shape: None,
        placed: None,
    };
    for mut volume in [unattached(), retired(true, true)] {
        volume.replacement = Some(volume_artifact("vol-new"));
        volume.stray_volumes = vec![volume_artifact("vol-twin")];
        let planned = EncryptVolume
            .plan(&Resource::Volume(Box::new(volume)), &json!({}))
            .expect("plans");
        let (reason, why) = planned.blocked.expect("blocked");
        assert_eq!(reason, BlockReason::Failing);
        assert!(planned.changes.is_empty(), "nothing is deleted or made");
        assert!(
            why.contains("(vol-twin, tagged harden:source-volume")
                && why.contains("beside vol-new, the one harden keeps"),
            "{why}"
        );
    }
}

#[test]
fn a_snapshot_made_twice_is_deleted_first_and_the_rest_builds_without_it() {
    let stray = |id: &str| Artifact {
        id: id.into(),
        state: "completed".into(),
        encrypted: false,
        shape: None,
        placed: None,
    };
    let mut volume = unattached();
    volume.snapshot = Some(stray("snap-a"));
    volume.strays = vec![stray("snap-b")];
    let planned = EncryptVolume
        .plan(&Resource::Volume(Box::new(volume)), &json!({}))
        .expect("plans");
    assert_eq!(
        planned.changes[0].call.input,
        json!({"SnapshotId": "snap-b"}),
        "the duplicate goes first"
    );
    assert_eq!(planned.changes[0].before["strays"], json!(["snap-b"]));
    assert!(planned.changes[0].after.get("strays").is_none());
    assert_eq!(
        operations(&planned)[1..],
        [
            "CopySnapshot",
            "CreateVolume",
            "CreateTags",
            "DeleteSnapshot",
            "DeleteSnapshot"
        ],
        "then the replacement from the snapshot it keeps"
    );
    for pair in planned.changes.windows(2) {
        assert_eq!(pair[0].after, pair[1].before, "one chain");
    }
    let mut done = retired(false, false);
    done.strays = vec![stray("snap-c")];
    assert_eq!(
        operations(
            &EncryptVolume
                .plan(&Resource::Volume(Box::new(done)), &json!({}))
                .expect("plans")
        ),
        ["DeleteSnapshot"],
        "a retired original's duplicates are leftovers too"
    );
}

#[test]
fn retire_originals_after_deletes_an_original_only_once_its_replacement_is_old_enough() {
    let plan = |volume: Volume, args: Value| {
        EncryptVolume
            .plan(&Resource::Volume(Box::new(volume)), &args)
            .expect("plans")
    };
    let after = json!({"retire_originals_after": "30d"});
    let fresh = plan(unattached(), after.clone());
    assert_eq!(
        operations(&fresh),
        [
            "CreateSnapshot",
            "CopySnapshot",
            "CreateVolume",
            "CreateTags",
            "DeleteSnapshot"
        ],
        "the unencrypted snapshot goes, the encrypted copy stays as the way back, the original stays for now"
    );
    assert_eq!(fresh.changes[4].before["snapshot"]["encrypted"], false);

    let placed = |days: u64| {
        let mut volume = retired(true, false);
        volume.replacement = Some(Artifact {
            id: "vol-new".into(),
            state: "available".into(),
            encrypted: true,
            shape: None,
            placed: Some(Placed {
                at: "2026-11-01T00:00:00Z".parse().expect("time"),
                age: std::time::Duration::from_secs(days * 86_400),
            }),
        });
        volume
    };
    let (reason, detail) = plan(placed(29), after.clone())
        .blocked
        .expect("not yet due");
    assert_eq!(reason, BlockReason::NotYetDue);
    assert!(
        detail.contains("due for deletion at 2026-12-01T00:00:00Z"),
        "the plan says when: {detail}"
    );
    let due = plan(placed(31), after.clone());
    assert_eq!(operations(&due), ["DeleteVolume"]);
    assert!(
        due.changes[0]
            .summary
            .contains("snap-copy is kept as the way back")
    );
    let mut gone = placed(31);
    gone.copy = None;
    assert_eq!(
        plan(gone, after.clone()),
        ActionPlan::default(),
        "without its encrypted copy an original is the only way back: kept"
    );
    for bad in [
        json!({"retire_originals_after": "soon"}),
        json!({"retire_originals_after": "30d", "delete_originals": true}),
    ] {
        assert!(
            EncryptVolume
                .plan(&Resource::Volume(Box::new(unattached())), &bad)
                .is_err()
        );
    }
}

#[test]
fn snapshots_a_run_left_after_retiring_the_original_are_planned_for_deletion() {
    let planned = |volume: Volume, args: Value| {
        EncryptVolume
            .plan(&Resource::Volume(Box::new(volume)), &args)
            .expect("plans")
    };
    let left = planned(retired(true, true), json!({}));
    assert_eq!(
        left.changes
            .iter()
            .map(|c| c.call.input["SnapshotId"].as_str().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["snap-copy", "snap-raw"],
        "a run killed after tagging the original leaves both: the next plan shows them"
    );
    assert_eq!(
        planned(retired(false, false), json!({})),
        ActionPlan::default(),
        "a retired original with nothing left is done"
    );
    assert_eq!(
        planned(retired(true, true), json!({"keep_snapshots": true})),
        ActionPlan::default(),
        "kept on purpose"
    );
    assert_eq!(
        operations(&planned(
            retired(false, false),
            json!({"delete_originals": true})
        )),
        Vec::<&str>::new(),
        "an original whose encrypted copy is gone is never deleted: it is the only way back"
    );
    assert_eq!(
        operations(&planned(
            retired(true, false),
            json!({"delete_originals": true})
        )),
        ["DeleteVolume"],
        "with its encrypted copy kept, a later delete_originals run deletes it"
    );
}

fn snapshot_change(timeout: u64) -> Change {
    Change {
        id: "t/eu-west-1/replace/vol-1#1".into(),
        runbook: "t".into(),
        account_id: "123456789012".into(),
        region: "eu-west-1".into(),
        step: "replace".into(),
        action: "ec2:encrypt-volume".into(),
        resource: ResourceRef {
            kind: ResourceKind::Volume,
            id: "vol-1".into(),
            tags: Default::default(),
        },
        kind: ChangeKind::Create,
        summary: "snapshot".into(),
        before: Value::Null,
        after: Value::Null,
        call: ApiCall {
            service: "ec2".into(),
            operation: "CreateSnapshot".into(),
            input: json!({"VolumeId": "vol-1", "TagSpecifications": []}),
        },
        on_failure: OnFailure::Stop,
        wait_timeout_seconds: Some(timeout),
        probe: None,
    }
}

fn described(state: SnapshotState) -> DescribeSnapshotsOutput {
    DescribeSnapshotsOutput::builder()
        .snapshots(
            Snapshot::builder()
                .snapshot_id("snap-1")
                .state(state)
                .build(),
        )
        .build()
}

async fn snapshot_with(states: Vec<SnapshotState>, timeout: u64) -> (Result<Applied>, usize) {
    let create = mock!(Client::create_snapshot).then_output(|| {
        CreateSnapshotOutput::builder()
            .snapshot_id("snap-1")
            .build()
    });
    let mut sequence = mock!(Client::describe_snapshots).sequence();
    for state in states {
        sequence = sequence.output(move || described(state.clone()));
    }
    let describe = sequence.repeatedly().build();
    let clock = crate::actions::test_support::tokio_time();
    let client = mock_client!(
        aws_sdk_ec2,
        RuleMode::MatchAny,
        [&create, &describe],
        move |c| c.time_source(clock.clone())
    );
    let aws = crate::aws::Aws::with_ec2_client(client);
    let clients = aws.region("eu-west-1");
    let result = VolumeCalls
        .apply(&clients, &snapshot_change(timeout), &Value::Null)
        .await;
    (result, describe.num_calls())
}

#[tokio::test(start_paused = true)]
async fn a_pending_snapshot_is_waited_for_until_it_completes() {
    let (result, polls) = snapshot_with(
        vec![
            SnapshotState::Pending,
            SnapshotState::Pending,
            SnapshotState::Completed,
        ],
        600,
    )
    .await;
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(polls, 3, "polled until completed");
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_pending_past_the_timeout_fails_the_change() {
    let (result, polls) = snapshot_with(vec![SnapshotState::Pending], 120).await;
    let Err(Error::Aws(f)) = result else {
        panic!("must fail, got {result:?}")
    };
    assert_eq!(f.code, "WaitTimeout");
    assert!(
        f.message.contains("snap-1") && f.message.contains("120 s"),
        "{}",
        f.message
    );
    assert!(polls >= 2, "polled with backoff before giving up: {polls}");
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_in_error_fails_the_change_without_waiting_out_the_timeout() {
    let (result, _) = snapshot_with(vec![SnapshotState::Pending, SnapshotState::Error], 3600).await;
    let Err(Error::Aws(f)) = result else {
        panic!("must fail, got {result:?}")
    };
    assert_eq!(f.code, "WaitFailed");
}
