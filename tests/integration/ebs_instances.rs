//! Replacing the unencrypted volumes of instances (FSBP EC2.3) against moto and
//! LocalStack: a running instance with an unencrypted root and data volume, a stopped
//! one, an exempt one; the plan per instance, what `allow_stop` changes, and the state
//! after apply read through the SDK (devices, DeleteOnTermination, tags, instance
//! state, originals kept). Then a swap that fails part-way, and the compensation that
//! puts the instance back.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Placement, ResourceType, Tag, TagSpecification, VolumeType};
use serde_json::Value;

use crate::support::{Emulator, Kind, block_on, harden_snapshots, run};

const RUNBOOK: &str = "runbooks/encrypt-ebs-volumes.yaml";
const REGION: &str = "eu-west-1";
const ZONE: &str = "eu-west-1a";

/// Launches an instance (its root volume at /dev/sda1, deleted with the instance) and
/// attaches a 5 GiB gp3 data volume at /dev/sdf (kept), both unencrypted. The data
/// volume is attached rather than given in the launch's block device mappings, which
/// LocalStack makes encrypted whatever they say.
pub(crate) async fn launch(ec2: &aws_sdk_ec2::Client, tags: &[(&str, &str)]) -> String {
    let image = ec2
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .expect("images")
        .images()
        .first()
        .and_then(|i| i.image_id())
        .expect("an AMI")
        .to_string();
    let instance = ec2
        .run_instances()
        .image_id(image)
        .min_count(1)
        .max_count(1)
        .placement(Placement::builder().availability_zone(ZONE).build())
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .set_tags(Some(
                    tags.iter()
                        .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                        .collect(),
                ))
                .build(),
        )
        .send()
        .await
        .expect("instance")
        .instances()
        .first()
        .and_then(|i| i.instance_id())
        .expect("id")
        .to_string();
    let data = ec2
        .create_volume()
        .availability_zone(ZONE)
        .size(5)
        .volume_type(VolumeType::Gp3)
        .encrypted(false)
        .send()
        .await
        .expect("data volume")
        .volume_id()
        .expect("id")
        .to_string();
    ec2.attach_volume()
        .volume_id(data)
        .instance_id(&instance)
        .device("/dev/sdf")
        .send()
        .await
        .expect("attach");
    let (_, devices) = layout(ec2, &instance).await;
    assert_eq!(
        devices
            .iter()
            .map(|d| (d.0.as_str(), d.2))
            .collect::<Vec<_>>(),
        [("/dev/sda1", true), ("/dev/sdf", false)],
        "the root goes with the instance, the data volume stays"
    );
    instance
}

/// Tags the volumes of an instance (the tags a replacement must carry over).
pub(crate) async fn tag_volumes(ec2: &aws_sdk_ec2::Client, instance: &str, team: &str) {
    for (device, volume, _) in layout(ec2, instance).await.1 {
        ec2.create_tags()
            .resources(volume)
            .tags(Tag::builder().key("team").value(team).build())
            .tags(Tag::builder().key("Name").value(device).build())
            .send()
            .await
            .expect("tag");
    }
}

/// An instance's state and its devices: name, volume id, DeleteOnTermination.
pub(crate) async fn layout(
    ec2: &aws_sdk_ec2::Client,
    instance: &str,
) -> (String, Vec<(String, String, bool)>) {
    let out = ec2
        .describe_instances()
        .instance_ids(instance)
        .send()
        .await
        .expect("describe");
    let found = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .next()
        .expect("the instance");
    let mut devices: Vec<(String, String, bool)> = found
        .block_device_mappings()
        .iter()
        .map(|m| {
            let ebs = m.ebs().expect("EBS");
            (
                m.device_name().unwrap_or_default().to_string(),
                ebs.volume_id().unwrap_or_default().to_string(),
                ebs.delete_on_termination().unwrap_or(false),
            )
        })
        .collect();
    devices.sort();
    (
        found
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        devices,
    )
}

/// Every volume: id to (encrypted, state, type, size, tags).
pub(crate) async fn volumes(
    ec2: &aws_sdk_ec2::Client,
) -> BTreeMap<String, (bool, String, String, i32, BTreeMap<String, String>)> {
    ec2.describe_volumes()
        .send()
        .await
        .expect("volumes")
        .volumes()
        .iter()
        .map(|v| {
            (
                v.volume_id().unwrap_or_default().to_string(),
                (
                    v.encrypted().unwrap_or(false),
                    v.state()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    v.volume_type()
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default(),
                    v.size().unwrap_or_default(),
                    v.tags()
                        .iter()
                        .map(|t| {
                            (
                                t.key().unwrap_or_default().to_string(),
                                t.value().unwrap_or_default().to_string(),
                            )
                        })
                        .collect(),
                ),
            )
        })
        .collect()
}

/// The operations planned for `resource`, in order.
fn operations(plan: &Value, resource: &str) -> Vec<String> {
    plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["resource"]["id"] == resource)
        .map(|c| {
            c["call"]["operation"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

fn blocked_reason(plan: &Value, resource: &str) -> Option<String> {
    plan["blocked"]
        .as_array()?
        .iter()
        .find(|b| b["resource"]["id"] == resource)
        .and_then(|b| b["reason"].as_str())
        .map(str::to_string)
}

/// The swap of a stopped instance with a root (DeleteOnTermination on) and a data
/// volume: copies first, then the devices, then the originals retired.
const STOPPED_SWAP: [&str; 17] = [
    "CreateSnapshot",
    "CopySnapshot",
    "CreateVolume",
    "CreateSnapshot",
    "CopySnapshot",
    "CreateVolume",
    "DetachVolume",
    "AttachVolume",
    "DetachVolume",
    "AttachVolume",
    "ModifyInstanceAttribute",
    "CreateTags",
    "DeleteSnapshot",
    "DeleteSnapshot",
    "CreateTags",
    "DeleteSnapshot",
    "DeleteSnapshot",
];

fn running_swap() -> Vec<String> {
    // Tagged harden:was-running before the stop, untagged after the start.
    let mut ops: Vec<String> = vec!["CreateTags".into(), "StopInstances".into()];
    ops.extend(STOPPED_SWAP[..11].iter().map(|s| s.to_string()));
    ops.push("StartInstances".into());
    ops.push("DeleteTags".into());
    ops.extend(STOPPED_SWAP[11..].iter().map(|s| s.to_string()));
    ops
}

fn scenario(kind: Kind) {
    let emulator = Emulator::start(kind);
    let ec2 = emulator.ec2(REGION);
    let state = tempfile::tempdir().expect("state");
    let cli = |args: &[&str]| {
        let mut cmd = emulator.harden(state.path());
        cmd.args(args).args(["--region", REGION]);
        run(cmd)
    };
    let (web, batch, exempt) = block_on(async {
        let web = launch(&ec2, &[("Name", "web")]).await;
        let batch = launch(&ec2, &[("Name", "batch")]).await;
        let exempt = launch(&ec2, &[("harden:exempt", "true")]).await;
        tag_volumes(&ec2, &web, "web").await;
        tag_volumes(&ec2, &batch, "batch").await;
        ec2.stop_instances()
            .instance_ids(&batch)
            .send()
            .await
            .expect("stop");
        (web, batch, exempt)
    });
    let before: BTreeMap<&str, _> = [&web, &batch, &exempt]
        .into_iter()
        .map(|i| (i.as_str(), block_on(layout(&ec2, i))))
        .collect();
    assert_eq!(before[web.as_str()].0, "running");
    assert_eq!(before[batch.as_str()].0, "stopped");
    let volumes_before = block_on(volumes(&ec2));

    // Without allow_stop the running instance is left alone, saying what it needs.
    let out = cli(&["plan", RUNBOOK, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    assert_eq!(operations(&plan, &web), Vec::<String>::new());
    assert_eq!(
        blocked_reason(&plan, &web).as_deref(),
        Some("needs_downtime")
    );
    let detail = plan["blocked"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["resource"]["id"] == web.as_str()))
        .map(|b| b["detail"].to_string())
        .unwrap_or_default();
    assert!(
        detail.contains("2 volume(s)") && detail.contains("allow_stop"),
        "the downtime is stated: {detail}"
    );
    assert_eq!(
        operations(&plan, &batch),
        STOPPED_SWAP,
        "a stopped instance is not started"
    );
    assert_eq!(blocked_reason(&plan, &exempt).as_deref(), Some("exempt"));
    assert_eq!(
        plan["runbooks"][0]["compliant"][emulator.account()][REGION],
        0,
        "attached volumes the volume step skips are not counted as compliant"
    );

    let out = cli(&[
        "plan",
        RUNBOOK,
        "--format",
        "json",
        "--param",
        "allow_stop=true",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    assert_eq!(
        operations(&plan, &web),
        running_swap(),
        "stopped once, before the snapshots; started once the devices are swapped"
    );

    let out = cli(&["dry-run", RUNBOOK, "--param", "allow_stop=true"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for (instance, layout_before) in &before {
        assert_eq!(
            &block_on(layout(&ec2, instance)),
            layout_before,
            "dry-run changes nothing"
        );
    }
    assert_eq!(block_on(volumes(&ec2)), volumes_before);

    let out = cli(&["apply", RUNBOOK, "--yes", "--param", "allow_stop=true"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);

    let after = block_on(volumes(&ec2));
    for instance in [&web, &batch] {
        let (state_before, devices_before) = &before[instance.as_str()];
        let (state_after, devices_after) = block_on(layout(&ec2, instance));
        assert_eq!(
            &state_after, state_before,
            "{instance} is left as it was found"
        );
        assert_eq!(devices_after.len(), devices_before.len());
        for ((device, original, delete), (device_after, replacement, delete_after)) in
            devices_before.iter().zip(&devices_after)
        {
            assert_eq!(device_after, device, "same device names");
            assert_eq!(delete_after, delete, "{device}: DeleteOnTermination kept");
            assert_ne!(replacement, original, "{device} now holds the copy");
            let (was_encrypted, _, kind, size, tags) = &volumes_before[original];
            assert!(!was_encrypted);
            let new = &after[replacement];
            assert!(new.0, "{device} of {instance} is encrypted");
            assert_eq!((&new.2, new.3), (kind, *size), "same type and size");
            let mut expected_tags = tags.clone();
            expected_tags.extend([
                ("harden:source-volume".to_string(), original.clone()),
                ("harden:instance".to_string(), instance.to_string()),
                ("harden:device".to_string(), device.clone()),
                (
                    "harden:delete-on-termination".to_string(),
                    delete.to_string(),
                ),
            ]);
            assert_eq!(
                &new.4, &expected_tags,
                "the original's tags and the markers"
            );
            let kept = after.get(original).expect("the original still exists");
            assert_eq!(kept.1, "available", "{original} is detached and kept");
            assert_eq!(
                kept.4.get("harden:replaced-by"),
                Some(replacement),
                "{original} names its replacement"
            );
        }
    }
    assert_eq!(
        block_on(layout(&ec2, &exempt)),
        before[exempt.as_str()],
        "the exempt instance is untouched"
    );
    assert_eq!(
        after.len(),
        volumes_before.len() + 4,
        "four copies, nothing deleted"
    );
    assert_eq!(
        block_on(harden_snapshots(&ec2)).len(),
        0,
        "intermediate snapshots removed"
    );

    let out = cli(&[
        "plan",
        RUNBOOK,
        "--detailed-exitcode",
        "--param",
        "allow_stop=true",
    ]);
    assert_eq!(out.code, 0, "converged:\n{}", out.stdout);
    emulator.assert_audit_verifies(state.path());
}

#[test]
fn instance_volumes_swapped_for_encrypted_copies_on_moto() {
    scenario(Kind::Moto);
}

#[test]
fn instance_volumes_swapped_for_encrypted_copies_on_localstack() {
    scenario(Kind::LocalStack);
}

#[test]
fn a_failed_swap_is_undone_on_moto() {
    failed_swap_scenario(Kind::Moto);
}

#[test]
fn a_failed_swap_is_undone_on_localstack() {
    failed_swap_scenario(Kind::LocalStack);
}

/// A swap that fails after the first device was swapped and the second detached: the
/// failure is a real refusal by the emulator (the plan file names a volume that does
/// not exist for the second attach), and what follows is real too. Apply must put
/// both originals back at their devices with their DeleteOnTermination, start the
/// instance again, keep the copies tagged for inspection, audit the compensation, and
/// exit 1; the next plan must refuse to build on the rolled-back copies.
fn failed_swap_scenario(kind: Kind) {
    let emulator = Emulator::start(kind);
    let ec2 = emulator.ec2(REGION);
    let state = tempfile::tempdir().expect("state");
    let cli = |args: &[&str]| {
        let mut cmd = emulator.harden(state.path());
        cmd.args(args).args(["--region", REGION]);
        run(cmd)
    };
    let web = block_on(launch(&ec2, &[("Name", "web")]));
    let before = block_on(layout(&ec2, &web));
    let plan_file = state.path().join("plan.json");
    let out = cli(&[
        "plan",
        RUNBOOK,
        "--param",
        "allow_stop=true",
        "--out",
        plan_file.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut plan: Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_file).expect("plan")).expect("JSON");
    let second_attach = plan["changes"]
        .as_array_mut()
        .expect("changes")
        .iter_mut()
        .filter(|c| c["call"]["operation"] == "AttachVolume")
        .nth(1)
        .expect("two attaches");
    assert_eq!(second_attach["call"]["input"]["Device"], "/dev/sdf");
    second_attach["call"]["input"]["VolumeId"] = "vol-0000000000000dead".into();
    std::fs::write(&plan_file, plan.to_string()).expect("write plan");

    // A saved plan carries its regions: no --region.
    let mut apply = emulator.harden(state.path());
    apply.args([
        "apply",
        "--yes",
        "--accept-edited-plan",
        "--plan",
        plan_file.to_str().expect("utf-8"),
    ]);
    let out = run(apply);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("InvalidVolume.NotFound"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("undone   {web}")),
        "{}",
        out.stdout
    );

    assert_eq!(
        block_on(layout(&ec2, &web)),
        before,
        "originals back at their devices with their DeleteOnTermination, instance running"
    );
    let run_id = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Apply "))
        .and_then(|l| l.strip_suffix(':'))
        .expect("the run id")
        .to_string();
    let runs: Vec<Option<String>> = block_on(harden_snapshots(&ec2))
        .into_iter()
        .map(|tags| tags.get("harden:run-id").cloned())
        .collect();
    assert_eq!(
        runs,
        vec![Some(run_id); 4],
        "both snapshots and both copies kept, each tagged with the run that made it"
    );
    let after = block_on(volumes(&ec2));
    let copies: Vec<_> = after
        .values()
        .filter(|v| v.4.contains_key("harden:source-volume"))
        .collect();
    assert_eq!(copies.len(), 2, "both copies kept for inspection");
    for copy in &copies {
        assert_eq!(copy.1, "available");
        assert!(
            copy.4
                .get("harden:rolled-back")
                .is_some_and(|cause| cause.ends_with("failed: InvalidVolume.NotFound")),
            "tagged with why: {:?}",
            copy.4
        );
    }

    let mut cmd = emulator.harden(state.path());
    cmd.args(["audit", "show", "--format", "json"]);
    let shown = run(cmd);
    let records: Value = serde_json::from_str(&shown.stdout).expect("audit JSON");
    let undone: Vec<&Value> = records
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["type"] == "compensation")
        .collect();
    assert_eq!(undone.len(), 1, "one compensation record");
    assert_eq!(undone[0]["outcome"]["status"], "succeeded");
    let calls: Vec<&str> = undone[0]["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .filter_map(|c| c["operation"].as_str())
        .collect();
    assert_eq!(
        calls,
        [
            "DetachVolume",
            "AttachVolume",
            "AttachVolume",
            "ModifyInstanceAttribute",
            "StartInstances",
            "DeleteTags",
            "CreateTags"
        ],
        "the copy off /dev/sda1, both originals back, DeleteOnTermination, start, its harden:was-running tag removed, the copies tagged"
    );
    emulator.assert_audit_verifies(state.path());

    let out = cli(&[
        "plan",
        RUNBOOK,
        "--format",
        "json",
        "--param",
        "allow_stop=true",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    assert_eq!(operations(&plan, &web), Vec::<String>::new());
    assert_eq!(blocked_reason(&plan, &web).as_deref(), Some("failing"));
}
