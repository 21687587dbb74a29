//! `harden rollback` on moto: the security-group runbooks and EBS encryption by default
//! applied to a seeded account, then undone, and a full describe compared with the
//! seeded state (every group's rules with their descriptions, the region's setting).
//! Then a resource changed after the run is refused with the reason while the rest is
//! undone.

use std::collections::BTreeMap;
use std::path::Path;

use aws_sdk_ec2::types::{IpPermission, IpRange, Ipv6Range};
use serde_json::Value;

use crate::support::{Emulator, Kind, block_on, create_vpc, run};

const REGION: &str = "eu-west-1";
const RUNBOOKS: [&str; 3] = [
    "runbooks/close-default-security-groups.yaml",
    "runbooks/restrict-sg-egress.yaml",
    "tests/fixtures/ebs-encryption-by-default.yaml",
];

/// (protocol, from, to, peer, description) of a rule.
type RuleRow = (String, i32, i32, String, String);

/// Every group of the region by VPC and name: its ingress and egress rules (without
/// ids, which an authorization again renews), and whether EBS encryption by default
/// is on.
type Described = (
    BTreeMap<(String, String), (Vec<RuleRow>, Vec<RuleRow>)>,
    bool,
);

fn rows(permissions: &[IpPermission]) -> Vec<RuleRow> {
    let mut rows = Vec::new();
    for p in permissions {
        let head = (
            p.ip_protocol().unwrap_or_default().to_string(),
            p.from_port().unwrap_or(-1),
            p.to_port().unwrap_or(-1),
        );
        let peers = p
            .ip_ranges()
            .iter()
            .map(|r| (r.cidr_ip(), r.description()))
            .chain(
                p.ipv6_ranges()
                    .iter()
                    .map(|r| (r.cidr_ipv6(), r.description())),
            )
            .chain(
                p.user_id_group_pairs()
                    .iter()
                    .map(|g| (g.group_id(), g.description())),
            )
            .chain(
                p.prefix_list_ids()
                    .iter()
                    .map(|l| (l.prefix_list_id(), l.description())),
            );
        for (peer, description) in peers {
            rows.push((
                head.0.clone(),
                head.1,
                head.2,
                peer.unwrap_or_default().to_string(),
                description.unwrap_or_default().to_string(),
            ));
        }
    }
    rows.sort();
    rows
}

fn describe(emulator: &Emulator) -> Described {
    let ec2 = emulator.ec2(REGION);
    block_on(async {
        let groups = ec2.describe_security_groups().send().await.expect("groups");
        let by_name = groups
            .security_groups()
            .iter()
            .map(|g| {
                (
                    (
                        g.vpc_id().unwrap_or_default().to_string(),
                        g.group_name().unwrap_or_default().to_string(),
                    ),
                    (rows(g.ip_permissions()), rows(g.ip_permissions_egress())),
                )
            })
            .collect();
        let encrypted = ec2
            .get_ebs_encryption_by_default()
            .send()
            .await
            .expect("setting")
            .ebs_encryption_by_default()
            .unwrap_or(false);
        (by_name, encrypted)
    })
}

/// A VPC with three groups: one open to all of 0.0.0.0/0 (rewritten in place), one
/// open to all of ::/0 only with a description (revoked, the allowed rule authorized),
/// one with a rule a person described that stays.
fn seed(emulator: &Emulator) -> (String, String) {
    let ec2 = emulator.ec2(REGION);
    block_on(async {
        let vpc = create_vpc(&ec2, "10.7.0.0/16").await;
        // As on AWS, the VPC's default group admits its own members (moto leaves it
        // without ingress). Without a description: moto's DescribeSecurityGroupRules
        // drops the description of a rule that references a group (AWS keeps it), so
        // neither the audit nor the rollback could see one here.
        let default = ec2
            .describe_security_groups()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("vpc-id")
                    .values(&vpc)
                    .build(),
            )
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("group-name")
                    .values("default")
                    .build(),
            )
            .send()
            .await
            .expect("default group")
            .security_groups()
            .first()
            .and_then(|g| g.group_id())
            .expect("the VPC's default group")
            .to_string();
        ec2.authorize_security_group_ingress()
            .group_id(&default)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("-1")
                    .user_id_group_pairs(
                        aws_sdk_ec2::types::UserIdGroupPair::builder()
                            .group_id(&default)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("self-referencing ingress");
        let mut ids = Vec::new();
        for name in ["web", "v6", "kept"] {
            let id = ec2
                .create_security_group()
                .group_name(name)
                .description(name)
                .vpc_id(&vpc)
                .send()
                .await
                .expect("group")
                .group_id()
                .expect("id")
                .to_string();
            ids.push(id);
        }
        // moto gives a new group allow-all to 0.0.0.0/0; v6 gets ::/0 instead, kept a
        // private rule a person described.
        let v6 = IpPermission::builder()
            .ip_protocol("-1")
            .ipv6_ranges(
                Ipv6Range::builder()
                    .cidr_ipv6("::/0")
                    .description("legacy: everything out")
                    .build(),
            )
            .build();
        let private = IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(5432)
            .to_port(5432)
            .ip_ranges(
                IpRange::builder()
                    .cidr_ip("10.7.0.0/16")
                    .description("database")
                    .build(),
            )
            .build();
        for (group, egress) in [(&ids[1], v6), (&ids[2], private)] {
            replace_egress(&ec2, group, egress).await;
        }
        (vpc, ids[0].clone())
    })
}

/// Replaces the allow-all egress moto gives a new group by `egress`.
async fn replace_egress(ec2: &aws_sdk_ec2::Client, group: &str, egress: IpPermission) {
    ec2.revoke_security_group_egress()
        .group_id(group)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("-1")
                .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                .build(),
        )
        .send()
        .await
        .expect("revoke the allow-all");
    ec2.authorize_security_group_egress()
        .group_id(group)
        .ip_permissions(egress)
        .send()
        .await
        .expect("authorize");
}

fn harden(emulator: &Emulator, state: &Path, args: &[&str]) -> crate::support::Run {
    let mut cmd = emulator.harden(state);
    cmd.args(args);
    run(cmd)
}

fn apply(emulator: &Emulator, state: &Path) -> String {
    let mut args = vec!["apply"];
    args.extend(RUNBOOKS);
    args.extend(["--yes", "--region", REGION]);
    let out = harden(emulator, state, &args);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("Apply "))
        .and_then(|l| l.strip_suffix(':'))
        .expect("the run id")
        .to_string()
}

fn runs(emulator: &Emulator, state: &Path) -> Vec<Value> {
    let out = harden(emulator, state, &["runs", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).expect("runs JSON")
}

#[test]
fn a_run_of_the_security_group_and_ebs_runbooks_is_rolled_back_exactly_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    let state = tempfile::tempdir().expect("state");
    let (_, web) = seed(&emulator);
    let seeded = describe(&emulator);
    assert!(!seeded.1, "encryption by default starts off");

    let run_id = apply(&emulator, state.path());
    let applied = describe(&emulator);
    assert_ne!(applied, seeded, "the run changed the account");
    assert!(applied.1);

    // The rollback plan, saved to be read: the last runbook undone first, every kind
    // of inverse, nothing refused.
    let saved = state.path().join("rollback.json");
    let save = |run_id: &str| {
        let out = harden(
            &emulator,
            state.path(),
            &["rollback", run_id, "--out", saved.to_str().expect("utf-8")],
        );
        assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
        let plan: Value =
            serde_json::from_str(&std::fs::read_to_string(&saved).expect("plan")).expect("JSON");
        (plan, out.stdout)
    };
    let (plan, _) = save(&run_id);
    assert_eq!(
        describe(&emulator),
        applied,
        "saving the rollback changes nothing"
    );
    let operations: Vec<&str> = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["call"]["operation"].as_str())
        .collect();
    assert_eq!(
        operations.first(),
        Some(&"DisableEbsEncryptionByDefault"),
        "the last runbook is undone first: {operations:?}"
    );
    for expected in [
        "AuthorizeSecurityGroupEgress",
        "ModifySecurityGroupRules",
        "RevokeSecurityGroupEgress",
        "AuthorizeSecurityGroupIngress",
    ] {
        assert!(
            operations.contains(&expected),
            "{expected} in {operations:?}"
        );
    }
    assert!(
        plan["blocked"].as_array().is_none_or(Vec::is_empty),
        "{}",
        plan["blocked"]
    );

    let out = harden(&emulator, state.path(), &["rollback", &run_id, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        describe(&emulator),
        seeded,
        "every rule back with its description, encryption by default off again"
    );
    emulator.assert_audit_verifies(state.path());
    let listed = runs(&emulator, state.path());
    let first = listed
        .iter()
        .find(|r| r["run_id"] == run_id.as_str())
        .expect("the run");
    assert_eq!(first["state"], "rolled_back", "{listed:?}");
    let out = harden(&emulator, state.path(), &["rollback", &run_id, "--yes"]);
    assert_eq!(
        out.code, 1,
        "a run rolled back is not undone twice:\n{}",
        out.stdout
    );
    assert_eq!(describe(&emulator), seeded);

    // Again, after someone changed one group: that group is refused with the reason,
    // and the saved rollback of the rest is applied like any plan.
    let run_id = apply(&emulator, state.path());
    block_on(async {
        emulator
            .ec2(REGION)
            .authorize_security_group_egress()
            .group_id(&web)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(22)
                    .to_port(22)
                    .ip_ranges(IpRange::builder().cidr_ip("10.0.0.0/8").build())
                    .build(),
            )
            .send()
            .await
            .expect("someone's change")
    });
    let before_rollback = describe(&emulator);
    let (plan, shown) = save(&run_id);
    assert!(
        shown.contains("no way back") && shown.contains("changed since the run"),
        "the changed group is refused with the reason:\n{shown}"
    );
    assert!(
        plan["blocked"]
            .as_array()
            .is_some_and(|b| !b.is_empty() && b.iter().all(|b| b["resource"]["id"] == web.as_str())),
        "{}",
        plan["blocked"]
    );
    let out = harden(
        &emulator,
        state.path(),
        &["apply", "--yes", "--plan", saved.to_str().expect("utf-8")],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let after = describe(&emulator);
    let key = after
        .0
        .keys()
        .find(|(_, name)| name == "web")
        .cloned()
        .expect("web");
    assert_eq!(
        after.0[&key], before_rollback.0[&key],
        "the group changed since the run is left as it is"
    );
    for (group, rules) in &seeded.0 {
        if group != &key {
            assert_eq!(&after.0[group], rules, "{group:?} is back as seeded");
        }
    }
    assert!(!after.1, "encryption by default off again");
    emulator.assert_audit_verifies(state.path());
}

/// The flow-log runbook's rollback: the flow logs it created are deleted by their ids;
/// the log bucket it created (and set up) has no inverse yet, so it is listed as no way
/// back and left as it is, and the rollback exits 1 saying so.
#[test]
fn flow_logs_a_run_created_are_deleted_and_its_bucket_is_refused_with_the_reason_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    let state = tempfile::tempdir().expect("state");
    let ec2 = emulator.ec2(REGION);
    block_on(async {
        create_vpc(&ec2, "10.8.0.0/16").await;
    });
    let count = || {
        block_on(async {
            ec2.describe_flow_logs()
                .send()
                .await
                .expect("flow logs")
                .flow_logs()
                .len()
        })
    };
    assert_eq!(count(), 0);
    let out = harden(
        &emulator,
        state.path(),
        &[
            "apply",
            "runbooks/enable-vpc-flow-logs.yaml",
            "--yes",
            "--region",
            REGION,
        ],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let run_id = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Apply "))
        .and_then(|l| l.strip_suffix(':'))
        .expect("the run id")
        .to_string();
    let made = count();
    assert!(
        made >= 2,
        "a flow log per VPC, the default one's too: {made}"
    );

    let out = harden(&emulator, state.path(), &["rollback", &run_id, "--yes"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(count(), 0, "every flow log it created is gone");
    assert!(
        out.stdout.contains("no way back") && out.stdout.contains("s3:ensure-bucket"),
        "the bucket is refused, naming the action:\n{}",
        out.stdout
    );
    let bucket = format!("harden-flowlogs-{}-{REGION}", emulator.account());
    block_on(async {
        emulator
            .s3(REGION)
            .head_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("the bucket is left as it is")
    });
    emulator.assert_audit_verifies(state.path());
}
