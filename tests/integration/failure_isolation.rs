//! A failure stops only what depends on it, against moto with a real refusal: a saved
//! plan in which one default group's revoke names a group that does not exist, so moto
//! answers `InvalidGroup.NotFound`. That resource's chain stops, and so does the runbook
//! that `requires:` the failed one, in that region only; `after:` only orders, other
//! regions go on, and the apply reports what failed and what it held back. With
//! `--fail-fast` everything after the failure is left alone. A fresh plan and apply
//! then converge.

use serde_json::Value;

use crate::support::{
    Emulator, Kind, Run, block_on, create_open_group, lets_all_out, run, runbooks_changed,
};

const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const NEEDS: &str = "tests/fixtures/needs-closed-default-groups.yaml";
const RUNBOOKS: [&str; 3] = [
    "runbooks/close-default-security-groups.yaml",
    "runbooks/restrict-sg-egress.yaml",
    NEEDS,
];
const MISSING_GROUP: &str = "sg-0000000000000dead";

/// Every group of a region (id, name) and whether it lets all traffic out to the
/// internet (the allow-list keeps tcp 443 to 0.0.0.0/0).
async fn egress(ec2: &aws_sdk_ec2::Client) -> Vec<(String, String, bool)> {
    let groups = ec2
        .describe_security_groups()
        .send()
        .await
        .expect("describe groups");
    let mut out: Vec<(String, String, bool)> = groups
        .security_groups()
        .iter()
        .map(|g| {
            let open = lets_all_out(g);
            (
                g.group_id().unwrap_or_default().to_string(),
                g.group_name().unwrap_or_default().to_string(),
                open,
            )
        })
        .collect();
    out.sort();
    out
}

async fn encryption_by_default(ec2: &aws_sdk_ec2::Client) -> bool {
    ec2.get_ebs_encryption_by_default()
        .send()
        .await
        .expect("get default encryption")
        .ebs_encryption_by_default()
        .unwrap_or(false)
}

/// Per region: one VPC with an "app" group (open egress, as new groups are); moto's
/// default VPC and the new one each have a default group with open egress.
fn seed(emulator: &Emulator) {
    block_on(async {
        for (n, region) in REGIONS.iter().enumerate() {
            create_open_group(
                &emulator.ec2(region),
                &format!("10.{}.0.0/16", 20 + n),
                "app",
            )
            .await;
        }
    });
}

/// Plans every runbook over both regions into `file`, then breaks the first default
/// group change in us-east-1 so moto refuses it; returns that change's id and group.
fn broken_plan(
    emulator: &Emulator,
    state: &std::path::Path,
    file: &std::path::Path,
) -> (String, String) {
    let mut cmd = emulator.harden(state);
    cmd.arg("plan").args(RUNBOOKS);
    for region in REGIONS {
        cmd.args(["--region", region]);
    }
    cmd.args(["--out", file.to_str().expect("utf-8 path")]);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let mut plan: Value =
        serde_json::from_str(&std::fs::read_to_string(file).expect("plan")).expect("JSON");
    let change = plan["changes"]
        .as_array_mut()
        .expect("changes")
        .iter_mut()
        .find(|c| c["runbook"] == "close-default-security-groups" && c["region"] == "us-east-1")
        .expect("a default group to close in us-east-1");
    let id = change["id"].as_str().expect("id").to_string();
    let group = change["resource"]["id"]
        .as_str()
        .expect("group")
        .to_string();
    change["call"]["input"]["GroupId"] = MISSING_GROUP.into();
    std::fs::write(file, plan.to_string()).expect("write plan");
    (id, group)
}

fn apply_saved(
    emulator: &Emulator,
    state: &std::path::Path,
    file: &std::path::Path,
    extra: &[&str],
) -> Run {
    // The plan was edited to make moto refuse one change: applied as it is, by choice.
    let mut cmd = emulator.harden(state);
    cmd.args(["apply", "--yes", "--accept-edited-plan", "--plan"])
        .arg(file)
        .args(extra);
    run(cmd)
}

fn line_of<'a>(out: &'a Run, change: &str) -> &'a str {
    out.stdout
        .lines()
        .find(|l| l.contains(&format!(" {change}")))
        .unwrap_or_else(|| panic!("no line for {change}:\n{}", out.stdout))
}

#[test]
fn a_failed_change_holds_back_only_what_depends_on_it_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    seed(&emulator);
    let state = tempfile::tempdir().expect("state");
    let file = state.path().join("plan.json");
    let (failed, broken_group) = broken_plan(&emulator, state.path(), &file);
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("plan")).expect("JSON");
    let ids_of = |runbook: &str, region: &str| -> Vec<String> {
        plan["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .filter(|c| c["runbook"] == runbook && c["region"] == region)
            .filter_map(|c| c["id"].as_str().map(str::to_string))
            .collect()
    };
    let needs_east = ids_of("needs-closed-default-groups", "us-east-1");
    let needs_west = ids_of("needs-closed-default-groups", "eu-west-1");
    assert_eq!((needs_east.len(), needs_west.len()), (1, 1));

    let out = apply_saved(&emulator, state.path(), &file, &[]);
    assert_eq!(
        out.code, 1,
        "a failed change fails the apply:\n{}",
        out.stdout
    );
    assert!(
        line_of(&out, &failed).contains("FAILED")
            && line_of(&out, &failed).contains("InvalidGroup.NotFound"),
        "{}",
        out.stdout
    );
    // `requires:` holds the dependent runbook back in the failed region only.
    assert!(
        line_of(&out, &needs_east[0]).contains(&format!(
            "not attempted: runbook needs-closed-default-groups requires close-default-security-groups, whose change {failed} failed in us-east-1"
        )),
        "{}",
        out.stdout
    );
    assert!(
        line_of(&out, &needs_west[0]).contains("ok"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!(
            "{failed} failed; not attempted because of it: {}",
            needs_east[0]
        )),
        "the apply says what the failure held back:\n{}",
        out.stdout
    );
    let total = plan["changes"].as_array().map_or(0, Vec::len);
    assert!(
        out.stdout.contains(&format!(
            "{} succeeded, 1 failed, 1 not attempted",
            total - 2
        )),
        "{}",
        out.stdout
    );

    let (east, west) = (emulator.ec2("us-east-1"), emulator.ec2("eu-west-1"));
    let east_groups = block_on(egress(&east));
    for (id, name, open) in &east_groups {
        // Only the group whose change failed is still open; `after:` did not hold back
        // the egress runbook, and the other default group of the region was closed.
        assert_eq!(
            *open,
            *id == broken_group,
            "{name} {id} in us-east-1: {east_groups:?}"
        );
    }
    let west_groups = block_on(egress(&west));
    assert!(
        west_groups.iter().all(|(_, _, open)| !open),
        "eu-west-1 went on: {west_groups:?}"
    );
    assert!(
        !block_on(encryption_by_default(&east)),
        "held back in us-east-1"
    );
    assert!(
        block_on(encryption_by_default(&west)),
        "applied in eu-west-1"
    );
    emulator.assert_audit_verifies(state.path());

    // What is left is planned afresh, and one more apply converges.
    let cli = |args: &[&str]| {
        let mut cmd = emulator.harden(state.path());
        cmd.args(args).args(RUNBOOKS);
        for region in REGIONS {
            cmd.args(["--region", region]);
        }
        run(cmd)
    };
    let out = cli(&["plan", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let left: Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    let left: Vec<(String, String)> = left["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["runbook"].as_str().unwrap_or_default().to_string(),
                c["region"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        left,
        [
            (
                "close-default-security-groups".to_string(),
                "us-east-1".to_string()
            ),
            (
                "needs-closed-default-groups".to_string(),
                "us-east-1".to_string()
            ),
        ]
    );
    let out = cli(&["apply", "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let out = cli(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "converged:\n{}", out.stdout);
}

#[test]
fn with_fail_fast_nothing_after_the_failure_starts_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    seed(&emulator);
    let state = tempfile::tempdir().expect("state");
    let file = state.path().join("plan.json");
    let (failed, _) = broken_plan(&emulator, state.path(), &file);
    let out = apply_saved(
        &emulator,
        state.path(),
        &file,
        &["--fail-fast", "--concurrency", "1"],
    );
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        line_of(&out, &failed).contains("InvalidGroup.NotFound"),
        "{}",
        out.stdout
    );
    let reason = format!("not attempted: apply stopped after {failed} failed (--fail-fast)");
    let held: Vec<&str> = out.stdout.lines().filter(|l| l.contains(&reason)).collect();
    assert!(!held.is_empty(), "{}", out.stdout);
    // The later runbooks started nowhere: every app group is still open, and EBS
    // encryption by default is still off in both regions.
    for region in REGIONS {
        let ec2 = emulator.ec2(region);
        let groups = block_on(egress(&ec2));
        assert!(
            groups.iter().any(|(_, name, open)| name == "app" && *open),
            "{region}: {groups:?}"
        );
        assert!(!block_on(encryption_by_default(&ec2)), "{region}");
    }
    emulator.assert_audit_verifies(state.path());
}

/// LocalStack community emulates neither CloudTrail nor S3 Control's account-level
/// Block Public Access: planning every shipped runbook leaves those two runbooks out in
/// each region, with the reason, and plans the rest. Such a plan is refused as incomplete (exit 1, nothing saved, nothing applied)
/// unless --allow-partial accepts it; applying it says what it leaves out, and what was
/// planned converges.
#[test]
fn a_runbook_whose_discovery_fails_is_left_out_and_the_rest_planned_on_localstack() {
    let emulator = Emulator::start(Kind::LocalStack);
    let state = tempfile::tempdir().expect("state");
    let cli = |args: &[&str]| {
        let mut cmd = emulator.harden(state.path());
        cmd.args(args).arg("runbooks/");
        for region in REGIONS {
            cmd.args(["--region", region]);
        }
        run(cmd)
    };
    let file = state.path().join("plan.json");
    let file_arg = file.to_str().expect("utf-8 path");
    let out = cli(&["plan", "--out", file_arg]);
    assert_eq!(out.code, 1, "an incomplete plan fails:\n{}", out.stdout);
    let top: Vec<&str> = out.stdout.lines().take(7).collect();
    assert!(
        top[2].starts_with(
            "INCOMPLETE PLAN: 0 account(s) not reached and 4 runbook-region(s) not planned"
        ),
        "{top:?}"
    );
    let account = emulator.account();
    let expected = REGIONS.iter().flat_map(|region| {
        [
            format!("  ? enable-cloudtrail in {account}, {region}: discovery failed: DescribeTrails failed"),
            format!("  ? block-s3-public-access in {account}, {region}: discovery failed: GetPublicAccessBlock failed"),
        ]
    });
    for (line, start) in top[3..].iter().zip(expected) {
        assert!(
            line.starts_with(&start) && line.contains("not emulated"),
            "{line}"
        );
    }
    assert!(
        out.stdout
            .contains("enable-cloudtrail: 0 to create, 0 to update, 0 to delete; 0 compliant; not planned in 2 account-region(s)."),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("--allow-partial"), "{}", out.stderr);
    assert!(
        !file.exists(),
        "an incomplete plan is not saved without --allow-partial"
    );
    let out = cli(&["apply", "--yes"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stderr.contains("nothing was changed"), "{}", out.stderr);
    assert!(
        !block_on(encryption_by_default(&emulator.ec2("us-east-1"))),
        "nothing was changed"
    );

    let out = cli(&["plan", "--allow-partial", "--out", file_arg]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("plan")).expect("JSON");
    let left: Vec<(&str, &str)> = plan["not_planned"]
        .as_array()
        .expect("not_planned")
        .iter()
        .map(|n| {
            (
                n["runbook"].as_str().unwrap_or_default(),
                n["region"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        left,
        [
            ("enable-cloudtrail", "us-east-1"),
            ("block-s3-public-access", "us-east-1"),
            ("enable-cloudtrail", "eu-west-1"),
            ("block-s3-public-access", "eu-west-1"),
        ]
    );
    assert_eq!(
        runbooks_changed(&plan),
        [
            "alert-on-security-changes",
            "close-default-security-groups",
            "enable-aws-config",
            "enable-vpc-flow-logs",
            "encrypt-ebs-volumes",
        ],
        "the rest is planned"
    );

    // A saved partial plan is applied as reviewed, and says what it leaves out.
    let mut apply = emulator.harden(state.path());
    apply.args(["apply", "--yes", "--plan", file_arg]);
    let out = run(apply);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("This apply leaves out 0 account(s) and 4 runbook-region(s)"),
        "{}",
        out.stdout
    );
    assert!(block_on(encryption_by_default(&emulator.ec2("eu-west-1"))));
    let out = cli(&["plan", "--allow-partial", "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "what was planned converged:\n{}", out.stdout);
    assert!(
        out.stdout.contains("No changes in what was planned."),
        "{}",
        out.stdout
    );
    emulator.assert_audit_verifies(state.path());
}
