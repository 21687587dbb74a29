//! Faults between harden and AWS, through a proxy of the test suite in front of moto:
//! answers lost after the change was made, and a service that keeps failing for one
//! resource. Each run must leave every resource as planned or as it was, say which,
//! record each change once, and make nothing twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use aws_sdk_ec2::types::{IpPermission, Ipv6Range};
use serde_json::Value;

use crate::proxy::{Answer, Proxy, Request};
use crate::support::{Emulator, Kind, Run, block_on, create_vpc, run};

const REGION: &str = "us-east-1";
const RUNBOOK: &str = "runbooks/restrict-sg-egress.yaml";
const GROUPS: usize = 6;
/// Two allowed rules: a group then needs one authorized, its open IPv4 rule rewritten
/// to the other, and its open IPv6 rule revoked: one call of each kind.
const ALLOWED: &str = "--param=allowed_egress=[{protocol: tcp, from_port: 443, to_port: 443, cidr: 0.0.0.0/0, description: https}, {protocol: tcp, from_port: 80, to_port: 80, cidr: 0.0.0.0/0, description: http}]";

/// Groups each with the open IPv4 egress every new group gets and an open IPv6 one.
fn seed(emulator: &Emulator) -> Vec<String> {
    block_on(async {
        let ec2 = emulator.ec2(REGION);
        let vpc = create_vpc(&ec2, "10.50.0.0/16").await;
        let mut groups = Vec::new();
        for n in 0..GROUPS {
            let id = ec2
                .create_security_group()
                .group_name(format!("app-{n}"))
                .description("app")
                .vpc_id(&vpc)
                .send()
                .await
                .expect("group")
                .group_id()
                .expect("id")
                .to_string();
            ec2.authorize_security_group_egress()
                .group_id(&id)
                .ip_permissions(
                    IpPermission::builder()
                        .ip_protocol("-1")
                        .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("::/0").build())
                        .build(),
                )
                .send()
                .await
                .expect("open IPv6");
            groups.push(id);
        }
        groups
    })
}

/// Each group's egress as (protocol, from, to, peer), sorted, duplicates kept.
fn egress(
    emulator: &Emulator,
    groups: &[String],
) -> BTreeMap<String, Vec<(String, i32, i32, String)>> {
    block_on(async {
        let ec2 = emulator.ec2(REGION);
        let mut all = BTreeMap::new();
        for group in groups {
            let out = ec2
                .describe_security_group_rules()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("group-id")
                        .values(group)
                        .build(),
                )
                .send()
                .await
                .expect("rules");
            let mut rules: Vec<_> = out
                .security_group_rules()
                .iter()
                .filter(|r| r.is_egress() == Some(true))
                .map(|r| {
                    (
                        r.ip_protocol().unwrap_or_default().to_string(),
                        r.from_port().unwrap_or(-1),
                        r.to_port().unwrap_or(-1),
                        r.cidr_ipv4()
                            .or(r.cidr_ipv6())
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
                .collect();
            rules.sort();
            all.insert(group.clone(), rules);
        }
        all
    })
}

fn action(request: &Request) -> Option<String> {
    request
        .text()
        .split('&')
        .find_map(|p| p.strip_prefix("Action=").map(str::to_string))
}

fn harden(emulator: &Emulator, proxy: &Proxy, state: &std::path::Path, args: &[&str]) -> Run {
    let mut cmd = emulator.harden_through(&proxy.endpoint, state);
    cmd.args(args);
    run(cmd)
}

fn apply(emulator: &Emulator, proxy: &Proxy, state: &std::path::Path) -> Run {
    harden(
        emulator,
        proxy,
        state,
        &["apply", RUNBOOK, "--region", REGION, ALLOWED, "--yes"],
    )
}

/// The change records of the audit log.
fn change_records(state: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(state.join("audit.jsonl"))
        .expect("audit")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("record"))
        .filter(|r| r["type"] == "change")
        .collect()
}

/// The ids of the changes a plan (straight to moto, no proxy) makes.
fn planned_changes(emulator: &Emulator, state: &std::path::Path) -> Vec<String> {
    let mut cmd = emulator.harden(state);
    cmd.args([
        "plan", RUNBOOK, "--region", REGION, ALLOWED, "--format", "json",
    ]);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    let ids: Vec<String> = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_string))
        .collect();
    // Each of the seeded groups needs one call of each kind.
    assert!(ids.len() >= GROUPS * 3, "{ids:#?}");
    ids
}

fn converged() -> Vec<(String, i32, i32, String)> {
    vec![
        ("tcp".into(), 80, 80, "0.0.0.0/0".into()),
        ("tcp".into(), 443, 443, "0.0.0.0/0".into()),
    ]
}

#[test]
fn a_change_whose_answer_was_lost_is_made_once_and_recorded_once_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    let groups = seed(&emulator);
    // The first call of each mutating kind reaches moto and is made; its answer never
    // comes back.
    let lost: Mutex<BTreeSet<String>> = Mutex::default();
    let proxy = Proxy::start(&emulator.endpoint, move |request| match action(request) {
        Some(a)
            if [
                "AuthorizeSecurityGroupEgress",
                "ModifySecurityGroupRules",
                "RevokeSecurityGroupEgress",
            ]
            .contains(&a.as_str())
                && lost.lock().expect("lost").insert(a.clone()) =>
        {
            Answer::Lost
        }
        _ => Answer::Forward,
    });
    let state = tempfile::tempdir().expect("state");
    let planned = planned_changes(&emulator, state.path());
    let out = apply(&emulator, &proxy, state.path());
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(proxy.answered(), 3, "one answer of each kind was lost");

    // Every group exactly as planned: nothing made twice, nothing left.
    let after = egress(&emulator, &groups);
    for group in &groups {
        assert_eq!(after[group], converged(), "{group}");
    }
    // One record per change, each a success; the calls whose answers were lost and
    // whose repeat was refused as already done say so.
    let records = change_records(state.path());
    let ids: Vec<&str> = records
        .iter()
        .filter_map(|r| r["change_id"].as_str())
        .collect();
    assert_eq!(ids.len(), records.len());
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "each change recorded once: {ids:#?}"
    );
    assert_eq!(
        unique,
        planned.iter().map(String::as_str).collect(),
        "every planned change, and only those"
    );
    assert!(
        records
            .iter()
            .all(|r| r["outcome"]["status"] == "succeeded")
    );
    let recovered: Vec<&str> = records
        .iter()
        .filter(|r| r["recovered"].is_string())
        .filter_map(|r| r["call"]["operation"].as_str())
        .collect();
    assert!(
        recovered.contains(&"AuthorizeSecurityGroupEgress")
            && recovered.contains(&"RevokeSecurityGroupEgress"),
        "{recovered:?}"
    );
    emulator.assert_audit_verifies(state.path());
    let plan = harden(
        &emulator,
        &proxy,
        state.path(),
        &[
            "plan",
            RUNBOOK,
            "--region",
            REGION,
            ALLOWED,
            "--detailed-exitcode",
        ],
    );
    assert_eq!(plan.code, 0, "converged in one apply:\n{}", plan.stdout);
}

#[test]
fn a_resource_the_service_keeps_failing_fails_alone_with_a_clear_report_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    let groups = seed(&emulator);
    let broken = groups[2].clone();
    let refuse = format!("GroupId={broken}");
    let proxy = Proxy::start(&emulator.endpoint, move |request| {
        let body = request.text();
        let mutating = action(request).is_some_and(|a| !a.starts_with("Describe"));
        if mutating && body.contains(&refuse) {
            Answer::Respond(
                500,
                "<Response><Errors><Error><Code>InternalError</Code><Message>An internal error has occurred.</Message></Error></Errors><RequestID>proxy-500</RequestID></Response>".into(),
            )
        } else {
            Answer::Forward
        }
    });
    let state = tempfile::tempdir().expect("state");
    let before = egress(&emulator, &groups);
    let out = apply(&emulator, &proxy, state.path());
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    let failed: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("InternalError"))
        .collect();
    assert!(
        !failed.is_empty() && failed.iter().all(|l| l.contains(&broken)),
        "the failure names the group and the service's code:\n{}",
        out.stdout
    );
    let after = egress(&emulator, &groups);
    for group in &groups {
        if *group == broken {
            assert_eq!(
                after[group], before[group],
                "the failing group is as it was"
            );
        } else {
            assert_eq!(after[group], converged(), "{group} finished");
        }
    }
    let records = change_records(state.path());
    let of_broken: Vec<&Value> = records
        .iter()
        .filter(|r| r["resource"]["id"] == broken.as_str())
        .collect();
    assert_eq!(of_broken.len(), 3, "{of_broken:#?}");
    assert_eq!(of_broken[0]["outcome"]["code"], "InternalError");
    assert!(
        of_broken[1..]
            .iter()
            .all(|r| r["outcome"]["status"] == "skipped"),
        "its later changes are not attempted: {of_broken:#?}"
    );
    emulator.assert_audit_verifies(state.path());

    // The service heals: resume finishes the failed run, and only its group is changed.
    let run_id = records[0]["run_id"].as_str().expect("run id").to_string();
    let mut cmd = emulator.harden(state.path());
    cmd.args(["resume", &run_id, "--yes"]);
    let resumed = run(cmd);
    assert_eq!(resumed.code, 0, "{}\n{}", resumed.stdout, resumed.stderr);
    let after = egress(&emulator, &groups);
    for group in &groups {
        assert_eq!(after[group], converged(), "{group} finished by resume");
    }
    let resumed_records: Vec<Value> = change_records(state.path())
        .into_iter()
        .filter(|r| r["run_id"] != run_id.as_str())
        .collect();
    assert!(
        !resumed_records.is_empty()
            && resumed_records
                .iter()
                .all(|r| r["resource"]["id"] == broken.as_str()
                    && r["outcome"]["status"] == "succeeded"),
        "resume changed only what the failed run left: {resumed_records:#?}"
    );
    emulator.assert_audit_verifies(state.path());
}

/// CreateSnapshot and CopySnapshot have no idempotency token: when the first of each
/// reaches moto and its answer is lost, harden finds the snapshot its call made by the
/// run's tags and goes on with it instead of sending the call again. One snapshot and
/// one copy are made, both deleted once the replacement is verified: none is left over.
#[test]
fn a_snapshot_whose_answer_was_lost_is_found_by_its_tags_not_made_twice_on_moto() {
    const EBS: &str = "runbooks/encrypt-ebs-volumes.yaml";
    let emulator = Emulator::start(Kind::Moto);
    let original = block_on(async {
        emulator
            .ec2(REGION)
            .create_volume()
            .availability_zone("us-east-1a")
            .size(4)
            .encrypted(false)
            .send()
            .await
            .expect("volume")
            .volume_id()
            .expect("id")
            .to_string()
    });
    let lost: Mutex<BTreeSet<String>> = Mutex::default();
    let proxy = Proxy::start(&emulator.endpoint, move |request| match action(request) {
        Some(a)
            if ["CreateSnapshot", "CopySnapshot"].contains(&a.as_str())
                && lost.lock().expect("lost").insert(a.clone()) =>
        {
            Answer::Lost
        }
        _ => Answer::Forward,
    });
    let state = tempfile::tempdir().expect("state");
    let out = harden(
        &emulator,
        &proxy,
        state.path(),
        &["apply", EBS, "--region", REGION, "--yes"],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(proxy.answered(), 2, "both answers were lost");
    block_on(async {
        let ec2 = emulator.ec2(REGION);
        let left = crate::support::harden_snapshots(&ec2).await;
        assert!(
            left.is_empty(),
            "no snapshot made twice and left over: {left:?}"
        );
        let volumes = ec2.describe_volumes().send().await.expect("volumes");
        let replacements: Vec<_> = volumes
            .volumes()
            .iter()
            .filter(|v| {
                v.tags().iter().any(|t| {
                    t.key() == Some("harden:source-volume") && t.value() == Some(original.as_str())
                })
            })
            .collect();
        assert_eq!(replacements.len(), 1, "one replacement");
        assert_eq!(replacements[0].encrypted(), Some(true));
    });
    let records = change_records(state.path());
    let failed: Vec<&Value> = records
        .iter()
        .filter(|r| r["outcome"]["status"] != "succeeded")
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    let mut cmd = emulator.harden(state.path());
    cmd.args(["plan", EBS, "--region", REGION, "--detailed-exitcode"]);
    let plan = run(cmd);
    assert_eq!(plan.code, 0, "converged:\n{}", plan.stdout);
}
