//! EBS encryption by default (FSBP EC2.7): planned, dry-run and applied against moto and
//! LocalStack, read back through the SDK, and converged.

use crate::support::{Emulator, Kind, block_on, harden_snapshots, run};

const RUNBOOK: &str = "tests/fixtures/ebs-encryption-by-default.yaml";
const REGION: &str = "ap-southeast-2";

async fn enabled(ec2: &aws_sdk_ec2::Client) -> bool {
    ec2.get_ebs_encryption_by_default()
        .send()
        .await
        .expect("read the setting")
        .ebs_encryption_by_default()
        .unwrap_or(false)
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
    assert!(!block_on(enabled(&ec2)), "off in a new region");

    let out = cli(&["plan", RUNBOOK, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    let changes = plan["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["resource"]["id"], REGION);
    assert_eq!(
        changes[0]["call"]["operation"],
        "EnableEbsEncryptionByDefault"
    );

    let out = cli(&["dry-run", RUNBOOK]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("dry-run: would succeed"),
        "{}",
        out.stdout
    );
    assert!(!block_on(enabled(&ec2)), "dry-run changed nothing");

    let out = cli(&["apply", RUNBOOK, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(block_on(enabled(&ec2)), "on after apply");

    let out = cli(&["plan", RUNBOOK, "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
}

#[test]
fn ebs_encryption_by_default_on_moto() {
    scenario(Kind::Moto);
}

#[test]
fn ebs_encryption_by_default_on_localstack() {
    scenario(Kind::LocalStack);
}

/// `--localstack` needs no credentials or region configured: test credentials,
/// us-east-1, and the account id LocalStack reports.
#[test]
fn localstack_flag_needs_no_configuration() {
    let emulator = Emulator::start(Kind::LocalStack);
    let state = tempfile::tempdir().expect("state");
    let mut cmd = emulator.harden(state.path());
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env("AWS_CONFIG_FILE", state.path().join("no-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            state.path().join("no-credentials"),
        )
        .args(["--localstack", "plan", RUNBOOK, "--format", "json"]);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    assert_eq!(plan["accounts"][0]["id"], "000000000000");
    assert_eq!(
        plan["accounts"][0]["regions"],
        serde_json::json!(["us-east-1"])
    );
}

/// (id, encrypted, type, size, iops, throughput, zone, tags) of every volume.
type VolumeRow = (
    String,
    bool,
    String,
    i32,
    Option<i32>,
    Option<i32>,
    String,
    Vec<(String, String)>,
);

async fn volumes(ec2: &aws_sdk_ec2::Client) -> Vec<VolumeRow> {
    let out = ec2.describe_volumes().send().await.expect("volumes");
    let mut rows: Vec<VolumeRow> = out
        .volumes()
        .iter()
        .map(|v| {
            let mut tags: Vec<(String, String)> = v
                .tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().into(),
                        t.value().unwrap_or_default().into(),
                    )
                })
                .collect();
            tags.sort();
            (
                v.volume_id().unwrap_or_default().into(),
                v.encrypted().unwrap_or(false),
                v.volume_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                v.size().unwrap_or_default(),
                v.iops(),
                v.throughput(),
                v.availability_zone().unwrap_or_default().into(),
                tags,
            )
        })
        .collect();
    rows.sort();
    rows
}

async fn volume(
    ec2: &aws_sdk_ec2::Client,
    zone: &str,
    encrypted: bool,
    tags: &[(&str, &str)],
) -> String {
    use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification, VolumeType};
    ec2.create_volume()
        .availability_zone(zone)
        .size(20)
        .volume_type(VolumeType::Gp3)
        .iops(4000)
        .throughput(250)
        .encrypted(encrypted)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Volume)
                .set_tags(Some(
                    tags.iter()
                        .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
                        .collect(),
                ))
                .build(),
        )
        .send()
        .await
        .expect("volume")
        .volume_id()
        .expect("id")
        .to_string()
}

fn volume_scenario(kind: Kind) {
    const RUNBOOK: &str = "runbooks/encrypt-ebs-volumes.yaml";
    let emulator = Emulator::start(kind);
    let region = "eu-west-1";
    let zone = "eu-west-1a";
    let ec2 = emulator.ec2(region);
    let state = tempfile::tempdir().expect("state");
    let cli = |args: &[&str]| {
        let mut cmd = emulator.harden(state.path());
        cmd.args(args).args(["--region", region]);
        run(cmd)
    };
    let (plain, encrypted, exempt) = block_on(async {
        (
            volume(&ec2, zone, false, &[("Name", "data"), ("team", "search")]).await,
            volume(&ec2, zone, true, &[("Name", "already")]).await,
            volume(&ec2, zone, false, &[("harden:exempt", "true")]).await,
        )
    });
    let before = block_on(volumes(&ec2));

    let out = cli(&["plan", RUNBOOK, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    let changes: Vec<(String, String)> = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["resource"]["id"].as_str().unwrap_or_default().to_string(),
                c["call"]["operation"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        (region, "EnableEbsEncryptionByDefault"),
        (plain.as_str(), "CreateSnapshot"),
        (plain.as_str(), "CopySnapshot"),
        (plain.as_str(), "CreateVolume"),
        (plain.as_str(), "CreateTags"),
        (plain.as_str(), "DeleteSnapshot"),
        (plain.as_str(), "DeleteSnapshot"),
    ]
    .iter()
    .map(|(r, o)| (r.to_string(), o.to_string()))
    .collect();
    assert_eq!(
        changes, expected,
        "the encrypted and the exempt volume are not touched"
    );
    assert_eq!(
        plan["blocked"][0]["resource"]["id"],
        serde_json::json!(exempt)
    );

    let out = cli(&["dry-run", RUNBOOK]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        block_on(volumes(&ec2)),
        before,
        "plan and dry-run change nothing"
    );
    assert!(!block_on(enabled(&ec2)));

    let out = cli(&["apply", RUNBOOK, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(block_on(enabled(&ec2)));
    let after = block_on(volumes(&ec2));
    assert_eq!(
        after.len(),
        before.len() + 1,
        "one new volume; nothing deleted"
    );
    let original = after
        .iter()
        .find(|v| v.0 == plain)
        .expect("the original is kept");
    let replacement_id = original
        .7
        .iter()
        .find(|(k, _)| k == "harden:replaced-by")
        .map(|(_, v)| v.clone())
        .expect("the original names its replacement");
    let replacement = after
        .iter()
        .find(|v| v.0 == replacement_id)
        .expect("the replacement exists");
    assert!(replacement.1, "the replacement is encrypted");
    assert_eq!(
        (
            &replacement.2,
            replacement.3,
            replacement.4,
            replacement.5,
            &replacement.6
        ),
        (
            &"gp3".to_string(),
            20,
            Some(4000),
            Some(250),
            &zone.to_string()
        ),
        "same type, size, IOPS, throughput and zone"
    );
    let mut expected_tags = vec![
        ("Name".to_string(), "data".to_string()),
        ("harden:source-volume".to_string(), plain.clone()),
        ("team".to_string(), "search".to_string()),
    ];
    expected_tags.sort();
    assert_eq!(replacement.7, expected_tags, "tags copied, plus the marker");
    for untouched in [&encrypted, &exempt] {
        assert_eq!(
            after.iter().find(|v| &v.0 == untouched),
            before.iter().find(|v| &v.0 == untouched)
        );
    }
    assert_eq!(
        block_on(harden_snapshots(&ec2)).len(),
        0,
        "intermediate snapshots removed"
    );

    let out = cli(&["plan", RUNBOOK, "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "converged:\n{}", out.stdout);
    emulator.assert_audit_verifies(state.path());
}

#[test]
fn unattached_volumes_replaced_by_encrypted_copies_on_moto() {
    volume_scenario(Kind::Moto);
}

#[test]
fn unattached_volumes_replaced_by_encrypted_copies_on_localstack() {
    volume_scenario(Kind::LocalStack);
}

/// `retire_originals_after`: the original is kept with the encrypted copy of its data
/// as the way back (the unencrypted snapshot deleted at once), plans list it as not yet
/// due with the time (not drift: exit 0), and once its replacement has been in place
/// that long a plan deletes it (exit 2, then converged), keeping the encrypted copy.
#[test]
fn originals_are_retired_once_their_replacement_has_been_in_place_long_enough_on_moto() {
    const RUNBOOK: &str = "runbooks/encrypt-ebs-volumes.yaml";
    let emulator = Emulator::start(Kind::Moto);
    let ec2 = emulator.ec2(REGION);
    let state = tempfile::tempdir().expect("state");
    // The wait is a parameter of each run, so "not yet due" and "due" do not depend on
    // how fast this machine runs the commands in between.
    let cli_waiting = |retire_after: &str, args: &[&str]| {
        let mut cmd = emulator.harden(state.path());
        cmd.args(args).args([
            "--region",
            REGION,
            "--param",
            &format!("retire_originals_after={retire_after}"),
        ]);
        run(cmd)
    };
    let cli = |args: &[&str]| cli_waiting("1s", args);
    let original = block_on(volume(&ec2, "ap-southeast-2a", false, &[("Name", "data")]));
    let out = cli(&["apply", RUNBOOK, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let ids = |rows: &[VolumeRow]| rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>();
    assert!(
        ids(&block_on(volumes(&ec2))).contains(&original),
        "the original is kept for now"
    );
    let snapshots = block_on(harden_snapshots(&ec2));
    assert_eq!(
        snapshots
            .iter()
            .map(|t| t.get("harden:stage").cloned().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["copy"],
        "only the encrypted copy is kept: the unencrypted snapshot went at once"
    );

    let out = cli_waiting("1h", &["plan", RUNBOOK, "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "not yet due is not drift:\n{}", out.stdout);
    assert!(
        out.stdout.contains("not yet due") && out.stdout.contains("is due for deletion at"),
        "the plan says when the original goes:\n{}",
        out.stdout
    );

    std::thread::sleep(std::time::Duration::from_secs(2));
    let out = cli(&["plan", RUNBOOK, "--detailed-exitcode", "--format", "json"]);
    assert_eq!(out.code, 2, "due:\n{}", out.stdout);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    let deletes: Vec<&serde_json::Value> = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["call"]["operation"] == "DeleteVolume")
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0]["call"]["input"]["VolumeId"], original.as_str());
    let out = cli(&["apply", RUNBOOK, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let rows = block_on(volumes(&ec2));
    assert!(!ids(&rows).contains(&original), "the original is gone");
    assert!(
        rows.iter().all(|r| r.1),
        "no unencrypted volume is left: {rows:?}"
    );
    assert_eq!(
        block_on(harden_snapshots(&ec2)).len(),
        1,
        "the encrypted copy is kept as the way back"
    );
    let out = cli(&["plan", RUNBOOK, "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "converged:\n{}", out.stdout);
    emulator.assert_audit_verifies(state.path());
}

/// A snapshot harden made twice for one volume (a repeat after a lost answer, or two
/// runs at once) is a leftover the next plan shows and deletes, keeping one.
#[test]
fn a_snapshot_made_twice_is_shown_and_deleted_by_the_next_plan_on_moto() {
    const RUNBOOK: &str = "runbooks/encrypt-ebs-volumes.yaml";
    let emulator = Emulator::start(Kind::Moto);
    let ec2 = emulator.ec2(REGION);
    let state = tempfile::tempdir().expect("state");
    let cli = |args: &[&str]| {
        let mut cmd = emulator.harden(state.path());
        cmd.args(args)
            .args(["--region", REGION, "--param", "keep_snapshots=true"]);
        run(cmd)
    };
    let original = block_on(volume(&ec2, "ap-southeast-2a", false, &[("Name", "twice")]));
    let out = cli(&["apply", RUNBOOK, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let stages = || {
        let mut stages: Vec<String> = block_on(harden_snapshots(&ec2))
            .iter()
            .map(|t| t.get("harden:stage").cloned().unwrap_or_default())
            .collect();
        stages.sort();
        stages
    };
    assert_eq!(stages(), ["copy", "snapshot"], "kept on purpose");
    block_on(async {
        use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
        ec2.create_snapshot()
            .volume_id(&original)
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Snapshot)
                    .tags(
                        Tag::builder()
                            .key("harden:source-volume")
                            .value(&original)
                            .build(),
                    )
                    .tags(Tag::builder().key("harden:stage").value("snapshot").build())
                    .build(),
            )
            .send()
            .await
            .expect("a second snapshot")
    });
    let out = cli(&["plan", RUNBOOK, "--detailed-exitcode"]);
    assert_eq!(out.code, 2, "the duplicate is a leftover:\n{}", out.stdout);
    assert!(out.stdout.contains("harden made twice"), "{}", out.stdout);
    let out = cli(&["apply", RUNBOOK, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(stages(), ["copy", "snapshot"], "one of each left");
    let out = cli(&["plan", RUNBOOK, "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "converged:\n{}", out.stdout);
    emulator.assert_audit_verifies(state.path());
}

/// A second replacement volume of one original (two runs at once) may have been
/// attached and written since, so it is not deleted: the plan blocks the original,
/// naming the replacement it keeps (the one the original's tag names) and the other,
/// until a person deletes it.
#[test]
fn a_second_replacement_volume_blocks_the_plan_naming_it_on_moto() {
    const RUNBOOK: &str = "runbooks/encrypt-ebs-volumes.yaml";
    let emulator = Emulator::start(Kind::Moto);
    let ec2 = emulator.ec2(REGION);
    let state = tempfile::tempdir().expect("state");
    let cli = |args: &[&str]| {
        let mut cmd = emulator.harden(state.path());
        cmd.args(args).args(["--region", REGION]);
        run(cmd)
    };
    let zone = "ap-southeast-2a";
    let original = block_on(volume(&ec2, zone, false, &[("Name", "raced")]));
    let out = cli(&["apply", RUNBOOK, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let replacement = block_on(volumes(&ec2))
        .into_iter()
        .find(|v| v.0 == original)
        .and_then(|v| {
            v.7.into_iter()
                .find(|(k, _)| k == "harden:replaced-by")
                .map(|(_, id)| id)
        })
        .expect("the original names its replacement");
    // Lower or higher, its id must not decide which one is kept.
    let twin = block_on(volume(
        &ec2,
        zone,
        true,
        &[("Name", "raced"), ("harden:source-volume", &original)],
    ));
    let blocked = |expect_twin: bool| {
        let out = cli(&["plan", RUNBOOK, "--format", "json"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let plan: serde_json::Value = serde_json::from_str(&out.stdout).expect("plan JSON");
        assert!(
            plan["changes"].as_array().is_none_or(Vec::is_empty),
            "nothing is deleted or made: {}",
            plan["changes"]
        );
        let blocks: Vec<(String, String, String)> = plan["blocked"]
            .as_array()
            .map(|b| {
                b.iter()
                    .map(|b| {
                        (
                            b["resource"]["id"].as_str().unwrap_or_default().to_string(),
                            b["reason"].as_str().unwrap_or_default().to_string(),
                            b["detail"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if expect_twin {
            assert_eq!(blocks.len(), 1, "{blocks:?}");
            let (id, reason, detail) = &blocks[0];
            assert_eq!(
                (id.as_str(), reason.as_str()),
                (original.as_str(), "failing")
            );
            assert!(
                detail.contains(&format!(
                    "a second replacement volume of {original} exists ({twin}, "
                )) && detail.contains(&format!("beside {replacement}, the one harden keeps")),
                "{detail}"
            );
        } else {
            assert!(blocks.is_empty(), "{blocks:?}");
        }
    };
    blocked(true);
    let out = cli(&["apply", RUNBOOK, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        block_on(volumes(&ec2)).iter().any(|v| v.0 == twin),
        "apply leaves the second replacement for a person"
    );
    block_on(async {
        ec2.delete_volume()
            .volume_id(&twin)
            .send()
            .await
            .expect("the person deletes it")
    });
    blocked(false);
    emulator.assert_audit_verifies(state.path());
}
