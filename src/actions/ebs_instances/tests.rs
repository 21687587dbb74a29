//! Planning on the model, undoing from the states a swap can stop in, and the
//! waits and refusals with mocked responses (the emulators never leave a volume
//! detaching or refuse an attach).

use aws_sdk_ec2::Client;
use aws_sdk_ec2::operation::attach_volume::{AttachVolumeError, AttachVolumeOutput};
use aws_sdk_ec2::operation::create_tags::CreateTagsOutput;
use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
use aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput;
use aws_sdk_ec2::operation::detach_volume::DetachVolumeOutput;
use aws_sdk_ec2::operation::modify_instance_attribute::ModifyInstanceAttributeOutput;
use aws_sdk_ec2::operation::start_instances::StartInstancesOutput;
use aws_sdk_ec2::types::{
    Instance as Ec2Instance, InstanceState, InstanceStateName, Reservation, Volume as Ec2Volume,
    VolumeState,
};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use aws_smithy_types::error::ErrorMetadata;

use super::*;
use crate::inventory::{Artifact, REPLACED_BY_TAG};
use crate::plan::ResourceRef;
use crate::runbook::model::OnFailure;

fn volume(id: &str, size: i32) -> Volume {
    Volume {
        id: id.into(),
        availability_zone: "eu-west-1a".into(),
        size,
        volume_type: "gp3".into(),
        iops: Some(3000),
        throughput: Some(125),
        encrypted: false,
        state: "in-use".into(),
        attached_to: vec!["i-1".into()],
        tags: BTreeMap::from([("Name".to_string(), id.to_string())]),
        snapshot: None,
        copy: None,
        replacement: None,
        strays: Vec::new(),
        stray_volumes: Vec::new(),
    }
}

fn device(volume_id: &str, delete: bool) -> Device {
    Device {
        volume_id: volume_id.into(),
        delete_on_termination: delete,
        encrypted: false,
        replaces: None,
    }
}

/// A running instance: root vol-r (8 GiB, deleted with it) at /dev/xvda, data
/// vol-d (100 GiB, kept) at /dev/sdf.
fn web() -> Instance {
    Instance {
        id: "i-1".into(),
        state: "running".into(),
        availability_zone: "eu-west-1a".into(),
        tags: BTreeMap::new(),
        devices: BTreeMap::from([
            ("/dev/xvda".to_string(), device("vol-r", true)),
            ("/dev/sdf".to_string(), device("vol-d", false)),
        ]),
        unencrypted: BTreeMap::from([
            ("vol-d".to_string(), Some(volume("vol-d", 100))),
            ("vol-r".to_string(), Some(volume("vol-r", 8))),
        ]),
    }
}

fn operations(plan: &ActionPlan) -> Vec<&str> {
    plan.changes
        .iter()
        .map(|c| c.call.operation.as_str())
        .collect()
}

fn plan(instance: &Instance, args: Value) -> ActionPlan {
    EncryptInstanceVolumes
        .plan(&Resource::Instance(instance.clone()), &args)
        .expect("plans")
}

#[test]
fn a_running_instance_needs_allow_stop_and_the_block_says_what_the_downtime_covers() {
    let planned = plan(&web(), json!({}));
    assert!(planned.changes.is_empty());
    let (reason, detail) = planned.blocked.expect("blocked");
    assert_eq!(reason, BlockReason::NeedsDowntime);
    assert!(
        detail.contains("2 volume(s), 108 GiB")
            && detail.contains("/dev/sdf vol-d 100 GiB")
            && detail.contains("allow_stop"),
        "{detail}"
    );
}

#[test]
fn it_stops_once_before_the_snapshots_and_starts_after_the_devices_are_swapped() {
    let planned = plan(
        &web(),
        json!({"allow_stop": true, "kms_key_id": "alias/aws/ebs"}),
    );
    assert_eq!(
        operations(&planned),
        [
            "CreateTags",
            "StopInstances",
            // vol-d then vol-r (id order): snapshot, encrypted copy, new volume.
            "CreateSnapshot",
            "CopySnapshot",
            "CreateVolume",
            "CreateSnapshot",
            "CopySnapshot",
            "CreateVolume",
            // Device order.
            "DetachVolume",
            "AttachVolume",
            "DetachVolume",
            "AttachVolume",
            "ModifyInstanceAttribute",
            "StartInstances",
            "DeleteTags",
            "CreateTags",
            "DeleteSnapshot",
            "DeleteSnapshot",
            "CreateTags",
            "DeleteSnapshot",
            "DeleteSnapshot",
        ]
    );
    assert_eq!(
        planned.changes[0].call.input,
        json!({"Resources": ["i-1"], "Tags": [{"Key": WAS_RUNNING_TAG, "Value": RUN_ID}]}),
        "before it is stopped, the instance says it was running"
    );
    assert_eq!(planned.changes[0].after["was_running"], true);
    assert_eq!(
        planned.changes[14].call.input,
        json!({"Resources": ["i-1"], "Tags": [{"Key": WAS_RUNNING_TAG}]}),
        "and once started again, no longer"
    );
    assert!(
        planned.changes[1].summary.contains("2 volume(s), 108 GiB"),
        "the plan states the downtime: {}",
        planned.changes[1].summary
    );
    assert_eq!(
        planned.changes[8].call.input,
        json!({"VolumeId": "vol-d", "InstanceId": "i-1", "Device": "/dev/sdf"}),
        "detached with InstanceId and Device"
    );
    assert_eq!(
        planned.changes[9].call.input,
        json!({"VolumeId": KNOWN_AFTER_APPLY, "InstanceId": "i-1", "Device": "/dev/sdf"})
    );
    assert_eq!(
        planned.changes[9].after["devices"]["/dev/sdf"],
        json!({"volume_id": KNOWN_AFTER_APPLY, "delete_on_termination": false,
               "encrypted": true, "replaces": "vol-d"}),
        "the read-back checks the device maps to an encrypted copy of the original"
    );
    assert_eq!(
        planned.changes[12].call.input,
        json!({"InstanceId": "i-1", "BlockDeviceMappings": [
            {"DeviceName": "/dev/xvda", "Ebs": {"DeleteOnTermination": true}}]}),
        "DeleteOnTermination restored where the original had it, only there"
    );
    let tags = &planned.changes[4].call.input["TagSpecifications"][0]["Tags"];
    assert_eq!(
        tags,
        &json!([
            {"Key": "Name", "Value": "vol-d"},
            {"Key": SOURCE_VOLUME_TAG, "Value": "vol-d"},
            {"Key": SWAP_INSTANCE_TAG, "Value": "i-1"},
            {"Key": SWAP_DEVICE_TAG, "Value": "/dev/sdf"},
            {"Key": SWAP_DELETE_ON_TERMINATION_TAG, "Value": "false"}
        ]),
        "the original's tags, and where the copy goes"
    );
    for pair in planned.changes.windows(2) {
        assert_eq!(pair[0].after, pair[1].before, "one chain");
    }
    assert!(!operations(&planned).contains(&"DeleteVolume"));
    let Some(projected) = planned.projected else {
        panic!("projects")
    };
    assert_eq!(
        EncryptInstanceVolumes
            .plan(&projected, &json!({"allow_stop": true}))
            .expect("plans"),
        ActionPlan::default(),
        "what apply leaves needs nothing more"
    );
}

#[test]
fn a_stopped_instance_is_neither_stopped_nor_started() {
    let mut stopped = web();
    stopped.state = "stopped".into();
    let running = plan(&web(), json!({"allow_stop": true}));
    let without_stop_and_start: Vec<&str> = running
        .changes
        .iter()
        .filter(|c| {
            !c.call.operation.ends_with("Instances") && c.call.input["Resources"][0] != "i-1"
        })
        .map(|c| c.call.operation.as_str())
        .collect();
    assert_eq!(
        operations(&plan(&stopped, json!({}))),
        without_stop_and_start,
        "the same swap, without allow_stop, and the instance left stopped"
    );
    let mut shared = stopped.clone();
    if let Some(Some(data)) = shared.unencrypted.get_mut("vol-d") {
        data.attached_to.push("i-2".into());
    }
    assert_eq!(
        plan(&shared, json!({})).blocked.map(|b| b.0),
        Some(BlockReason::InUse),
        "a Multi-Attach volume is never swapped under one of its instances"
    );
    let mut busy = web();
    busy.state = "stopping".into();
    assert_eq!(
        plan(&busy, json!({"allow_stop": true}))
            .blocked
            .map(|b| b.0),
        Some(BlockReason::Transitional)
    );
}

fn replacement(id: &str, source: &str, device: &str, delete: bool) -> Artifact {
    Artifact {
        id: id.into(),
        state: "available".into(),
        encrypted: true,
        shape: Some(Box::new(crate::inventory::VolumeShape {
            volume_type: "gp3".into(),
            size: 8,
            iops: Some(3000),
            throughput: Some(125),
            tags: BTreeMap::from([
                (SOURCE_VOLUME_TAG.to_string(), source.to_string()),
                (SWAP_INSTANCE_TAG.to_string(), "i-1".to_string()),
                (SWAP_DEVICE_TAG.to_string(), device.to_string()),
                (
                    SWAP_DELETE_ON_TERMINATION_TAG.to_string(),
                    delete.to_string(),
                ),
            ]),
        })),
        placed: None,
    }
}

/// The state a process killed after detaching vol-d leaves: the root already on
/// its copy (DeleteOnTermination not yet restored), /dev/sdf empty, vol-d
/// available with its copy beside it, the instance stopped.
fn half_swapped() -> Instance {
    let mut instance = web();
    instance.state = "stopped".into();
    instance.devices = BTreeMap::from([(
        "/dev/xvda".to_string(),
        Device {
            volume_id: "vol-r2".into(),
            delete_on_termination: false,
            encrypted: true,
            replaces: Some("vol-r".into()),
        },
    )]);
    for (id, copy, device, delete) in [
        ("vol-d", "vol-d2", "/dev/sdf", false),
        ("vol-r", "vol-r2", "/dev/xvda", true),
    ] {
        let mut original = volume(id, 8);
        original.state = "available".into();
        original.attached_to.clear();
        original.replacement = Some(replacement(copy, id, device, delete));
        instance.unencrypted.insert(id.into(), Some(original));
    }
    instance
}

#[test]
fn a_swap_left_half_way_is_planned_from_where_it_stopped() {
    let planned = plan(&half_swapped(), json!({}));
    assert_eq!(
        operations(&planned),
        [
            "AttachVolume",
            "ModifyInstanceAttribute",
            "CreateTags",
            "CreateTags"
        ],
        "the device and DeleteOnTermination read from the copy's tags"
    );
    assert_eq!(
        planned.changes[0].call.input,
        json!({"VolumeId": "vol-d2", "InstanceId": "i-1", "Device": "/dev/sdf"})
    );
}

#[test]
fn copies_an_undone_swap_left_are_never_built_on() {
    let mut instance = web();
    if let Some(Some(root)) = instance.unencrypted.get_mut("vol-r") {
        let mut copy = replacement("vol-r2", "vol-r", "/dev/xvda", true);
        if let Some(shape) = copy.shape.as_mut() {
            shape
                .tags
                .insert(ROLLED_BACK_TAG.into(), "i-1#9 failed".into());
        }
        root.replacement = Some(copy);
    }
    let (reason, detail) = plan(&instance, json!({"allow_stop": true}))
        .blocked
        .expect("blocked");
    assert_eq!(reason, BlockReason::Failing);
    assert!(detail.contains("vol-r2"), "{detail}");
}

#[test]
fn delete_originals_deletes_them_after_the_instance_runs_on_the_copies() {
    let planned = plan(
        &web(),
        json!({"allow_stop": true, "delete_originals": true}),
    );
    let ops = operations(&planned);
    let started = ops.iter().position(|o| *o == "StartInstances");
    let deletes: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, o)| **o == "DeleteVolume")
        .map(|(i, _)| i)
        .collect();
    assert_eq!(deletes.len(), 2);
    assert!(deletes.iter().all(|d| Some(*d) > started));
    let deleted: Vec<&crate::actions::ChangeDraft> = planned
        .changes
        .iter()
        .filter(|c| c.call.operation == "DeleteSnapshot")
        .collect();
    assert_eq!(deleted.len(), 2);
    assert!(
        deleted
            .iter()
            .all(|c| c.summary.contains("unencrypted snapshot")),
        "the unencrypted snapshots go, the encrypted copies stay as the way back"
    );
}

/// A swap finished and its originals retired, the instance stopped.
fn retired() -> Instance {
    let mut finished = half_swapped();
    finished.devices.insert(
        "/dev/sdf".into(),
        Device {
            volume_id: "vol-d2".into(),
            delete_on_termination: false,
            encrypted: true,
            replaces: Some("vol-d".into()),
        },
    );
    if let Some(root) = finished.devices.get_mut("/dev/xvda") {
        root.delete_on_termination = true;
    }
    for original in finished.unencrypted.values_mut().flatten() {
        original.tags.insert(REPLACED_BY_TAG.into(), "vol-x".into());
    }
    finished
}

#[test]
fn an_instance_a_dead_run_stopped_is_started_again_and_one_a_person_stopped_is_not() {
    let finished = retired();
    assert_eq!(
        plan(&finished, json!({})),
        ActionPlan::default(),
        "stopped without the tag: a person stopped it, it stays stopped"
    );
    let mut marked = finished.clone();
    marked.tags.insert(WAS_RUNNING_TAG.into(), "run-1".into());
    let planned = plan(&marked, json!({}));
    assert_eq!(operations(&planned), ["StartInstances", "DeleteTags"]);
    assert!(
        planned.changes[0]
            .summary
            .contains("an earlier harden run stopped it")
    );
    marked.state = "running".into();
    assert_eq!(
        operations(&plan(&marked, json!({}))),
        ["DeleteTags"],
        "started but killed before the tag went"
    );
    let mut mid_swap = half_swapped();
    mid_swap.tags.insert(WAS_RUNNING_TAG.into(), "run-1".into());
    assert_eq!(
        operations(&plan(&mid_swap, json!({}))),
        [
            "AttachVolume",
            "ModifyInstanceAttribute",
            "StartInstances",
            "DeleteTags",
            "CreateTags",
            "CreateTags"
        ],
        "a swap a killed run left half-way is finished and the instance started, without allow_stop: it was stopped by harden"
    );
    assert_eq!(
        undo_steps(&start_of(&mid_swap), &mid_swap).last(),
        Some(&Undo::Unmark),
        "undoing it leaves it running and untagged"
    );
    assert!(undo_steps(&start_of(&mid_swap), &mid_swap).contains(&Undo::Start));
}

#[test]
fn snapshots_left_behind_a_retired_original_are_deleted_by_the_next_plan() {
    let mut done = retired();
    done.state = "running".into();
    if let Some(Some(d)) = done.unencrypted.get_mut("vol-d") {
        d.snapshot = Some(Artifact {
            id: "snap-left".into(),
            state: "completed".into(),
            encrypted: false,
            shape: None,
            placed: None,
        });
    }
    let planned = plan(&done, json!({}));
    assert_eq!(operations(&planned), ["DeleteSnapshot"]);
    assert_eq!(
        planned.changes[0].call.input,
        json!({"SnapshotId": "snap-left"})
    );
}

fn start_of(instance: &Instance) -> Start {
    Start::from_state(&state(instance)).expect("a start state")
}

#[test]
fn undoing_puts_every_original_back_at_its_device_and_restarts_the_instance() {
    assert_eq!(
        undo_steps(&start_of(&web()), &half_swapped()),
        [
            Undo::Attach {
                volume: "vol-d".into(),
                device: "/dev/sdf".into()
            },
            Undo::Detach {
                volume: "vol-r2".into(),
                device: "/dev/xvda".into()
            },
            Undo::Attach {
                volume: "vol-r".into(),
                device: "/dev/xvda".into()
            },
            Undo::DeleteOnTermination(vec![("/dev/xvda".into(), true)]),
            Undo::Start,
        ]
    );
    let mut stopped_only = web();
    stopped_only.state = "stopped".into();
    assert_eq!(
        undo_steps(&start_of(&web()), &stopped_only),
        [Undo::Start],
        "a failure before any detach only needs the instance started"
    );
}

/// The state a finished swap of [`web`] leaves: running on vol-r2 and vol-d2 with
/// the originals' DeleteOnTermination, the originals tagged replaced-by, the
/// intermediate snapshots deleted.
fn swapped() -> Instance {
    let mut done = half_swapped();
    done.state = "running".into();
    done.devices = BTreeMap::from([
        (
            "/dev/xvda".to_string(),
            Device {
                volume_id: "vol-r2".into(),
                delete_on_termination: true,
                encrypted: true,
                replaces: Some("vol-r".into()),
            },
        ),
        (
            "/dev/sdf".to_string(),
            Device {
                volume_id: "vol-d2".into(),
                delete_on_termination: false,
                encrypted: true,
                replaces: Some("vol-d".into()),
            },
        ),
    ]);
    for volume in done.unencrypted.values_mut().flatten() {
        let replacement = volume.replacement.as_mut().expect("a replacement");
        replacement.state = "in-use".into();
        volume
            .tags
            .insert(REPLACED_BY_TAG.into(), replacement.id.clone());
    }
    done
}

/// The run that swapped [`web`] as audited: its first before and its last after.
fn rolled_back(before: &Instance, after: &Instance) -> Result<Vec<Inverse>, String> {
    let call = ApiCall {
        service: "ec2".into(),
        operation: "StopInstances".into(),
        input: json!({}),
    };
    let (before, after) = (state(before), state(after));
    let made = [
        RecordedChange {
            call: &call,
            before: &before,
            after: &before,
        },
        RecordedChange {
            call: &call,
            before: &before,
            after: &after,
        },
    ];
    rollback::inverse_chain("run-1", "i-1", &made)
}

#[test]
fn a_rollback_stops_the_instance_once_puts_every_original_back_and_keeps_the_copies() {
    let undo = rolled_back(&web(), &swapped()).expect("a way back");
    let calls: Vec<(&str, &Value)> = undo
        .iter()
        .map(|i| (i.operation.as_str(), &i.input))
        .collect();
    let on = |operation, input| (operation, input);
    assert_eq!(
        calls,
        [
            on(
                "CreateTags",
                &json!({"Resources": ["i-1"], "Tags": [{"Key": WAS_RUNNING_TAG, "Value": RUN_ID}]})
            ),
            on("StopInstances", &json!({"InstanceIds": ["i-1"]})),
            on(
                "DetachVolume",
                &json!({"VolumeId": "vol-d2", "InstanceId": "i-1", "Device": "/dev/sdf"})
            ),
            on(
                "AttachVolume",
                &json!({"VolumeId": "vol-d", "InstanceId": "i-1", "Device": "/dev/sdf"})
            ),
            on(
                "DetachVolume",
                &json!({"VolumeId": "vol-r2", "InstanceId": "i-1", "Device": "/dev/xvda"})
            ),
            on(
                "AttachVolume",
                &json!({"VolumeId": "vol-r", "InstanceId": "i-1", "Device": "/dev/xvda"})
            ),
            on(
                "ModifyInstanceAttribute",
                &json!({"InstanceId": "i-1", "BlockDeviceMappings": [
                {"DeviceName": "/dev/xvda", "Ebs": {"DeleteOnTermination": true}}]})
            ),
            on("StartInstances", &json!({"InstanceIds": ["i-1"]})),
            on(
                "DeleteTags",
                &json!({"Resources": ["i-1"], "Tags": [{"Key": WAS_RUNNING_TAG}]})
            ),
            on(
                "DeleteTags",
                &json!({"Resources": ["vol-d", "vol-r"], "Tags": [{"Key": REPLACED_BY_TAG}]})
            ),
            on(
                "CreateTags",
                &json!({"Resources": ["vol-d2", "vol-r2"], "Tags": [
                {"Key": ROLLED_BACK_TAG, "Value": "rollback of run-1"}]})
            ),
        ]
    );
    // It ends as the instance was, with the copies beside the originals, detached
    // and tagged: exactly what reading it back must show.
    let mut expected = web();
    for (id, volume) in &mut expected.unencrypted {
        let swapped = swapped();
        let mut replacement = swapped.unencrypted[id]
            .as_ref()
            .and_then(|v| v.replacement.clone())
            .expect("a replacement");
        replacement.state = "available".into();
        if let Some(shape) = replacement.shape.as_mut() {
            shape
                .tags
                .insert(ROLLED_BACK_TAG.into(), "rollback of run-1".into());
        }
        if let Some(volume) = volume {
            volume.replacement = Some(replacement);
        }
    }
    assert_eq!(undo.last().map(|i| &i.after), Some(&state(&expected)));
    // Each step's state follows from the one before: the instance stays stopped
    // from the stop to the start.
    let states: Vec<&str> = undo
        .iter()
        .map(|i| i.after["state"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(states[0], "running");
    assert!(states[1..7].iter().all(|s| *s == "stopped"), "{states:?}");
    assert_eq!(states[7..], ["running"; 4]);
    // And a later plan refuses to build on the copies kept.
    let blocked = plan(&expected, json!({"allow_stop": true}))
        .blocked
        .expect("blocked");
    assert_eq!(blocked.0, BlockReason::Failing);
    assert!(
        blocked.1.contains("was undone (rollback of run-1)"),
        "{}",
        blocked.1
    );
}

#[test]
fn a_rollback_cut_short_after_the_originals_are_back_is_refused_by_the_next_plan() {
    // Swapped back but still tagged replaced-by: it must not read as retired.
    let mut back = web();
    for (id, volume) in &mut back.unencrypted {
        if let Some(volume) = volume {
            volume.tags.insert(REPLACED_BY_TAG.into(), format!("{id}2"));
        }
    }
    let blocked = plan(&back, json!({"allow_stop": true}))
        .blocked
        .expect("blocked");
    assert_eq!(blocked.0, BlockReason::Failing);
    assert!(blocked.1.contains("attached to i-1 again"), "{}", blocked.1);
}

#[test]
fn a_second_replacement_volume_blocks_the_instance_naming_it_whether_swapped_or_not() {
    let second = |mut instance: Instance| {
        if let Some(Some(volume)) = instance.unencrypted.get_mut("vol-d") {
            let mut other = volume.replacement.clone().unwrap_or_else(|| Artifact {
                id: String::new(),
                state: String::new(),
                encrypted: true,
                shape: None,
                placed: None,
            });
            other.id = "vol-d3".into();
            other.state = "available".into();
            volume.stray_volumes = vec![other];
        }
        plan(&instance, json!({"allow_stop": true}))
            .blocked
            .expect("blocked")
    };
    for (what, instance) in [("pending", web()), ("swapped", swapped())] {
        let blocked = second(instance);
        assert_eq!(blocked.0, BlockReason::Failing, "{what}");
        assert!(
            blocked
                .1
                .contains("a second replacement volume of vol-d exists (vol-d3"),
            "{what}: {}",
            blocked.1
        );
    }
}

#[test]
fn a_rollback_cannot_bring_back_an_original_the_run_deleted() {
    let mut gone = swapped();
    gone.unencrypted.insert("vol-d".into(), None);
    let mut before = web();
    if let Some(Some(volume)) = before.unencrypted.get_mut("vol-d") {
        volume.copy = Some(Artifact {
            id: "snap-dc".into(),
            state: "completed".into(),
            encrypted: true,
            shape: None,
            placed: None,
        });
    }
    let why = rolled_back(&before, &gone).expect_err("no way back");
    assert!(why.contains("deleted the original vol-d"), "{why}");
    assert!(why.contains("snap-dc"), "{why}");
}

#[test]
fn a_finished_swap_is_not_undone() {
    let mut done = half_swapped();
    done.state = "running".into();
    done.devices.insert(
        "/dev/sdf".into(),
        Device {
            volume_id: "vol-d2".into(),
            delete_on_termination: false,
            encrypted: true,
            replaces: Some("vol-d".into()),
        },
    );
    if let Some(root) = done.devices.get_mut("/dev/xvda") {
        root.delete_on_termination = true;
    }
    assert_eq!(
        undo_steps(&start_of(&web()), &done),
        Vec::new(),
        "only its clean-up failed: the instance runs on its copies"
    );
}

fn change(operation: &str, input: Value, timeout: u64) -> Change {
    Change {
        id: "t/eu-west-1/swap/i-1#8".into(),
        runbook: "t".into(),
        account_id: "123456789012".into(),
        region: "eu-west-1".into(),
        step: "swap".into(),
        action: "ec2:encrypt-instance-volumes".into(),
        resource: ResourceRef {
            kind: ResourceKind::Instance,
            id: "i-1".into(),
            tags: Default::default(),
        },
        kind: ChangeKind::Update,
        summary: String::new(),
        before: Value::Null,
        after: Value::Null,
        call: ApiCall {
            service: "ec2".into(),
            operation: operation.into(),
            input,
        },
        on_failure: OnFailure::Stop,
        wait_timeout_seconds: Some(timeout),
        probe: None,
    }
}

fn volume_in(id: &str, state: VolumeState) -> DescribeVolumesOutput {
    DescribeVolumesOutput::builder()
        .volumes(Ec2Volume::builder().volume_id(id).state(state).build())
        .build()
}

fn clients_for(rules: &[&aws_smithy_mocks::Rule]) -> RegionClients {
    let clock = crate::actions::test_support::tokio_time();
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, rules, move |c| c
        .time_source(clock.clone()));
    crate::aws::Aws::with_ec2_client(client).region("eu-west-1")
}

#[tokio::test(start_paused = true)]
async fn a_detach_that_stays_busy_fails_the_change_at_its_timeout() {
    let detach = mock!(Client::detach_volume)
        .match_requests(|r| {
            r.volume_id() == Some("vol-d")
                && r.instance_id() == Some("i-1")
                && r.device() == Some("/dev/sdf")
        })
        .then_output(|| DetachVolumeOutput::builder().build());
    let describe =
        mock!(Client::describe_volumes).then_output(|| volume_in("vol-d", VolumeState::InUse));
    let clients = clients_for(&[&detach, &describe]);
    let result = InstanceCalls
        .apply(
            &clients,
            &change(
                "DetachVolume",
                json!({"VolumeId": "vol-d", "InstanceId": "i-1", "Device": "/dev/sdf"}),
                300,
            ),
            &Value::Null,
        )
        .await;
    let Err(Error::Aws(f)) = result else {
        panic!("must fail, got {result:?}")
    };
    assert_eq!(f.code, "WaitTimeout");
    assert!(f.message.contains("300 s"), "{}", f.message);
    assert_eq!(detach.num_calls(), 1, "detached with InstanceId and Device");
    assert!(describe.num_calls() >= 2, "polled before giving up");
}

#[tokio::test(start_paused = true)]
async fn a_refused_attach_fails_the_change_with_the_services_reason() {
    let attach = mock!(Client::attach_volume).then_error(|| {
        AttachVolumeError::generic(
            ErrorMetadata::builder()
                .code("IncorrectState")
                .message("vol-d2 is not available")
                .build(),
        )
    });
    let clients = clients_for(&[&attach]);
    let current = state(&half_swapped());
    let result = InstanceCalls
        .apply(
            &clients,
            &change(
                "AttachVolume",
                json!({"VolumeId": KNOWN_AFTER_APPLY, "InstanceId": "i-1", "Device": "/dev/sdf"}),
                300,
            ),
            &current,
        )
        .await;
    let Err(Error::Aws(f)) = result else {
        panic!("must fail, got {result:?}")
    };
    assert_eq!(f.code, "IncorrectState");
    assert_eq!(attach.num_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn undoing_waits_for_each_volume_and_the_instance_and_tags_the_copies() {
    let detach = mock!(Client::detach_volume)
        .match_requests(|r| r.volume_id() == Some("vol-r2") && r.device() == Some("/dev/xvda"))
        .then_output(|| DetachVolumeOutput::builder().build());
    let attach_root = mock!(Client::attach_volume)
        .match_requests(|r| r.volume_id() == Some("vol-r") && r.device() == Some("/dev/xvda"))
        .then_output(|| AttachVolumeOutput::builder().build());
    let attach_data = mock!(Client::attach_volume)
        .match_requests(|r| r.volume_id() == Some("vol-d") && r.device() == Some("/dev/sdf"))
        .then_output(|| AttachVolumeOutput::builder().build());
    // Each volume is still changing at the first poll.
    let volumes = mock!(Client::describe_volumes)
        .sequence()
        .output(|| volume_in("vol-d", VolumeState::Available))
        .output(|| volume_in("vol-d", VolumeState::InUse))
        .output(|| volume_in("vol-r2", VolumeState::InUse))
        .output(|| volume_in("vol-r2", VolumeState::Available))
        .output(|| volume_in("vol-r", VolumeState::Available))
        .output(|| volume_in("vol-r", VolumeState::InUse))
        .build();
    let flags = mock!(Client::modify_instance_attribute)
        .match_requests(|r| {
            r.block_device_mappings().len() == 1
                && r.block_device_mappings()[0].device_name() == Some("/dev/xvda")
                && r.block_device_mappings()[0]
                    .ebs()
                    .and_then(|e| e.delete_on_termination())
                    == Some(true)
        })
        .then_output(|| ModifyInstanceAttributeOutput::builder().build());
    let start_call =
        mock!(Client::start_instances).then_output(|| StartInstancesOutput::builder().build());
    let instance_in = |name: InstanceStateName| {
        DescribeInstancesOutput::builder()
            .reservations(
                Reservation::builder()
                    .instances(
                        Ec2Instance::builder()
                            .instance_id("i-1")
                            .state(InstanceState::builder().name(name).build())
                            .build(),
                    )
                    .build(),
            )
            .build()
    };
    let instances = mock!(Client::describe_instances)
        .sequence()
        .output(move || instance_in(InstanceStateName::Pending))
        .output(move || instance_in(InstanceStateName::Running))
        .build();
    let tags = mock!(Client::create_tags)
        .match_requests(|r| {
            r.resources() == ["vol-d2", "vol-r2"]
                && r.tags()[0].key() == Some(ROLLED_BACK_TAG)
                && r.tags()[0].value() == Some("i-1#11 failed: IncorrectState")
        })
        .then_output(|| CreateTagsOutput::builder().build());
    let clients = clients_for(&[
        &detach,
        &attach_root,
        &attach_data,
        &volumes,
        &flags,
        &start_call,
        &instances,
        &tags,
    ]);
    let now = half_swapped();
    let mut done = Compensation::default();
    undo(
        &clients,
        "i-1",
        &undo_steps(&start_of(&web()), &now),
        &now,
        "i-1#11 failed: IncorrectState",
        &mut done,
    )
    .await
    .expect("undone");
    assert_eq!(
        done.calls
            .iter()
            .map(|c| c.operation.as_str())
            .collect::<Vec<_>>(),
        [
            "AttachVolume",
            "DetachVolume",
            "AttachVolume",
            "ModifyInstanceAttribute",
            "StartInstances",
            "CreateTags"
        ],
        "device order: /dev/sdf, then /dev/xvda"
    );
    for (rule, calls) in [
        (&detach, 1),
        (&attach_root, 1),
        (&attach_data, 1),
        (&volumes, 6),
        (&flags, 1),
        (&start_call, 1),
        (&instances, 2),
        (&tags, 1),
    ] {
        assert_eq!(rule.num_calls(), calls);
    }
}
