//! A run killed at any point is finished by `harden resume`. Each workload is applied
//! once uninterrupted, then, from the same seed, killed (abort, as abruptly as SIGKILL)
//! just before each journal line of that run in turn: before a `started` line nothing is
//! in flight; before a `succeeded` line the call was made and neither journaled nor
//! audited. After each kill the leftovers are visible to `plan --detailed-exitcode`, and
//! after `resume` the account is exactly as the uninterrupted run leaves it, the next
//! plan is empty, every started change is audited once and the chain verifies.
//!
//! Workloads: the EBS runbook over a running instance, a stopped one and an unattached
//! volume (devices on encrypted copies with DeleteOnTermination kept, each instance in
//! its original state, originals kept and tagged, no snapshot or volume left over or
//! made twice); and the security-group egress and flow-log runbooks over two VPCs (every
//! group's egress as planned, the log bucket created once with its protections, one
//! flow log per VPC).

use std::collections::BTreeMap;
use std::path::Path;

use aws_sdk_ec2::types::VolumeType;
use serde_json::Value;

use crate::ebs_instances::{launch, layout, tag_volumes, volumes};
use crate::support::{Emulator, Kind, block_on, harden_snapshots, run};

const RUNBOOK: &str = "runbooks/encrypt-ebs-volumes.yaml";
const REGION: &str = "eu-west-1";
const DIE_BEFORE: &str = "HARDEN_FAULT_DIE_BEFORE_JOURNAL_LINE";

/// What a trial starts from: a running instance, a stopped one (each with an
/// unencrypted root and data volume), and an unattached unencrypted volume.
struct Seeded {
    web: String,
    batch: String,
    loose: String,
}

fn seed(emulator: &Emulator) -> Seeded {
    let ec2 = emulator.ec2(REGION);
    block_on(async {
        let web = launch(&ec2, &[("Name", "web")]).await;
        let batch = launch(&ec2, &[("Name", "batch")]).await;
        tag_volumes(&ec2, &web, "web").await;
        tag_volumes(&ec2, &batch, "batch").await;
        ec2.stop_instances()
            .instance_ids(&batch)
            .send()
            .await
            .expect("stop");
        let loose = ec2
            .create_volume()
            .availability_zone("eu-west-1a")
            .size(3)
            .volume_type(VolumeType::Gp2)
            .encrypted(false)
            .send()
            .await
            .expect("volume")
            .volume_id()
            .expect("id")
            .to_string();
        Seeded { web, batch, loose }
    })
}

/// A device as a trial leaves it: name, encrypted, DeleteOnTermination, whether it
/// holds a copy of the volume the seed put there.
type DeviceEnd = (String, bool, bool, bool);

/// The account as a trial leaves it, without the ids that differ between trials.
#[derive(Debug, PartialEq)]
struct EndState {
    /// Per instance: its state, whether it still carries harden:was-running, and per
    /// device: name, encrypted, DeleteOnTermination, whether it holds a copy of the
    /// volume the seed put there.
    instances: Vec<(String, bool, Vec<DeviceEnd>)>,
    /// Per seeded volume (in seed order): exists, its state, and whether it names its
    /// replacement.
    originals: Vec<(bool, String, bool)>,
    /// Volumes in all, and how many encrypted.
    volumes: (usize, usize),
    /// Snapshots harden made that are still there.
    snapshots: usize,
}

fn end_state(
    emulator: &Emulator,
    seeded: &Seeded,
    seeded_devices: &[(String, String)],
) -> EndState {
    let ec2 = emulator.ec2(REGION);
    block_on(async {
        let all = volumes(&ec2).await;
        let mut instances = Vec::new();
        for instance in [&seeded.web, &seeded.batch] {
            let (state, devices) = layout(&ec2, instance).await;
            let marked = ec2
                .describe_instances()
                .instance_ids(instance.as_str())
                .send()
                .await
                .expect("describe")
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .flat_map(|i| i.tags())
                .any(|t| t.key() == Some("harden:was-running"));
            let devices = devices
                .into_iter()
                .map(|(device, volume, delete)| {
                    let (encrypted, _, _, _, tags) = &all[&volume];
                    let seeded_here = seeded_devices
                        .iter()
                        .find(|(at, _)| at == &format!("{instance}{device}"))
                        .map(|(_, original)| original.clone());
                    let copy_of_seed = seeded_here.is_some_and(|original| {
                        tags.get("harden:source-volume") == Some(&original)
                    });
                    (device, *encrypted, delete, copy_of_seed)
                })
                .collect();
            instances.push((state, marked, devices));
        }
        let originals = seeded_devices
            .iter()
            .map(|(_, original)| match all.get(original) {
                Some((_, state, _, _, tags)) => {
                    (true, state.clone(), tags.contains_key("harden:replaced-by"))
                }
                None => (false, String::new(), false),
            })
            .collect();
        EndState {
            instances,
            originals,
            volumes: (all.len(), all.values().filter(|v| v.0).count()),
            snapshots: harden_snapshots(&ec2).await.len(),
        }
    })
}

/// (instance + device, original volume id) for every volume the seed made, and
/// ("", id) for the unattached one.
fn seeded_devices(emulator: &Emulator, seeded: &Seeded) -> Vec<(String, String)> {
    let ec2 = emulator.ec2(REGION);
    let mut found = Vec::new();
    for instance in [&seeded.web, &seeded.batch] {
        for (device, volume, _) in block_on(layout(&ec2, instance)).1 {
            found.push((format!("{instance}{device}"), volume));
        }
    }
    found.push((String::new(), seeded.loose.clone()));
    found
}

fn journal_lines(state_dir: &Path, run_id: &str) -> Vec<Value> {
    let path = state_dir.join("runs").join(run_id).join("journal.jsonl");
    std::fs::read_to_string(&path)
        .expect("journal")
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn runs(emulator: &Emulator, state_dir: &Path) -> Vec<Value> {
    let mut cmd = emulator.harden(state_dir);
    cmd.args(["runs", "--format", "json"]);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).expect("runs JSON")
}

/// The audit records of `run_id` that are changes, by change id.
fn audited_changes(state_dir: &Path, run_id: &str) -> BTreeMap<String, Vec<Value>> {
    let text = std::fs::read_to_string(state_dir.join("audit.jsonl")).expect("audit");
    let mut by_change: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for record in text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
    {
        if record["run_id"] == run_id && record["type"] == "change" {
            let id = record["change_id"].as_str().unwrap_or_default().to_string();
            by_change.entry(id).or_default().push(record);
        }
    }
    by_change
}

/// A run to kill at every point: the apply and plan arguments, how to seed a fresh
/// account, and the state to compare (without the ids that differ between trials).
struct Workload<S, E> {
    apply: &'static [&'static str],
    plan: &'static [&'static str],
    seed: fn(&Emulator) -> S,
    end_state: fn(&Emulator, &S) -> E,
    /// Every change its own call, one at a time: journal lines alternate `started` and
    /// `succeeded`. Not so where calls are batched (CreateFlowLogs for many VPCs).
    sequential: bool,
}

fn harden(
    emulator: &Emulator,
    state: &Path,
    args: &[&str],
    die_before: Option<usize>,
) -> crate::support::Run {
    let mut cmd = emulator.harden(state);
    cmd.args(args);
    if let Some(line) = die_before {
        cmd.env(DIE_BEFORE, line.to_string());
    }
    run(cmd)
}

/// Moto servers the trials are spread over (each trial resets its server).
const SERVERS: usize = 3;

/// Applies `workload` uninterrupted, checks its end state with `check`, then kills it
/// before each of its journal lines in turn (on [`SERVERS`] servers side by side) and
/// resumes it. Returns the number of journal lines.
fn killed_at_every_line<S, E>(workload: &Workload<S, E>, check: impl Fn(&E)) -> usize
where
    E: PartialEq + std::fmt::Debug + Sync,
{
    let emulators: Vec<Emulator> = (0..SERVERS).map(|_| Emulator::start(Kind::Moto)).collect();
    let emulator = &emulators[0];
    let seeded = (workload.seed)(emulator);
    let state = tempfile::tempdir().expect("state");
    let out = harden(emulator, state.path(), workload.apply, None);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let reference_run = runs(emulator, state.path())[0]["run_id"]
        .as_str()
        .expect("run id")
        .to_string();
    let lines = journal_lines(state.path(), &reference_run).len();
    let reference = (workload.end_state)(emulator, &seeded);
    check(&reference);
    let plan = harden(emulator, state.path(), workload.plan, None);
    assert_eq!(
        plan.code, 0,
        "the uninterrupted run converges:\n{}",
        plan.stdout
    );

    std::thread::scope(|scope| {
        let shards: Vec<_> = emulators
            .iter()
            .enumerate()
            .map(|(shard, emulator)| {
                let reference = &reference;
                scope.spawn(move || {
                    for die_before in (1..=lines).filter(|n| n % SERVERS == shard) {
                        trial(emulator, workload, die_before, lines, reference);
                    }
                })
            })
            .collect();
        for shard in shards {
            if let Err(panic) = shard.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
    lines
}

/// One trial: a fresh account, the run killed just before journal line `die_before`
/// of `lines`, then plan and resume.
fn trial<S, E>(
    emulator: &Emulator,
    workload: &Workload<S, E>,
    die_before: usize,
    lines: usize,
    reference: &E,
) where
    E: PartialEq + std::fmt::Debug,
{
    emulator.reset();
    let seeded = (workload.seed)(emulator);
    let state = tempfile::tempdir().expect("state");
    let killed = harden(emulator, state.path(), workload.apply, Some(die_before));
    assert_ne!(killed.code, 0, "line {die_before}: the run dies");
    let listed = runs(emulator, state.path());
    let old = listed[0]["run_id"].as_str().expect("run id").to_string();
    assert_eq!(
        listed[0]["state"], "interrupted",
        "line {die_before}: {listed:?}"
    );
    let journal = journal_lines(state.path(), &old);
    assert_eq!(
        journal.len(),
        die_before - 1,
        "died before line {die_before}"
    );
    // A page of changes read and concluded together writes its audit records before
    // its journal lines: a change the journal leaves in flight may be recorded already.
    let recorded_at_kill = audited_changes(state.path(), &old);

    // Until the account is as the run would leave it, the plan says work is pending.
    let plan = harden(emulator, state.path(), workload.plan, None);
    let done = &(workload.end_state)(emulator, &seeded) == reference;
    assert_eq!(
        plan.code,
        if done { 0 } else { 2 },
        "line {die_before} of {lines}: what the killed run left is pending:\n{}\n{}",
        plan.stdout,
        plan.stderr
    );

    let resumed = harden(emulator, state.path(), &["resume", &old, "--yes"], None);
    assert_eq!(
        resumed.code, 0,
        "line {die_before}: resume\n{}\n{}",
        resumed.stdout, resumed.stderr
    );
    assert_eq!(
        &(workload.end_state)(emulator, &seeded),
        reference,
        "line {die_before}: resumed, the account is as an uninterrupted run leaves it"
    );
    let plan = harden(emulator, state.path(), workload.plan, None);
    assert_eq!(
        plan.code, 0,
        "line {die_before}: converged\n{}",
        plan.stdout
    );
    emulator.assert_audit_verifies(state.path());

    // Every change the killed run started is audited once, the one in flight by
    // resume, as what the read-back showed.
    let started: Vec<&str> = journal
        .iter()
        .filter(|l| l["phase"] == "started")
        .filter_map(|l| l["change_id"].as_str())
        .collect();
    let audited = audited_changes(state.path(), &old);
    for id in &started {
        assert_eq!(
            audited.get(*id).map(Vec::len),
            Some(1),
            "line {die_before}: {id} audited once"
        );
    }
    assert_eq!(audited.len(), started.len(), "line {die_before}");
    let ended: std::collections::BTreeSet<&str> = journal
        .iter()
        .filter(|l| l["phase"] != "started")
        .filter_map(|l| l["change_id"].as_str())
        .collect();
    let in_flight: Vec<&str> = started
        .iter()
        .copied()
        .filter(|id| !ended.contains(id))
        .collect();
    let mut made = 0;
    for id in &in_flight {
        let record = &audited[*id][0];
        if let Some(at_kill) = recorded_at_kill.get(*id) {
            assert!(
                !workload.sequential && at_kill[0] == *record,
                "line {die_before}: {id} recorded before the kill, and only by the killed run: {record}"
            );
            continue;
        }
        let says = |field: &Value, text: &str| field.as_str().is_some_and(|r| r.contains(text));
        match record["outcome"]["status"].as_str() {
            Some("succeeded") if says(&record["recovered"], "found the change made") => made += 1,
            Some("skipped") if says(&record["outcome"]["reason"], "found the change not made") => {}
            _ => panic!("line {die_before}: {id} in flight, recorded as {record}"),
        }
    }
    if workload.sequential {
        // One change at a time: before a `succeeded` line (even) its call was made.
        let expected = usize::from(die_before.is_multiple_of(2));
        assert_eq!(
            (in_flight.len(), made),
            (expected, expected),
            "line {die_before}"
        );
    }
    let listed = runs(emulator, state.path());
    let of = |pick: &dyn Fn(&Value) -> bool| listed.iter().find(|r| pick(r)).cloned();
    assert_eq!(
        of(&|r| r["run_id"] == old.as_str()).map(|r| r["state"].clone()),
        Some(Value::from("resumed")),
        "line {die_before}: {listed:?}"
    );
    assert_eq!(
        of(&|r| r["resumes"] == old.as_str()).map(|r| r["state"].clone()),
        Some(Value::from("complete")),
        "line {die_before}: {listed:?}"
    );
    assert_eq!(listed.len(), 2, "line {die_before}: {listed:?}");
}

#[test]
fn an_ebs_run_killed_before_any_journal_line_is_finished_by_resume_on_moto() {
    let workload = Workload {
        apply: &[
            "apply",
            RUNBOOK,
            "--yes",
            "--param",
            "allow_stop=true",
            "--concurrency",
            "1",
            "--region",
            REGION,
        ],
        plan: &[
            "plan",
            RUNBOOK,
            "--param",
            "allow_stop=true",
            "--detailed-exitcode",
            "--region",
            REGION,
        ],
        seed: |emulator| {
            let seeded = seed(emulator);
            let devices = seeded_devices(emulator, &seeded);
            (seeded, devices)
        },
        end_state: |emulator, (seeded, devices)| end_state(emulator, seeded, devices),
        sequential: true,
    };
    let lines = killed_at_every_line(&workload, |reference| {
        assert_eq!(
            reference
                .instances
                .iter()
                .map(|i| i.0.as_str())
                .collect::<Vec<_>>(),
            ["running", "stopped"],
            "each instance in the state it was found in"
        );
        assert!(
            reference
                .instances
                .iter()
                .flat_map(|i| &i.2)
                .all(|(_, encrypted, _, copy)| *encrypted && *copy),
            "every device on an encrypted copy of its original: {reference:?}"
        );
        assert_eq!(reference.snapshots, 0);
    });
    assert!(lines > 60, "a run of {lines} journal lines");
}

const GROUPS_AND_LOGS: [&str; 2] = [
    "runbooks/restrict-sg-egress.yaml",
    "runbooks/enable-vpc-flow-logs.yaml",
];

/// The security-group and flow-log workload: two VPCs (each with its default group),
/// one group open to all of 0.0.0.0/0 and one open to all of ::/0 as well.
fn seed_groups_and_vpcs(emulator: &Emulator) -> Vec<String> {
    let ec2 = emulator.ec2(REGION);
    block_on(async {
        let mut vpcs = Vec::new();
        for (cidr, name, ipv6) in [("10.1.0.0/16", "web", false), ("10.2.0.0/16", "api", true)] {
            let vpc = crate::support::create_vpc(&ec2, cidr).await;
            let group = ec2
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
            if ipv6 {
                ec2.authorize_security_group_egress()
                    .group_id(&group)
                    .ip_permissions(
                        aws_sdk_ec2::types::IpPermission::builder()
                            .ip_protocol("-1")
                            .ipv6_ranges(
                                aws_sdk_ec2::types::Ipv6Range::builder()
                                    .cidr_ipv6("::/0")
                                    .build(),
                            )
                            .build(),
                    )
                    .send()
                    .await
                    .expect("open to ::/0");
            }
            vpcs.push(vpc);
        }
        vpcs
    })
}

/// Per VPC (in seed order): each group's egress rules (protocol, ports, destination),
/// and its flow logs (traffic, destination, status); then the log bucket's
/// protections and policy statements.
type GroupsAndLogs = (
    Vec<(
        BTreeMap<String, Vec<(String, i32, i32, String)>>,
        Vec<(String, String, String)>,
    )>,
    (bool, bool, bool),
    Vec<String>,
);

fn groups_and_logs(emulator: &Emulator, vpcs: &Vec<String>) -> GroupsAndLogs {
    let ec2 = emulator.ec2(REGION);
    let s3 = emulator.s3(REGION);
    let bucket = format!("harden-flowlogs-{}-{REGION}", emulator.account());
    block_on(async {
        let logs = crate::flow_logs::flow_logs(&ec2).await;
        let mut per_vpc = Vec::new();
        for vpc in vpcs {
            let groups = ec2
                .describe_security_groups()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("vpc-id")
                        .values(vpc)
                        .build(),
                )
                .send()
                .await
                .expect("groups");
            let mut egress = BTreeMap::new();
            for group in groups.security_groups() {
                let mut rules: Vec<(String, i32, i32, String)> = group
                    .ip_permissions_egress()
                    .iter()
                    .flat_map(|p| {
                        let protocol = p.ip_protocol().unwrap_or_default().to_string();
                        let (from, to) = (p.from_port().unwrap_or(-1), p.to_port().unwrap_or(-1));
                        let v4 = p
                            .ip_ranges()
                            .iter()
                            .filter_map(|r| r.cidr_ip().map(str::to_string));
                        let v6 = p
                            .ipv6_ranges()
                            .iter()
                            .filter_map(|r| r.cidr_ipv6().map(str::to_string));
                        v4.chain(v6)
                            .map(|cidr| (protocol.clone(), from, to, cidr))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                rules.sort();
                egress.insert(group.group_name().unwrap_or_default().to_string(), rules);
            }
            per_vpc.push((egress, logs.get(vpc).cloned().unwrap_or_default()));
        }
        (
            per_vpc,
            crate::flow_logs::bucket_protections(&s3, &bucket).await,
            crate::flow_logs::policy_sids(&s3, &bucket).await,
        )
    })
}

#[test]
fn a_security_group_and_bucket_run_killed_before_any_journal_line_is_finished_by_resume_on_moto() {
    let workload = Workload {
        apply: &[
            "apply",
            GROUPS_AND_LOGS[0],
            GROUPS_AND_LOGS[1],
            "--yes",
            "--concurrency",
            "1",
            "--region",
            REGION,
        ],
        plan: &[
            "plan",
            GROUPS_AND_LOGS[0],
            GROUPS_AND_LOGS[1],
            "--detailed-exitcode",
            "--region",
            REGION,
        ],
        seed: seed_groups_and_vpcs,
        end_state: groups_and_logs,
        sequential: false,
    };
    let lines = killed_at_every_line(&workload, |(per_vpc, protections, sids)| {
        for (egress, logs) in per_vpc {
            for (group, rules) in egress {
                assert!(
                    rules.iter().all(|r| r.0 != "-1" || !r.3.ends_with("/0")),
                    "{group}: nothing open to all of the internet: {rules:?}"
                );
            }
            assert_eq!(logs.len(), 1, "one flow log per VPC: {logs:?}");
        }
        assert!(
            protections.0 && protections.1,
            "the bucket's public access blocked and encrypted: {protections:?}"
        );
        assert!(!sids.is_empty(), "the bucket admits the log delivery");
    });
    assert!(lines > 10, "a run of {lines} journal lines");
}
