//! `harden rollback` on moto: the security-group runbooks and EBS encryption by default
//! applied to a seeded account, then undone, and a full describe compared with the
//! seeded state (every group's rules with their descriptions, the region's setting).
//! Then a resource changed after the run is refused with the reason while the rest is
//! undone. The same round trip for CloudTrail (a trail and bucket created, a trail
//! fixed in place) and the flow logs.

use std::collections::BTreeMap;
use std::path::Path;

use aws_sdk_ec2::types::{IpPermission, IpRange, Ipv6Range};
use serde_json::Value;

use crate::support::{Emulator, Harness, Kind, block_on, create_vpc};

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

fn apply(emulator: &Emulator, state: &Path) -> String {
    let mut args = vec!["apply"];
    args.extend(RUNBOOKS);
    args.extend(["--yes", "--region", REGION]);
    Harness::new(emulator, state).apply(&args).0
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
        let out = Harness::new(&emulator, state.path()).run(&[
            "rollback",
            run_id,
            "--out",
            saved.to_str().expect("utf-8"),
        ]);
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

    let out = Harness::new(&emulator, state.path()).run(&["rollback", &run_id, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        describe(&emulator),
        seeded,
        "every rule back with its description, encryption by default off again"
    );
    emulator.assert_audit_verifies(state.path());
    let listed = Harness::new(&emulator, state.path()).runs();
    let first = listed
        .iter()
        .find(|r| r["run_id"] == run_id.as_str())
        .expect("the run");
    assert_eq!(first["state"], "rolled_back", "{listed:?}");
    let out = Harness::new(&emulator, state.path()).run(&["rollback", &run_id, "--yes"]);
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
    let out = Harness::new(&emulator, state.path()).run(&[
        "apply",
        "--yes",
        "--plan",
        saved.to_str().expect("utf-8"),
    ]);
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
/// the log bucket it created is deleted only while empty, and this one holds a log
/// file (as delivery would have written), so S3 refuses, the bucket and its object
/// stay, and the rollback exits 1 saying why.
#[test]
fn flow_logs_a_run_created_are_deleted_and_its_bucket_holding_logs_is_kept_on_moto() {
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
    let (run_id, _) = Harness::new(&emulator, state.path()).apply(&[
        "apply",
        "runbooks/enable-vpc-flow-logs.yaml",
        "--yes",
        "--region",
        REGION,
    ]);
    let made = count();
    assert!(
        made >= 2,
        "a flow log per VPC, the default one's too: {made}"
    );

    let bucket = format!("harden-flowlogs-{}-{REGION}", emulator.account());
    let s3 = emulator.s3(REGION);
    let log = "AWSLogs/flow.log.gz";
    // The run's policy denies requests without TLS, which moto enforces and this test
    // cannot send: the policy steps aside for the write and comes back as it was.
    block_on(async {
        let policy = s3
            .get_bucket_policy()
            .bucket(&bucket)
            .send()
            .await
            .expect("the run's bucket policy")
            .policy()
            .expect("a policy")
            .to_string();
        s3.delete_bucket_policy()
            .bucket(&bucket)
            .send()
            .await
            .expect("policy aside");
        s3.put_object()
            .bucket(&bucket)
            .key(log)
            .body(b"delivered".to_vec().into())
            .send()
            .await
            .expect("a delivered log file");
        s3.put_bucket_policy()
            .bucket(&bucket)
            .policy(policy)
            .send()
            .await
            .expect("policy back");
    });

    let out = Harness::new(&emulator, state.path()).run(&["rollback", &run_id, "--yes"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(count(), 0, "every flow log it created is gone");
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(
        said.contains("DeleteBucket") && said.contains("BucketNotEmpty"),
        "the bucket's deletion is refused with S3's reason:\n{said}"
    );
    block_on(async {
        s3.head_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("the bucket is left as it is")
    });
    emulator.assert_audit_verifies(state.path());
}

/// A full describe of the region's trails and the account's buckets: every trail as
/// DescribeTrails answers it, whether it is logging, its selectors, the bucket names.
fn describe_trails_and_buckets(emulator: &Emulator) -> String {
    let ct = emulator.cloudtrail(REGION);
    let s3 = emulator.s3(REGION);
    block_on(async {
        let trails = ct.describe_trails().send().await.expect("trails");
        let mut described = Vec::new();
        for trail in trails.trail_list() {
            let name = trail.name().unwrap_or_default();
            let status = ct
                .get_trail_status()
                .name(name)
                .send()
                .await
                .expect("status");
            let selectors = ct
                .get_event_selectors()
                .trail_name(name)
                .send()
                .await
                .expect("selectors");
            described.push(format!(
                "{trail:?}\nlogging: {:?}\n{:?}\n{:?}",
                status.is_logging(),
                selectors.event_selectors(),
                selectors.advanced_event_selectors()
            ));
        }
        let buckets = s3.list_buckets().send().await.expect("buckets");
        let names: Vec<&str> = buckets.buckets().iter().filter_map(|b| b.name()).collect();
        format!("{}\nbuckets: {names:?}", described.join("\n"))
    })
}

/// Applies `runbook`, rolls the run back, and returns the rollback's output after
/// checking that both exited 0.
fn round_trip(emulator: &Emulator, state: &Path, runbook: &str) -> String {
    let (run_id, _) =
        Harness::new(emulator, state).apply(&["apply", runbook, "--yes", "--region", REGION]);
    let out = Harness::new(emulator, state).run(&["rollback", &run_id, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    out.stdout
}

/// With no trail, the run creates a bucket and a trail (and sets both up); the
/// rollback deletes the trail, then the bucket, each once: their settings go with
/// them. The account is as seeded, and the next plan wants them again.
#[test]
fn a_trail_and_bucket_a_run_created_are_deleted_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    let state = tempfile::tempdir().expect("state");
    let seeded = describe_trails_and_buckets(&emulator);
    assert_eq!(seeded, "\nbuckets: []", "moto starts empty");

    let rollback = round_trip(&emulator, state.path(), "runbooks/enable-cloudtrail.yaml");
    assert_eq!(describe_trails_and_buckets(&emulator), seeded);
    let deletes: Vec<&str> = rollback
        .lines()
        .filter(|l| l.contains("which the run created"))
        .collect();
    assert_eq!(
        deletes.len(),
        2,
        "one deletion each for the trail and the bucket:\n{rollback}"
    );
    let out = Harness::new(&emulator, state.path()).run(&[
        "plan",
        "runbooks/enable-cloudtrail.yaml",
        "--region",
        REGION,
        "--detailed-exitcode",
    ]);
    assert_eq!(out.code, 2, "{}\n{}", out.stdout, out.stderr);
    emulator.assert_audit_verifies(state.path());
}

/// A single-region trail, not logging, recording only write events, is fixed in place
/// by the run; the rollback puts its flags and selectors back and stops it logging, as
/// it was: a full describe equals the seeded one.
#[test]
fn a_trail_fixed_in_place_gets_its_settings_back_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    let state = tempfile::tempdir().expect("state");
    block_on(crate::cloudtrail::seed_team_trail(
        &emulator.cloudtrail(REGION),
        &emulator.s3(REGION),
    ));
    let seeded = describe_trails_and_buckets(&emulator);

    let rollback = round_trip(&emulator, state.path(), "runbooks/enable-cloudtrail.yaml");
    assert_eq!(describe_trails_and_buckets(&emulator), seeded);
    for undo in ["flags back", "event selectors back", "stop logging"] {
        assert!(rollback.contains(undo), "{undo}:\n{rollback}");
    }
    emulator.assert_audit_verifies(state.path());
}

/// A full describe of what the CloudWatch flow-log runbook touches: each region's log
/// groups (name, retention, key), the delivery role's trust and inline policies, and
/// each region's flow logs (VPC, destination, role).
fn describe_cloud_watch_delivery(emulator: &Emulator, regions: &[&str]) -> String {
    let iam = emulator.iam();
    block_on(async {
        let mut described = Vec::new();
        for region in regions {
            let groups = emulator
                .logs(region)
                .describe_log_groups()
                .send()
                .await
                .expect("log groups");
            for g in groups.log_groups() {
                described.push(format!(
                    "{region} log group {:?} retention {:?} key {:?}",
                    g.log_group_name(),
                    g.retention_in_days(),
                    g.kms_key_id()
                ));
            }
            let flow_logs = emulator
                .ec2(region)
                .describe_flow_logs()
                .send()
                .await
                .expect("flow logs");
            for f in flow_logs.flow_logs() {
                described.push(format!(
                    "{region} flow log of {:?} to {:?} {:?} as {:?}",
                    f.resource_id(),
                    f.log_destination_type(),
                    f.log_group_name(),
                    f.deliver_logs_permission_arn()
                ));
            }
        }
        let roles = iam.list_roles().send().await.expect("roles");
        for role in roles.roles() {
            let name = role.role_name();
            let trust = role.assume_role_policy_document().map(|d| {
                percent_encoding::percent_decode_str(d)
                    .decode_utf8_lossy()
                    .into_owned()
            });
            let mut policies = Vec::new();
            let names = iam
                .list_role_policies()
                .role_name(name)
                .send()
                .await
                .expect("role policies");
            for policy in names.policy_names() {
                let document = iam
                    .get_role_policy()
                    .role_name(name)
                    .policy_name(policy)
                    .send()
                    .await
                    .expect("role policy");
                policies.push(format!("{policy}: {}", document.policy_document()));
            }
            described.push(format!("role {name} trust {trust:?} policies {policies:?}"));
        }
        described.sort();
        described.join("\n")
    })
}

/// Flow logs to CloudWatch Logs over two regions, where eu-west-1 has the log group
/// already (kept forever) and the delivery role exists with a looser trust and another
/// inline policy: the run creates the us-east-2 group and the flow logs, sets the
/// retention, tightens the trust and adds its policy. The rollback deletes what it
/// created (the flow logs, the empty group) and puts the rest back: a full describe
/// equals the seeded one.
#[test]
fn flow_logs_to_cloud_watch_and_their_log_groups_and_role_are_rolled_back_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    let state = tempfile::tempdir().expect("state");
    let regions = ["eu-west-1", "us-east-2"];
    let role = "harden-vpc-flow-logs-delivery";
    block_on(async {
        emulator
            .logs(regions[0])
            .create_log_group()
            .log_group_name("harden-vpc-flow-logs")
            .send()
            .await
            .expect("log group");
        let iam = emulator.iam();
        iam.create_role()
            .role_name(role)
            .assume_role_policy_document(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"vpc-flow-logs.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
            )
            .send()
            .await
            .expect("role");
        iam.put_role_policy()
            .role_name(role)
            .policy_name("keep-me")
            .policy_document(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"logs:DescribeLogGroups","Resource":"*"}]}"#,
            )
            .send()
            .await
            .expect("role policy");
    });
    let seeded = describe_cloud_watch_delivery(&emulator, &regions);

    let apply_args = [
        "apply",
        "runbooks/enable-vpc-flow-logs.yaml",
        "--param",
        "destination_type=cloud-watch-logs",
        "--region",
        regions[0],
        "--region",
        regions[1],
        "--yes",
    ];
    let (run_id, first_apply) = Harness::new(&emulator, state.path()).apply(&apply_args);
    for operation in [
        "UpdateAssumeRolePolicy",
        "PutRolePolicy",
        "PutRetentionPolicy",
        "CreateLogGroup",
    ] {
        assert!(
            first_apply.contains(operation),
            "{operation}:\n{first_apply}"
        );
    }
    assert_ne!(describe_cloud_watch_delivery(&emulator, &regions), seeded);

    let out = Harness::new(&emulator, state.path()).run(&["rollback", &run_id, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(describe_cloud_watch_delivery(&emulator, &regions), seeded);

    // Again with nothing prepared: the run creates both groups and the role; one group
    // has a log stream by the rollback (something was delivered), so it stays, and
    // the rest of what the run made goes.
    block_on(async {
        emulator
            .logs(regions[0])
            .delete_log_group()
            .log_group_name("harden-vpc-flow-logs")
            .send()
            .await
            .expect("log group gone");
        let iam = emulator.iam();
        iam.delete_role_policy()
            .role_name(role)
            .policy_name("keep-me")
            .send()
            .await
            .expect("policy gone");
        iam.delete_role()
            .role_name(role)
            .send()
            .await
            .expect("role gone");
    });
    let bare = describe_cloud_watch_delivery(&emulator, &regions);
    let (run_id, _) = Harness::new(&emulator, state.path()).apply(&apply_args);
    block_on(async {
        emulator
            .logs(regions[1])
            .create_log_stream()
            .log_group_name("harden-vpc-flow-logs")
            .log_stream_name("eni-0123-all")
            .send()
            .await
            .expect("a delivered stream")
    });
    let out = Harness::new(&emulator, state.path()).run(&["rollback", &run_id, "--yes"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(
        said.contains("log group harden-vpc-flow-logs is not empty (log stream eni-0123-all)"),
        "the group is kept, saying why:\n{said}"
    );
    let left = describe_cloud_watch_delivery(&emulator, &regions);
    let kept: Vec<&str> = left.lines().filter(|l| !bare.contains(l)).collect();
    assert_eq!(
        kept,
        [r#"us-east-2 log group Some("harden-vpc-flow-logs") retention Some(365) key None"#],
        "only the group holding a stream is left of the run:\n{left}"
    );
    emulator.assert_audit_verifies(state.path());
}

/// A full describe of the region's AWS Config setup and what it uses: the recorders as
/// AWS describes them, whether each records, the delivery channels, the buckets and
/// the roles under Config's service-linked path.
fn describe_config(emulator: &Emulator) -> String {
    let config = emulator.config(REGION);
    block_on(async {
        let recorders = config
            .describe_configuration_recorders()
            .send()
            .await
            .expect("recorders");
        let statuses = config
            .describe_configuration_recorder_status()
            .send()
            .await
            .expect("status");
        let recording: Vec<(Option<&str>, bool)> = statuses
            .configuration_recorders_status()
            .iter()
            .map(|s| (s.name(), s.recording()))
            .collect();
        let channels = config
            .describe_delivery_channels()
            .send()
            .await
            .expect("channels");
        let buckets = emulator
            .s3(REGION)
            .list_buckets()
            .send()
            .await
            .expect("buckets");
        let buckets: Vec<&str> = buckets.buckets().iter().filter_map(|b| b.name()).collect();
        let roles = emulator
            .iam()
            .list_roles()
            .path_prefix("/aws-service-role/config.amazonaws.com/")
            .send()
            .await
            .expect("roles");
        let roles: Vec<&str> = roles.roles().iter().map(|r| r.role_name()).collect();
        format!(
            "{:?}\nrecording {recording:?}\n{:?}\nbuckets {buckets:?}\nroles {roles:?}",
            recorders.configuration_recorders(),
            channels.delivery_channels()
        )
    })
}

/// An empty region gets the service-linked role, a bucket, a recorder and a channel,
/// started; the rollback stops the recorder, deletes the channel, the recorder, the
/// bucket and the role, each made by the run: a full describe equals the empty one.
#[test]
fn an_aws_config_setup_a_run_created_is_deleted_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    let state = tempfile::tempdir().expect("state");
    let seeded = describe_config(&emulator);
    let rollback = round_trip(&emulator, state.path(), "runbooks/enable-aws-config.yaml");
    assert_eq!(describe_config(&emulator), seeded);
    for undo in [
        "StopConfigurationRecorder",
        "DeleteDeliveryChannel",
        "DeleteConfigurationRecorder",
        "DeleteBucket",
        "DeleteServiceLinkedRole",
    ] {
        assert!(rollback.contains(undo), "{undo}:\n{rollback}");
    }
    emulator.assert_audit_verifies(state.path());
}

/// A stopped recorder of all supported types, with a role of its own, without global
/// types, and a channel of its own: the run gives it the service-linked role (which it
/// creates) and starts it; the rollback stops it and gives it its role back, and
/// deletes the role the run created.
#[test]
fn a_recorder_the_run_changed_gets_its_role_back_and_is_stopped_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    let state = tempfile::tempdir().expect("state");
    let config = emulator.config(REGION);
    let account = emulator.account();
    block_on(async {
        crate::support::create_bucket(&emulator.s3(REGION), "team-config", "eu-west-1").await;
        config
            .put_configuration_recorder()
            .configuration_recorder(
                aws_sdk_config::types::ConfigurationRecorder::builder()
                    .name("team-recorder")
                    .role_arn(format!("arn:aws:iam::{account}:role/team-config"))
                    .recording_group(
                        aws_sdk_config::types::RecordingGroup::builder()
                            .all_supported(true)
                            .include_global_resource_types(false)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("recorder");
        config
            .put_delivery_channel()
            .delivery_channel(
                aws_sdk_config::types::DeliveryChannel::builder()
                    .name("team-channel")
                    .s3_bucket_name("team-config")
                    .build(),
            )
            .send()
            .await
            .expect("channel");
    });
    let seeded = describe_config(&emulator);
    let rollback = round_trip(&emulator, state.path(), "runbooks/enable-aws-config.yaml");
    assert_eq!(describe_config(&emulator), seeded);
    for undo in [
        "StopConfigurationRecorder",
        "give recorder team-recorder its role and global recording back",
        "DeleteServiceLinkedRole",
    ] {
        assert!(rollback.contains(undo), "{undo}:\n{rollback}");
    }
    emulator.assert_audit_verifies(state.path());
}

/// A full describe of what the alerting runbook touches: the rule as EventBridge
/// describes it with its targets, the queues, and the topics with their subscriptions.
fn describe_alerting(emulator: &Emulator) -> String {
    let config = emulator.sdk_config(REGION);
    let events = aws_sdk_eventbridge::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);
    block_on(async {
        let mut described = Vec::new();
        let rules = events.list_rules().send().await.expect("rules");
        for rule in rules.rules() {
            let name = rule.name().unwrap_or_default();
            let targets = events
                .list_targets_by_rule()
                .rule(name)
                .send()
                .await
                .expect("targets");
            let targets: Vec<(Option<&str>, Option<&str>)> = targets
                .targets()
                .iter()
                .map(|t| (Some(t.id()), Some(t.arn())))
                .collect();
            described.push(format!(
                "rule {name} {:?} {:?} {:?} targets {targets:?}",
                rule.event_pattern(),
                rule.state(),
                rule.description()
            ));
        }
        let queues = sqs.list_queues().send().await.expect("queues");
        described.push(format!("queues {:?}", queues.queue_urls()));
        let topics = sns.list_topics().send().await.expect("topics");
        described.push(format!("topics {:?}", topics.topics()));
        let subscriptions = sns
            .list_subscriptions()
            .send()
            .await
            .expect("subscriptions");
        described.push(format!("subscriptions {:?}", subscriptions.subscriptions()));
        described.join("\n")
    })
}

/// The alerting runbook over a rule of the same name that someone else made (disabled,
/// another pattern, their own target): the run corrects the rule, adds harden's target,
/// and creates both queues and the notification topic with its subscription. The
/// rollback deletes what it created, removes its target and gives the rule back its
/// pattern and state: a full describe equals the seeded one.
#[test]
fn the_alerting_runbook_is_rolled_back_around_a_rule_that_was_there_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    let state = tempfile::tempdir().expect("state");
    let events = aws_sdk_eventbridge::Client::new(&emulator.sdk_config(REGION));
    let theirs = format!("arn:aws:sqs:{REGION}:{}:theirs", emulator.account());
    block_on(async {
        events
            .put_rule()
            .name("harden-security-events")
            .event_pattern(r#"{"source":["aws.ec2"]}"#)
            .state(aws_sdk_eventbridge::types::RuleState::Disabled)
            .description("made by the platform team")
            .send()
            .await
            .expect("rule");
        events
            .put_targets()
            .rule("harden-security-events")
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("theirs")
                    .arn(&theirs)
                    .build()
                    .expect("a target"),
            )
            .send()
            .await
            .expect("their target");
    });
    let seeded = describe_alerting(&emulator);

    let apply_args = [
        "apply",
        "runbooks/alert-on-security-changes.yaml",
        "--param",
        "notify_email=oncall@example.com",
        "--yes",
        "--region",
        REGION,
    ];
    let (run_id, _) = Harness::new(&emulator, state.path()).apply(&apply_args);
    assert_ne!(describe_alerting(&emulator), seeded);
    let out = Harness::new(&emulator, state.path()).run(&["rollback", &run_id, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(describe_alerting(&emulator), seeded);
    for undo in ["RemoveTargets", "DeleteTopic", "DeleteQueue"] {
        assert!(out.stdout.contains(undo), "{undo}:\n{}", out.stdout);
    }

    // Again without their rule: the run creates it too, and the rollback deletes it
    // with the targets on it.
    block_on(async {
        events
            .remove_targets()
            .rule("harden-security-events")
            .ids("theirs")
            .send()
            .await
            .expect("their target gone");
        events
            .delete_rule()
            .name("harden-security-events")
            .send()
            .await
            .expect("their rule gone");
    });
    let bare = describe_alerting(&emulator);
    let (run_id, _) = Harness::new(&emulator, state.path()).apply(&apply_args);
    let out = Harness::new(&emulator, state.path()).run(&["rollback", &run_id, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("DeleteRule"), "{}", out.stdout);
    assert_eq!(describe_alerting(&emulator), bare);
    emulator.assert_audit_verifies(state.path());
}

/// The alerting queues and topic as a person would compare them: every queue's
/// attributes but the counters and timestamps SQS keeps itself, and every topic's key.
fn describe_queues_and_topics(emulator: &Emulator) -> String {
    let config = emulator.sdk_config(REGION);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);
    block_on(async {
        let mut described = Vec::new();
        let queues = sqs.list_queues().send().await.expect("queues");
        for url in queues.queue_urls() {
            let attributes = sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
                .send()
                .await
                .expect("queue attributes");
            let kept: BTreeMap<String, String> = attributes
                .attributes()
                .into_iter()
                .flatten()
                .map(|(name, value)| (name.as_str().to_string(), value.clone()))
                .filter(|(name, _)| {
                    !name.starts_with("Approximate") && !name.ends_with("Timestamp")
                })
                .collect();
            described.push(format!("queue {url} {kept:?}"));
        }
        let topics = sns.list_topics().send().await.expect("topics");
        for topic in topics.topics() {
            let arn = topic.topic_arn().unwrap_or_default();
            let attributes = sns
                .get_topic_attributes()
                .topic_arn(arn)
                .send()
                .await
                .expect("topic attributes");
            let key = attributes
                .attributes()
                .and_then(|a| a.get("KmsMasterKeyId"))
                .cloned();
            described.push(format!("topic {arn} key {key:?}"));
        }
        described.join("\n")
    })
}

/// A dead-letter queue and a notification topic that were there, drifted (a shorter
/// visibility timeout, no encryption; the topic unencrypted, the on-call address
/// already subscribed): the run corrects both in place with SetQueueAttributes and
/// SetTopicAttributes, and the rollback sets exactly the attributes it changed back,
/// deleting the queue and rule it created: every queue's attributes and every topic's
/// key equal the seeded ones.
#[test]
fn queues_and_a_topic_that_were_there_get_their_attributes_back_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    let state = tempfile::tempdir().expect("state");
    let config = emulator.sdk_config(REGION);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let sns = aws_sdk_sns::Client::new(&config);
    block_on(async {
        sqs.create_queue()
            .queue_name("harden-security-events-dlq")
            .attributes(
                aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
                "30",
            )
            .send()
            .await
            .expect("drifted dead-letter queue");
        let topic = sns
            .create_topic()
            .name("harden-security-events-notify")
            .send()
            .await
            .expect("unencrypted topic");
        sns.subscribe()
            .topic_arn(topic.topic_arn().expect("arn"))
            .protocol("email")
            .endpoint("oncall@example.com")
            .send()
            .await
            .expect("subscribed");
    });
    let seeded = (
        describe_alerting(&emulator),
        describe_queues_and_topics(&emulator),
    );
    let (run_id, applied_out) = Harness::new(&emulator, state.path()).apply(&[
        "apply",
        "runbooks/alert-on-security-changes.yaml",
        "--param",
        "notify_email=oncall@example.com",
        "--yes",
        "--region",
        REGION,
    ]);
    for correction in ["SetQueueAttributes", "SetTopicAttributes"] {
        assert!(
            applied_out.contains(correction),
            "{correction}:\n{applied_out}"
        );
    }
    assert_ne!(describe_queues_and_topics(&emulator), seeded.1);
    let out = Harness::new(&emulator, state.path()).run(&["rollback", &run_id, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for undo in [
        "SetQueueAttributes",
        "SetTopicAttributes",
        "DeleteQueue",
        "DeleteRule",
    ] {
        assert!(out.stdout.contains(undo), "{undo}:\n{}", out.stdout);
    }
    assert_eq!(
        (
            describe_alerting(&emulator),
            describe_queues_and_topics(&emulator)
        ),
        seeded
    );
    emulator.assert_audit_verifies(state.path());
}

/// Flow logs to a bucket that was there, bare: the run blocks its public access, turns
/// versioning on and gives it a policy. The rollback deletes the flow logs and the
/// policy; versioning turned on for the first time cannot be turned off (S3 only
/// suspends it), so it and the run's earlier changes of the bucket are left, each
/// named with the reason, and the rollback exits 1.
#[test]
fn a_bucket_that_was_there_loses_the_policy_the_run_gave_it_and_keeps_versioning_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    let state = tempfile::tempdir().expect("state");
    let bucket = format!("harden-flowlogs-{}-{REGION}", emulator.account());
    let s3 = emulator.s3(REGION);
    block_on(crate::support::create_bucket(&s3, &bucket, REGION));
    let (run_id, stdout) = Harness::new(&emulator, state.path()).apply(&[
        "apply",
        "runbooks/enable-vpc-flow-logs.yaml",
        "--yes",
        "--region",
        REGION,
    ]);
    for operation in ["PutBucketVersioning", "PutBucketPolicy", "CreateFlowLogs"] {
        assert!(stdout.contains(operation), "{operation}:\n{stdout}");
    }

    let out = Harness::new(&emulator, state.path()).run(&["rollback", &run_id, "--yes"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("versioning of bucket") && out.stdout.contains("only suspend"),
        "versioning is refused with the reason:\n{}",
        out.stdout
    );
    block_on(async {
        let policy = s3.get_bucket_policy().bucket(&bucket).send().await;
        assert!(policy.is_err(), "the run's policy is gone: {policy:?}");
        let enabled = match s3.get_bucket_versioning().bucket(&bucket).send().await {
            Ok(out) => out.status() == Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled),
            // moto's answer has another root element, which the SDK refuses; the
            // status in it is right (see `actions::s3::versioning_from_body`).
            Err(e) => e
                .raw_response()
                .and_then(|r| r.body().bytes())
                .is_some_and(|b| String::from_utf8_lossy(b).contains("<Status>Enabled</Status>")),
        };
        assert!(enabled, "versioning is left on");
        let flow_logs = emulator
            .ec2(REGION)
            .describe_flow_logs()
            .send()
            .await
            .expect("flow logs");
        assert!(flow_logs.flow_logs().is_empty(), "the flow logs are gone");
    });
    emulator.assert_audit_verifies(state.path());
}

/// The EBS runbook's rollback on moto: a running instance whose root and data volume
/// were swapped for encrypted copies, and an unattached volume replaced by one. The
/// rollback stops the instance once, puts each original back at its device with its
/// DeleteOnTermination and starts it again; the originals lose `harden:replaced-by`
/// and read exactly as before the run; the copies are kept, detached and tagged
/// `harden:rolled-back` (they hold what was written to them), and the next plan
/// refuses to build on them.
#[test]
fn an_instance_swap_and_a_volume_replacement_are_undone_keeping_the_copies_on_moto() {
    use crate::ebs_instances::{launch, layout, tag_volumes, volumes};
    const EBS: &str = "runbooks/encrypt-ebs-volumes.yaml";
    let emulator = Emulator::start(Kind::Moto);
    let state = tempfile::tempdir().expect("state");
    let ec2 = emulator.ec2(REGION);
    let (web, spare) = block_on(async {
        let web = launch(&ec2, &[("Name", "web")]).await;
        tag_volumes(&ec2, &web, "web").await;
        let spare = ec2
            .create_volume()
            .availability_zone("eu-west-1a")
            .size(3)
            .encrypted(false)
            .send()
            .await
            .expect("spare volume")
            .volume_id()
            .expect("id")
            .to_string();
        (web, spare)
    });
    let layout_before = block_on(layout(&ec2, &web));
    let volumes_before = block_on(volumes(&ec2));
    let (run_id, _) = Harness::new(&emulator, state.path()).apply(&[
        "apply",
        EBS,
        "--yes",
        "--region",
        REGION,
        "--param",
        "allow_stop=true",
    ]);
    assert_ne!(
        block_on(layout(&ec2, &web)).1,
        layout_before.1,
        "the run swapped the devices"
    );

    let out = Harness::new(&emulator, state.path()).run(&["rollback", &run_id, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        block_on(layout(&ec2, &web)),
        layout_before,
        "running again on its originals, each with its DeleteOnTermination"
    );
    let volumes_after = block_on(volumes(&ec2));
    for (id, before) in &volumes_before {
        assert_eq!(
            volumes_after.get(id),
            Some(before),
            "{id} reads as before the run"
        );
    }
    let cause = format!("rollback of {run_id}");
    let kept: Vec<_> = volumes_after
        .iter()
        .filter(|(id, _)| !volumes_before.contains_key(*id))
        .collect();
    assert_eq!(
        kept.len(),
        3,
        "the two copies of web and the spare's: {kept:?}"
    );
    for (id, (encrypted, state, _, _, tags)) in &kept {
        assert!(*encrypted && state == "available", "{id}: {state}");
        assert_eq!(tags.get("harden:rolled-back"), Some(&cause), "{id}");
    }
    assert!(
        kept.iter()
            .any(|(_, v)| v.4.get("harden:source-volume") == Some(&spare)),
        "the spare's copy is kept too"
    );

    // The next plan leaves both to a person, naming the rollback.
    let out = Harness::new(&emulator, state.path()).run(&[
        "plan",
        EBS,
        "--region",
        REGION,
        "--param",
        "allow_stop=true",
        "--format",
        "json",
    ]);
    let plan: Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    for resource in [&web, &spare] {
        let blocked = plan["blocked"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["resource"]["id"] == resource.as_str()))
            .unwrap_or_else(|| panic!("{resource} blocked: {plan:#}"));
        assert_eq!(blocked["reason"], "failing", "{blocked}");
        assert!(
            blocked["detail"]
                .as_str()
                .is_some_and(|d| d.contains(&format!("was undone ({cause})"))),
            "{blocked}"
        );
    }
    assert!(
        plan["changes"].as_array().is_some_and(|c| c
            .iter()
            .all(|c| c["call"]["operation"] == "EnableEbsEncryptionByDefault")),
        "nothing but the region's default (the rollback turned it off) is planned: {plan:#}"
    );
}
