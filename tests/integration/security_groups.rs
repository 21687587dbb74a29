//! The two security-group runbooks, planned, dry-run and applied together against
//! moto and LocalStack: exact plans, nothing changed by plan or dry-run, the exact
//! rules after apply, convergence, stale saved plans refused, and the audit chain.

use std::collections::BTreeSet;
use std::path::Path;

use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, Tag, TagSpecification, UserIdGroupPair,
};
use serde_json::Value;

use crate::support::{Emulator, Harness, Kind, block_on, create_vpc, run};

const REGION: &str = "eu-west-1";

/// What the seed created.
struct Seeded {
    default_a: String,
    default_in_use: String,
    web: String,
    compliant: String,
    exempt: String,
    excluded: String,
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

async fn default_group(ec2: &aws_sdk_ec2::Client, vpc: &str) -> String {
    ec2.describe_security_groups()
        .filters(filter("vpc-id", vpc))
        .filters(filter("group-name", "default"))
        .send()
        .await
        .expect("describe default group")
        .security_groups()[0]
        .group_id()
        .expect("group id")
        .to_string()
}

async fn new_group(
    ec2: &aws_sdk_ec2::Client,
    name: &str,
    vpc: &str,
    tags: &[(&str, &str)],
) -> String {
    let mut request = ec2
        .create_security_group()
        .group_name(name)
        .description(name)
        .vpc_id(vpc);
    if !tags.is_empty() {
        let mut spec = TagSpecification::builder()
            .resource_type(aws_sdk_ec2::types::ResourceType::SecurityGroup);
        for (k, v) in tags {
            spec = spec.tags(Tag::builder().key(*k).value(*v).build());
        }
        request = request.tag_specifications(spec.build());
    }
    request
        .send()
        .await
        .expect("create group")
        .group_id()
        .expect("id")
        .to_string()
}

fn tcp(port: i32, cidr: &str) -> IpPermission {
    IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(port)
        .to_port(port)
        .ip_ranges(IpRange::builder().cidr_ip(cidr).build())
        .build()
}

async fn seed(ec2: &aws_sdk_ec2::Client) -> Seeded {
    let vpc_a = create_vpc(ec2, "10.10.0.0/16").await;
    let vpc_b = create_vpc(ec2, "10.20.0.0/16").await;
    let default_a = default_group(ec2, &vpc_a).await;
    let default_in_use = default_group(ec2, &vpc_b).await;
    let subnet = ec2
        .create_subnet()
        .vpc_id(&vpc_b)
        .cidr_block("10.20.1.0/24")
        .send()
        .await
        .expect("subnet")
        .subnet()
        .and_then(|s| s.subnet_id())
        .expect("subnet id")
        .to_string();
    ec2.create_network_interface()
        .subnet_id(subnet)
        .groups(&default_in_use)
        .send()
        .await
        .expect("interface in the default group");

    // web: the open IPv4 egress every new group gets, plus open IPv6, plus narrow rules.
    let web = new_group(ec2, "web", &vpc_a, &[]).await;
    ec2.authorize_security_group_egress()
        .group_id(&web)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("-1")
                .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("::/0").build())
                .build(),
        )
        .ip_permissions(tcp(5432, "10.0.0.0/8"))
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(8080)
                .to_port(8080)
                .user_id_group_pairs(UserIdGroupPair::builder().group_id(&default_a).build())
                .build(),
        )
        .send()
        .await
        .expect("web egress");

    // compliant: only HTTPS out.
    let compliant = new_group(ec2, "compliant", &vpc_a, &[]).await;
    let open_ids: Vec<String> = rules(ec2, &compliant)
        .await
        .into_iter()
        .filter(|r| r.egress)
        .map(|r| r.id)
        .collect();
    ec2.authorize_security_group_egress()
        .group_id(&compliant)
        .ip_permissions(tcp(443, "0.0.0.0/0"))
        .send()
        .await
        .expect("443");
    ec2.revoke_security_group_egress()
        .group_id(&compliant)
        .set_security_group_rule_ids(Some(open_ids))
        .send()
        .await
        .expect("revoke");

    let exempt = new_group(ec2, "exempt", &vpc_a, &[("harden:exempt", "true")]).await;
    let excluded = new_group(ec2, "excluded", &vpc_a, &[]).await;
    Seeded {
        default_a,
        default_in_use,
        web,
        compliant,
        exempt,
        excluded,
    }
}

/// A rule as the tests compare it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SeenRule {
    egress: bool,
    protocol: String,
    from: i32,
    to: i32,
    peer: String,
    id: String,
}

async fn rules(ec2: &aws_sdk_ec2::Client, group: &str) -> Vec<SeenRule> {
    let out = ec2
        .describe_security_group_rules()
        .filters(filter("group-id", group))
        .send()
        .await
        .expect("rules");
    let mut rules: Vec<SeenRule> = out
        .security_group_rules()
        .iter()
        .map(|r| SeenRule {
            egress: r.is_egress().unwrap_or_default(),
            protocol: r.ip_protocol().unwrap_or_default().to_string(),
            from: r.from_port().unwrap_or(-1),
            to: r.to_port().unwrap_or(-1),
            peer: r
                .cidr_ipv4()
                .or(r.cidr_ipv6())
                .or(r.prefix_list_id())
                .map(str::to_string)
                .or_else(|| {
                    r.referenced_group_info()
                        .and_then(|g| g.group_id())
                        .map(str::to_string)
                })
                .unwrap_or_default(),
            id: r.security_group_rule_id().unwrap_or_default().to_string(),
        })
        .collect();
    rules.sort();
    rules
}

fn shape(rules: &[SeenRule]) -> BTreeSet<(bool, String, i32, i32, String)> {
    rules
        .iter()
        .map(|r| (r.egress, r.protocol.clone(), r.from, r.to, r.peer.clone()))
        .collect()
}

/// Every group and rule of the region, for "nothing changed" comparisons.
async fn snapshot(ec2: &aws_sdk_ec2::Client) -> String {
    let groups = ec2.describe_security_groups().send().await.expect("groups");
    let rules = ec2
        .describe_security_group_rules()
        .send()
        .await
        .expect("rules");
    let mut lines: Vec<String> = groups
        .security_groups()
        .iter()
        .map(|g| {
            format!(
                "{:?} {:?} {:?} {:?}",
                g.group_id(),
                g.group_name(),
                g.vpc_id(),
                g.tags()
            )
        })
        .chain(
            rules
                .security_group_rules()
                .iter()
                .map(|r| format!("{r:?}")),
        )
        .collect();
    lines.sort();
    lines.join("\n")
}

fn plan_json(emulator: &Emulator, state: &Path, extra: &[&str]) -> Value {
    let mut args = vec![
        "runbooks/close-default-security-groups.yaml",
        "runbooks/restrict-sg-egress.yaml",
        "--region",
        REGION,
    ];
    args.extend(extra);
    Harness::new(emulator, state).plan(&args)
}

fn scenario(kind: Kind) {
    let emulator = Emulator::start(kind);
    let ec2 = emulator.ec2(REGION);
    let seeded = block_on(seed(&ec2));
    let state = tempfile::tempdir().expect("state dir");
    let exclude = format!("--param=exclude_group_ids=[{}]", seeded.excluded);
    let before = block_on(snapshot(&ec2));
    let web_before = block_on(rules(&ec2, &seeded.web));
    let in_use_before = block_on(rules(&ec2, &seeded.default_in_use));
    let untouched: Vec<(String, Vec<SeenRule>)> = [
        &seeded.compliant,
        &seeded.exempt,
        &seeded.excluded,
        &seeded.default_in_use,
    ]
    .into_iter()
    .map(|g| (g.clone(), block_on(rules(&ec2, g))))
    .collect();

    // The plan is exact: every change, by runbook, resource and call.
    let plan = plan_json(&emulator, state.path(), &[&exclude]);
    assert_eq!(plan["accounts"][0]["id"], emulator.account());
    let changes: BTreeSet<(String, String, String)> = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["runbook"].as_str().unwrap_or_default().to_string(),
                c["resource"]["id"].as_str().unwrap_or_default().to_string(),
                c["call"]["operation"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let mut expected: BTreeSet<(String, String, String)> = BTreeSet::new();
    // Every default group not in use is closed, the region's own default VPC's too.
    let defaults = block_on(async {
        ec2.describe_security_groups()
            .filters(filter("group-name", "default"))
            .send()
            .await
            .expect("defaults")
    });
    for group in defaults.security_groups() {
        let id = group.group_id().unwrap_or_default().to_string();
        if id == seeded.default_in_use {
            continue;
        }
        let group_rules = block_on(rules(&ec2, &id));
        if group_rules.iter().any(|r| !r.egress) {
            expected.insert((
                "close-default-security-groups".into(),
                id.clone(),
                "RevokeSecurityGroupIngress".into(),
            ));
        }
        if group_rules.iter().any(|r| r.egress) {
            expected.insert((
                "close-default-security-groups".into(),
                id,
                "RevokeSecurityGroupEgress".into(),
            ));
        }
    }
    // web: the open IPv4 rule becomes HTTPS in place; the open IPv6 rule is revoked.
    expected.insert((
        "restrict-sg-egress".into(),
        seeded.web.clone(),
        "ModifySecurityGroupRules".into(),
    ));
    expected.insert((
        "restrict-sg-egress".into(),
        seeded.web.clone(),
        "RevokeSecurityGroupEgress".into(),
    ));
    assert_eq!(changes, expected, "plan changes");
    assert!(expected.iter().any(|(_, id, _)| *id == seeded.default_a));

    let blocked: BTreeSet<(String, String, String)> = plan["blocked"]
        .as_array()
        .expect("blocked")
        .iter()
        .map(|b| {
            (
                b["runbook"].as_str().unwrap_or_default().to_string(),
                b["resource"]["id"].as_str().unwrap_or_default().to_string(),
                b["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected_blocked: BTreeSet<(String, String, String)> = [
        (
            "close-default-security-groups",
            &seeded.default_in_use,
            "in_use",
        ),
        ("restrict-sg-egress", &seeded.default_in_use, "in_use"),
        ("restrict-sg-egress", &seeded.exempt, "exempt"),
        ("restrict-sg-egress", &seeded.excluded, "excluded"),
    ]
    .into_iter()
    .map(|(r, id, why)| (r.to_string(), id.clone(), why.to_string()))
    .collect();
    assert_eq!(blocked, expected_blocked, "blocked changes");

    // Detailed exit code: 2 with changes pending.
    let out = Harness::new(&emulator, state.path()).run(&[
        "plan",
        "runbooks/close-default-security-groups.yaml",
        "runbooks/restrict-sg-egress.yaml",
        "--region",
        REGION,
        "--detailed-exitcode",
        &exclude,
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "Plan: 0 to create, 1 to update, {} to delete, 4 blocked.",
            expected.len() - 1
        )),
        "{}",
        out.stdout
    );

    // Dry-run probes every change and changes nothing.
    let out = Harness::new(&emulator, state.path()).run(&[
        "dry-run",
        "runbooks/close-default-security-groups.yaml",
        "runbooks/restrict-sg-egress.yaml",
        "--region",
        REGION,
        &exclude,
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout
            .matches("dry-run: would succeed (DryRunOperation)")
            .count(),
        expected.len(),
        "{}",
        out.stdout
    );
    assert_eq!(
        block_on(snapshot(&ec2)),
        before,
        "plan or dry-run changed the account"
    );

    // Without --yes and without a terminal to confirm on, apply refuses.
    let out = Harness::new(&emulator, state.path()).run(&[
        "apply",
        "runbooks/close-default-security-groups.yaml",
        "runbooks/restrict-sg-egress.yaml",
        "--region",
        REGION,
        &exclude,
    ]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("refusing to apply without confirmation"),
        "{}",
        out.stderr
    );
    assert_eq!(
        block_on(snapshot(&ec2)),
        before,
        "a refused apply changed the account"
    );

    // Apply.
    let out = Harness::new(&emulator, state.path()).run(&[
        "apply",
        "runbooks/close-default-security-groups.yaml",
        "runbooks/restrict-sg-egress.yaml",
        "--region",
        REGION,
        "--yes",
        &exclude,
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "{} succeeded, 0 failed, 0 not attempted",
            expected.len()
        )),
        "{}",
        out.stdout
    );
    // The run's own audit records: one per change plus the apply summary.
    let run_id = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Apply ").and_then(|r| r.strip_suffix(':')))
        .expect("the apply names its run")
        .to_string();
    let shown = Harness::new(&emulator, state.path())
        .run(&["audit", "show", "--run", &run_id, "--format", "json"]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let shown: Vec<Value> = serde_json::from_str(&shown.stdout).expect("records JSON");
    assert_eq!(shown.len(), expected.len() + 1);
    assert!(shown.iter().all(|r| r["run_id"] == run_id.as_str()));
    assert_eq!(
        shown.last().map(|r| r["type"].clone()),
        Some(Value::from("apply"))
    );

    // web: allowed rule present, open rules gone, narrow rules kept (same ids).
    let web_after = block_on(rules(&ec2, &seeded.web));
    let group_peer = seeded.default_a.clone();
    assert_eq!(
        shape(&web_after),
        [
            (true, "tcp".to_string(), 443, 443, "0.0.0.0/0".to_string()),
            (
                true,
                "tcp".to_string(),
                5432,
                5432,
                "10.0.0.0/8".to_string()
            ),
            (true, "tcp".to_string(), 8080, 8080, group_peer),
        ]
        .into_iter()
        .collect(),
        "web egress after apply"
    );
    for kept in web_before
        .iter()
        .filter(|r| r.peer == "10.0.0.0/8" || r.peer == seeded.default_a)
    {
        assert!(
            web_after.iter().any(|r| r.id == kept.id),
            "narrow rule {} was replaced",
            kept.id
        );
    }
    assert!(
        block_on(rules(&ec2, &seeded.default_a)).is_empty(),
        "default group of VPC A is closed"
    );
    for (group, rules_before) in &untouched {
        assert_eq!(
            &block_on(rules(&ec2, group)),
            rules_before,
            "group {group} must be untouched"
        );
    }
    assert_eq!(block_on(rules(&ec2, &seeded.default_in_use)), in_use_before);

    // Convergence: nothing left to do.
    let out = Harness::new(&emulator, state.path()).run(&[
        "plan",
        "runbooks/close-default-security-groups.yaml",
        "runbooks/restrict-sg-egress.yaml",
        "--region",
        REGION,
        "--detailed-exitcode",
        &exclude,
    ]);
    assert_eq!(out.code, 0, "second plan: {}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("No changes."), "{}", out.stdout);

    // The audit log verifies and holds the revoked rules exactly.
    let out = Harness::new(&emulator, state.path()).run(&["audit", "verify"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let log = std::fs::read_to_string(state.path().join("audit.jsonl")).expect("audit log");
    let records: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("record"))
        .collect();
    let revoke_web = records
        .iter()
        .find(|r| {
            r["type"] == "change"
                && r["resource"]["id"] == seeded.web.as_str()
                && r["call"]["operation"] == "RevokeSecurityGroupEgress"
        })
        .expect("audit record of the web revoke");
    assert_eq!(revoke_web["outcome"]["status"], "succeeded");
    assert_eq!(
        revoke_web["principal"]
            .as_str()
            .map(|p| p.contains(emulator.account())),
        Some(true)
    );
    let revoked_id = web_before
        .iter()
        .find(|r| r.peer == "::/0")
        .map(|r| r.id.clone())
        .expect("seeded ::/0 rule");
    assert!(
        revoke_web["before"].to_string().contains(&revoked_id),
        "before holds the revoked rule"
    );
    assert!(
        !revoke_web["after"].to_string().contains(&revoked_id),
        "after no longer holds it"
    );
    assert!(!log.contains("\"test\""), "no credentials in the audit log");

    // One edited record breaks the chain at its line.
    let edited_line = records
        .iter()
        .position(|r| r["type"] == "change")
        .expect("a change record")
        + 1;
    let tampered: Vec<String> = log
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == edited_line {
                l.replace("\"succeeded\"", "\"failed\"")
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(state.path().join("audit.jsonl"), tampered.join("\n") + "\n").expect("tamper");
    let out = Harness::new(&emulator, state.path()).run(&["audit", "verify"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(&format!("line {edited_line}:")),
        "{}",
        out.stderr
    );
}

fn stale_plan(kind: Kind) {
    let emulator = Emulator::start(kind);
    let ec2 = emulator.ec2(REGION);
    let seeded = block_on(seed(&ec2));
    let state = tempfile::tempdir().expect("state dir");
    let plan_file = state.path().join("saved.json");
    let mut cmd = emulator.harden(state.path());
    cmd.args([
        "plan",
        "runbooks/restrict-sg-egress.yaml",
        "--region",
        REGION,
        "--out",
    ])
    .arg(&plan_file);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // Someone changes web after the plan was saved.
    block_on(async {
        ec2.authorize_security_group_egress()
            .group_id(&seeded.web)
            .ip_permissions(tcp(25, "0.0.0.0/0"))
            .send()
            .await
            .expect("drift")
    });
    let drifted = block_on(rules(&ec2, &seeded.web));

    let mut cmd = emulator.harden(state.path());
    cmd.args(["apply", "--yes", "--plan"]).arg(&plan_file);
    let out = run(cmd);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("stale plan") && out.stdout.contains(&seeded.web),
        "{}",
        out.stdout
    );
    assert_eq!(
        block_on(rules(&ec2, &seeded.web)),
        drifted,
        "a stale change must not be made"
    );

    // The refusal is audited as a failure, and the chain verifies.
    let log = std::fs::read_to_string(state.path().join("audit.jsonl")).expect("audit log");
    assert!(log.contains("\"code\":\"StalePlan\""), "{log}");
    assert_eq!(
        Harness::new(&emulator, state.path())
            .run(&["audit", "verify"])
            .code,
        0
    );

    // A saved plan applied while still fresh is applied exactly.
    let fresh = state.path().join("fresh.json");
    let mut cmd = emulator.harden(state.path());
    cmd.args([
        "plan",
        "runbooks/restrict-sg-egress.yaml",
        "--region",
        REGION,
        "--out",
    ])
    .arg(&fresh);
    assert_eq!(run(cmd).code, 0);
    let mut cmd = emulator.harden(state.path());
    cmd.args(["apply", "--yes", "--plan"]).arg(&fresh);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    // Exactly: the allowed rule, the drifted tcp 25 to the internet revoked with the
    // other open rules, the narrow rules kept under their ids.
    let web_after = block_on(rules(&ec2, &seeded.web));
    assert_eq!(
        shape(&web_after),
        [
            (true, "tcp".to_string(), 443, 443, "0.0.0.0/0".to_string()),
            (
                true,
                "tcp".to_string(),
                5432,
                5432,
                "10.0.0.0/8".to_string()
            ),
            (
                true,
                "tcp".to_string(),
                8080,
                8080,
                seeded.default_a.clone()
            ),
        ]
        .into_iter()
        .collect(),
        "web egress after the fresh plan"
    );
    let narrow = |rules: &[SeenRule]| -> Vec<String> {
        rules
            .iter()
            .filter(|r| r.egress && (r.from == 5432 || r.from == 8080))
            .map(|r| r.id.clone())
            .collect()
    };
    assert_eq!(
        narrow(&web_after),
        narrow(&drifted),
        "narrow rules kept as they were"
    );
    // The apply's audit summary names the exact plan file it executed.
    use sha2::Digest;
    let file_digest = hex::encode(sha2::Sha256::digest(
        std::fs::read(&fresh).expect("plan file"),
    ));
    let log = std::fs::read_to_string(state.path().join("audit.jsonl")).expect("audit log");
    let last: Value = serde_json::from_str(log.lines().last().expect("records")).expect("record");
    assert_eq!(last["type"], "apply");
    assert_eq!(last["plan_digest"], file_digest.as_str());
}

#[test]
fn security_group_runbooks_on_moto() {
    scenario(Kind::Moto);
}

#[test]
fn stale_saved_plan_is_refused_on_moto() {
    stale_plan(Kind::Moto);
}

/// LocalStack emulates EC2 security groups fully; both scenarios run on it too.
#[test]
fn security_group_runbooks_on_localstack() {
    scenario(Kind::LocalStack);
    stale_plan(Kind::LocalStack);
}

/// A saved plan edited after it was saved (the edits the issue measured being applied
/// without a word) is refused before any AWS call, naming what was edited; the plan as
/// saved still applies; an edit accepted on purpose is applied and audited as such.
#[test]
fn an_edited_saved_plan_is_refused_before_any_call_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    let ec2 = emulator.ec2(REGION);
    let seeded = block_on(seed(&ec2));
    let state = tempfile::tempdir().expect("state dir");
    let saved = state.path().join("saved.json");
    let exclude = format!("--param=exclude_group_ids=[{}]", seeded.excluded);
    let out = Harness::new(&emulator, state.path()).run(&[
        "plan",
        "runbooks/restrict-sg-egress.yaml",
        "--region",
        REGION,
        &exclude,
        "--out",
        saved.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(&saved).expect("plan");
    let plan: Value = serde_json::from_str(&text).expect("JSON");
    let web_change = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .position(|c| c["resource"]["id"] == seeded.web.as_str())
        .expect("a change of web");
    let web_id = plan["changes"][web_change]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let before = block_on(rules(&ec2, &seeded.excluded));
    let web_before = block_on(rules(&ec2, &seeded.web));

    type Edit = Box<dyn Fn(&mut Value)>;
    let edits: Vec<(&str, Edit, String)> = vec![
        (
            "a call's GroupId changed to an excluded group",
            Box::new({
                let excluded = seeded.excluded.clone();
                move |p: &mut Value| {
                    p["changes"][web_change]["call"]["input"]["GroupId"] = excluded.as_str().into()
                }
            }),
            format!("change {web_id} is not as saved"),
        ),
        (
            "a kind changed to no_op",
            Box::new(move |p: &mut Value| p["changes"][web_change]["kind"] = "no_op".into()),
            format!("change {web_id} is not as saved"),
        ),
        (
            "a change removed",
            Box::new(move |p: &mut Value| {
                p["changes"].as_array_mut().expect("changes").remove(0);
            }),
            "saved change(s) number 1 are missing".to_string(),
        ),
        (
            "another account",
            Box::new(|p: &mut Value| p["accounts"][0]["id"] = "210987654321".into()),
            "account 210987654321 is not one of the saved plan's (123456789012)".to_string(),
        ),
        (
            "another runbook digest",
            Box::new(|p: &mut Value| p["runbooks"][0]["digest"] = "0".repeat(64).into()),
            "runbook restrict-sg-egress's digest is 0000".to_string(),
        ),
    ];
    let edited = state.path().join("edited.json");
    let audit_lines = || {
        std::fs::read_to_string(state.path().join("audit.jsonl"))
            .expect("audit")
            .lines()
            .count()
    };
    let lines_before = audit_lines();
    for (what, edit, expected) in &edits {
        let mut plan = plan.clone();
        edit(&mut plan);
        std::fs::write(&edited, serde_json::to_string_pretty(&plan).expect("json")).expect("write");
        let out = Harness::new(&emulator, state.path()).run(&[
            "apply",
            "--yes",
            "--plan",
            edited.to_str().expect("utf-8"),
        ]);
        assert_eq!(out.code, 1, "{what}: {}\n{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains("refusing to apply an edited plan")
                && out.stderr.contains(expected.as_str()),
            "{what}: expected {expected:?} in:\n{}",
            out.stderr
        );
    }
    // Garbage after the plan: not a plan file at all.
    std::fs::write(&edited, format!("{text}{{\"changes\": []}}\n")).expect("write");
    let out = Harness::new(&emulator, state.path()).run(&[
        "apply",
        "--yes",
        "--plan",
        edited.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("not a harden plan file: trailing characters"),
        "{}",
        out.stderr
    );
    assert_eq!(audit_lines(), lines_before, "a refusal writes nothing");
    assert_eq!(block_on(rules(&ec2, &seeded.excluded)), before);
    assert_eq!(
        block_on(rules(&ec2, &seeded.web)),
        web_before,
        "nothing was applied"
    );

    // A call that cannot be made as written is refused before any call, even with
    // --accept-edited-plan: every such change is named, with the field.
    let mut broken = plan.clone();
    broken["changes"][web_change]["call"]["input"]["GroupId"] = 42.into();
    let last = broken["changes"].as_array().expect("changes").len() - 1;
    broken["changes"][last]["call"]["operation"] = "DeleteSecurityGroup".into();
    let last_id = broken["changes"][last]["id"]
        .as_str()
        .expect("id")
        .to_string();
    std::fs::write(&edited, broken.to_string()).expect("write");
    let out = Harness::new(&emulator, state.path()).run(&[
        "apply",
        "--yes",
        "--accept-edited-plan",
        "--plan",
        edited.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let wrong_type = format!("change {web_id}: ");
    let wrong_operation = format!(
        "change {last_id}: DeleteSecurityGroup at operation: unknown variant `DeleteSecurityGroup`"
    );
    assert!(
        out.stderr.lines().any(|l| l.contains(&wrong_type)
            && l.contains("at input.GroupId: invalid type: integer `42`, expected a string"))
            && out.stderr.contains(&wrong_operation),
        "{}",
        out.stderr
    );
    assert_eq!(audit_lines(), lines_before, "a refusal writes nothing");
    assert_eq!(
        block_on(rules(&ec2, &seeded.web)),
        web_before,
        "nothing was applied"
    );

    // Re-indented by a JSON tool, the plan is still the one saved.
    std::fs::write(&edited, plan.to_string()).expect("write compact");
    let out = Harness::new(&emulator, state.path()).run(&[
        "apply",
        "--yes",
        "--plan",
        edited.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_ne!(block_on(rules(&ec2, &seeded.web)), web_before, "applied");
    assert_eq!(block_on(rules(&ec2, &seeded.excluded)), before);

    // An edit accepted on purpose gets past the seal (its changes, already made, then
    // meet the stale check) and its record says what differed.
    let mut plan = plan.clone();
    plan["principal"] = "arn:aws:iam::123456789012:user/someone-else".into();
    std::fs::write(&edited, plan.to_string()).expect("write");
    let out = Harness::new(&emulator, state.path()).run(&[
        "apply",
        "--yes",
        "--accept-edited-plan",
        "--plan",
        edited.to_str().expect("utf-8"),
    ]);
    assert!(
        out.stderr.contains("applying an edited plan as it is"),
        "{}",
        out.stderr
    );
    let log = std::fs::read_to_string(state.path().join("audit.jsonl")).expect("audit");
    let accepted: Value = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|r| r["type"] == "edited_plan_accepted")
        .expect("an edited_plan_accepted record");
    assert!(
        accepted["detail"]
            .as_str()
            .is_some_and(|d| d.contains("a field outside its changes")),
        "{accepted}"
    );
    assert_eq!(
        Harness::new(&emulator, state.path())
            .run(&["audit", "verify"])
            .code,
        0
    );
}
