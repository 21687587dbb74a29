//! `make bench`: how plan and apply scale, against moto on loopback, and the pure planner
//! on a large in-memory inventory. Prints medians; it asserts nothing about speed.
//!
//! - plan of N security groups (discovery: three paginated list calls per region);
//! - apply of N independent group changes at --concurrency 1 and 8;
//! - the planner alone over 20,000 groups, with the process's peak memory;
//! - apply of restrict-sg-egress at N = 300, 1000, 3000 against a plain sequential SDK
//!   loop making the same calls (`scaling`: wall, client CPU, peak RSS, requests, the
//!   emulator's saturation; `target/bench/scaling.{json,svg,png}`);
//! - 8 account-regions against 1, each call 40 ms late (a proxy), plan and apply;
//! - apply of N groups through EC2's real request-token buckets (a proxy enforcing
//!   them), against the floor the mutating bucket sets: (N - 50) / 5 seconds;
//! - event to verified fix: an AuthorizeSecurityGroupEgress put on the bus, through the
//!   alerting runbook's rule and queue, to `harden watch`'s verified fix and deleted
//!   message: the median of single events, and 100 events for 100 groups at once.

#[path = "../tests/integration/support.rs"]
#[allow(dead_code, unreachable_pub)]
mod support;

#[path = "../tests/integration/proxy.rs"]
#[allow(dead_code, unreachable_pub)]
mod proxy;

mod scaling;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{IpPermission, Ipv6Range};
use harden::accounts::Scope;
use harden::actions::{Resource, ResourceKind};
use harden::aws::CallerIdentity;
use harden::inventory::{Peer, Rule, SecurityGroup};
use harden::planner::RegionInventory;
use harden::planner::{Place, PlanRequest, plan_on_inventory};
use harden::runbook::{load_paths, params};
use harden::template::Renderer;
use harden::validate::validate;
use support::{Emulator, Kind, block_on, create_vpc, run};

const REGION: &str = "us-east-1";

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn seed_groups(ec2: &aws_sdk_ec2::Client, n: usize) {
    let vpc = create_vpc(ec2, "10.50.0.0/16").await;
    for i in 0..n {
        let id = ec2
            .create_security_group()
            .group_name(format!("bench-{i}"))
            .description("bench")
            .vpc_id(&vpc)
            .send()
            .await
            .expect("group")
            .group_id()
            .expect("id")
            .to_string();
        ec2.authorize_security_group_egress()
            .group_id(id)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("-1")
                    .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("::/0").build())
                    .build(),
            )
            .send()
            .await
            .expect("egress");
    }
}

fn harden_run(emulator: &Emulator, state: &Path, args: &[&str]) -> Duration {
    let mut cmd = emulator.harden(state);
    cmd.args(args).env("AWS_MAX_ATTEMPTS", "6");
    let started = Instant::now();
    let out = run(cmd);
    let elapsed = started.elapsed();
    assert!(
        out.code == 0 || out.code == 2,
        "harden {args:?} failed: {}",
        out.stderr
    );
    elapsed
}

fn against_moto(groups: usize) {
    let emulator = Emulator::start(Kind::Moto);
    let ec2 = emulator.ec2(REGION);
    block_on(seed_groups(&ec2, groups));
    let state = tempfile::tempdir().expect("state");
    let runbook = "runbooks/restrict-sg-egress.yaml";
    let plans: Vec<Duration> = (0..5)
        .map(|_| {
            harden_run(
                &emulator,
                state.path(),
                &["plan", runbook, "--region", REGION],
            )
        })
        .collect();
    println!(
        "plan, {groups} groups with open egress (moto):         median {:>8.1?} over 5 runs",
        median(plans)
    );
    for concurrency in ["1", "8"] {
        // Each apply needs the open state back: reseed into a fresh moto.
        let emulator = Emulator::start(Kind::Moto);
        block_on(seed_groups(&emulator.ec2(REGION), groups));
        let state = tempfile::tempdir().expect("state");
        let took = harden_run(
            &emulator,
            state.path(),
            &[
                "apply",
                runbook,
                "--region",
                REGION,
                "--yes",
                "--concurrency",
                concurrency,
            ],
        );
        println!(
            "apply, {groups} groups x 2 changes, --concurrency {concurrency} (moto): {took:>8.1?} \
             ({:.0} changes/s, each read + call + read-back)",
            (groups * 2) as f64 / took.as_secs_f64()
        );
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn planner_only(groups: usize) {
    let runbooks =
        validate(load_paths(&["runbooks/".into()]).expect("shipped runbooks load")).expect("valid");
    let params = params::resolve(&runbooks, &[]).expect("defaults");
    let identity = CallerIdentity {
        account_id: "123456789012".into(),
        arn: "arn:aws:iam::123456789012:user/bench".into(),
        partition: "aws".into(),
    };
    let scope = Scope::own(identity, vec![REGION.to_string()]);
    let mut base = RegionInventory::default();
    let mut ids = Vec::new();
    for i in 0..groups {
        let id = format!("sg-{i:017}");
        let egress = vec![
            Rule::new(
                Some(format!("sgr-{i}a")),
                "-1",
                None,
                None,
                Peer::Cidr("0.0.0.0/0".into()),
                None,
            ),
            Rule::new(
                Some(format!("sgr-{i}b")),
                "-1",
                None,
                None,
                Peer::Ipv6Cidr("::/0".into()),
                None,
            ),
            Rule::new(
                Some(format!("sgr-{i}c")),
                "tcp",
                Some(5432),
                Some(5432),
                Peer::Cidr("10.0.0.0/8".into()),
                None,
            ),
        ];
        base.put(Resource::SecurityGroup(SecurityGroup {
            id: id.clone(),
            name: if i % 10 == 0 {
                "default".into()
            } else {
                format!("g{i}")
            },
            description: "bench".into(),
            vpc_id: Some(format!("vpc-{}", i / 10)),
            owner_id: "123456789012".into(),
            tags: BTreeMap::new(),
            interface_count: i % 3,
            ingress: Vec::new(),
            egress,
        }));
        ids.push((ResourceKind::SecurityGroup, id));
    }
    let defaults: Vec<_> = ids.iter().step_by(10).cloned().collect();
    let members = BTreeMap::from([
        (
            (
                "close-default-security-groups".to_string(),
                "default_groups".to_string(),
            ),
            defaults,
        ),
        (
            ("restrict-sg-egress".to_string(), "groups".to_string()),
            ids,
        ),
    ]);
    let request = PlanRequest {
        runbooks: &runbooks,
        params: &params,
        principal: &scope.identity.arn,
        unreachable: &[],
        fail_fast: false,
        concurrency: 1,
        progress: &harden::progress::Silent,
        focus: None,
        deadline: std::time::Instant::now() + std::time::Duration::from_secs(3600),
    };
    let renderer = Renderer::new();
    let mut samples = Vec::new();
    let mut changes = 0;
    for _ in 0..5 {
        let mut inventory = base.clone();
        let started = Instant::now();
        let plan = plan_on_inventory(
            &request,
            Place {
                scope: &scope,
                region: REGION,
            },
            &mut inventory,
            &members,
            &renderer,
            &BTreeMap::new(),
        )
        .expect("plans");
        samples.push(started.elapsed());
        changes = plan.changes.len();
    }
    println!(
        "planner only, both runbooks, {groups} groups -> {changes} changes: median {:>8.1?}; peak RSS {} MiB",
        median(samples),
        peak_rss_kib() / 1024
    );
}

/// An "app" group with open egress in each region of each account (moto keeps the
/// accounts apart by the credentials AssumeRole gives).
async fn seed_accounts(emulator: &Emulator, accounts: &[&str], regions: &[&str], groups: usize) {
    for account in accounts {
        for region in regions {
            let ec2 = emulator.ec2_in(account, region).await;
            let vpc = create_vpc(&ec2, "10.60.0.0/16").await;
            for i in 0..groups {
                ec2.create_security_group()
                    .group_name(format!("app-{i}"))
                    .description("app")
                    .vpc_id(&vpc)
                    .send()
                    .await
                    .expect("group");
            }
        }
    }
}

/// A command's wall time and the emulator's CPU seconds per second of it (1.0: its one
/// core busy throughout).
#[derive(Clone, Copy)]
struct Timed {
    wall: Duration,
    emulator_busy: f64,
}

/// Plan and apply of `accounts` x `regions` account-regions, every call 40 ms late.
fn side_by_side(accounts: &[&str], regions: &[&str], groups: usize) -> (Timed, Timed) {
    let emulator = Emulator::start(Kind::Moto);
    block_on(seed_accounts(&emulator, accounts, regions, groups));
    let latency = proxy::Proxy::start(&emulator.endpoint, |_| {
        proxy::Answer::Delay(Duration::from_millis(40))
    });
    let state = tempfile::tempdir().expect("state");
    let file = state.path().join("accounts.yaml");
    let listed: String = accounts
        .iter()
        .map(|a| format!("  - {{id: \"{a}\"}}\n"))
        .collect();
    std::fs::write(&file, format!("accounts:\n{listed}")).expect("accounts");
    let run_one = |command: &str| {
        let mut cmd = emulator.harden_through(&latency.endpoint, state.path());
        cmd.args([command, "runbooks/restrict-sg-egress.yaml", "--accounts"])
            .arg(&file)
            .args(["--concurrency", "8"]);
        if command == "apply" {
            cmd.arg("--yes");
        }
        for region in regions {
            cmd.args(["--region", region]);
        }
        let moto_before = scaling::process_cpu(emulator.pid());
        let started = Instant::now();
        let out = run(cmd);
        let wall = started.elapsed();
        assert!(out.code == 0, "{command}: {}{}", out.stdout, out.stderr);
        Timed {
            wall,
            emulator_busy: (scaling::process_cpu(emulator.pid()) - moto_before)
                / wall.as_secs_f64(),
        }
    };
    let plan = run_one("plan");
    let apply = run_one("apply");
    (plan, apply)
}

fn accounts_side_by_side(groups: usize) {
    let one = side_by_side(&["111111111111"], &["us-east-1"], groups);
    let eight = side_by_side(
        &[
            "111111111111",
            "222222222222",
            "333333333333",
            "444444444444",
        ],
        &["us-east-1", "eu-west-1"],
        groups,
    );
    for (what, one, eight) in [("plan", one.0, eight.0), ("apply", one.1, eight.1)] {
        println!(
            "{what}, {groups} groups per account-region, 40 ms a call: 1 account-region {:>7.2?} (moto busy {:.2}), 8 {:>7.2?} (moto busy {:.2}): {:.2}x",
            one.wall,
            one.emulator_busy,
            eight.wall,
            eight.emulator_busy,
            eight.wall.as_secs_f64() / one.wall.as_secs_f64()
        );
    }
}

/// Apply of `groups` groups (two changes each, on two actions) through a proxy that
/// enforces EC2's published buckets, paced by harden's own.
fn through_real_buckets(groups: usize) {
    let emulator = Emulator::start(Kind::Moto);
    block_on(seed_groups(&emulator.ec2(REGION), groups));
    let buckets = std::sync::Arc::new(proxy::Buckets::new((100.0, 20.0), (50.0, 5.0)));
    let throttling = proxy::Proxy::throttling(&emulator.endpoint, buckets);
    let state = tempfile::tempdir().expect("state");
    let mut cmd = emulator.harden_through(&throttling.endpoint, state.path());
    cmd.args([
        "apply",
        "runbooks/restrict-sg-egress.yaml",
        "--region",
        REGION,
        "--yes",
    ]);
    let started = Instant::now();
    let out = run(cmd);
    let took = started.elapsed();
    let floor = (groups as f64 - 50.0) / 5.0;
    println!(
        "apply, {groups} groups through EC2's buckets (mutating 50 then 5/s): {took:>7.2?}, floor {floor:.0} s ({:.3}x); exit {}, {} throttled",
        took.as_secs_f64() / floor,
        out.code,
        throttling.answered()
    );
}

/// The CloudTrail record of opening all egress of `group`, as the bus carries it.
fn opened(group: &str, n: usize) -> String {
    serde_json::json!({
        "eventVersion": "1.09",
        "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/bench",
                         "accountId": "123456789012", "accessKeyId": "AKIABENCH"},
        "eventTime": "2026-12-01T10:00:00Z",
        "eventSource": "ec2.amazonaws.com",
        "eventName": "AuthorizeSecurityGroupEgress",
        "awsRegion": REGION,
        "sourceIPAddress": "203.0.113.7",
        "userAgent": "bench",
        "requestParameters": {"groupId": group, "ipPermissions": {"items": [
            {"ipProtocol": "-1", "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]}}]}},
        "responseElements": {"_return": true},
        "eventID": format!("bench-{n}"),
        "eventType": "AwsApiCall",
        "recipientAccountId": "123456789012"
    })
    .to_string()
}

async fn put_on_bus(events: &aws_sdk_eventbridge::Client, records: &[String]) {
    for chunk in records.chunks(10) {
        let entries = chunk
            .iter()
            .map(|detail| {
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .source("aws.ec2")
                    .detail_type("AWS API Call via CloudTrail")
                    .detail(detail)
                    .build()
            })
            .collect();
        events
            .put_events()
            .set_entries(Some(entries))
            .send()
            .await
            .expect("put events");
    }
}

/// Event to verified fix and deleted message, through moto's EventBridge and SQS:
/// `singles` events one at a time, then `burst` at once, with `watch` run with `flags`
/// (EC2's published buckets pace it by default; `--ec2-rate off` measures moto alone).
fn event_latency(singles: usize, burst: usize, flags: &[&str]) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let emulator = Emulator::start(Kind::Moto);
    let ec2 = emulator.ec2(REGION);
    let groups: Vec<String> = block_on(async {
        let vpc = create_vpc(&ec2, "10.90.0.0/16").await;
        let mut groups = Vec::new();
        for i in 0..singles + burst {
            groups.push(
                ec2.create_security_group()
                    .group_name(format!("latency-{i}"))
                    .description("bench")
                    .vpc_id(&vpc)
                    .send()
                    .await
                    .expect("group")
                    .group_id()
                    .expect("id")
                    .to_string(),
            );
        }
        groups
    });
    let state = tempfile::tempdir().expect("state");
    let mut cmd = emulator.harden(state.path());
    cmd.args([
        "apply",
        "runbooks/alert-on-security-changes.yaml",
        "--region",
        REGION,
        "--yes",
    ]);
    assert_eq!(run(cmd).code, 0, "the alerting runbook applies");
    let policy = state.path().join("policy.yaml");
    std::fs::write(&policy, "version: 1\ndefault: auto\n").expect("policy");
    let queue = format!("{}/123456789012/harden-security-events", emulator.endpoint);
    let mut cmd = emulator.harden(state.path());
    cmd.args(flags)
        .args([
            "watch",
            "--queue",
            &queue,
            "runbooks/restrict-sg-egress.yaml",
        ])
        .args(["--region", REGION, "--policy"])
        .arg(&policy)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut watch = cmd.spawn().expect("watch starts");
    let (sender, handled) = std::sync::mpsc::channel::<String>();
    let stderr = watch.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("message ") && line.ends_with("; deleted") {
                let _ = sender.send(line);
            }
        }
    });
    let events = aws_sdk_eventbridge::Client::new(&emulator.sdk_config(REGION));
    let wait_for = |count: usize| {
        for _ in 0..count {
            handled
                .recv_timeout(Duration::from_secs(60))
                .expect("an event handled within a minute");
        }
    };
    let mut samples = Vec::new();
    for (n, group) in groups.iter().take(singles).enumerate() {
        let started = Instant::now();
        block_on(put_on_bus(&events, &[opened(group, n)]));
        wait_for(1);
        samples.push(started.elapsed());
    }
    let records: Vec<String> = groups
        .iter()
        .enumerate()
        .skip(singles)
        .map(|(n, g)| opened(g, n))
        .collect();
    let started = Instant::now();
    block_on(put_on_bus(&events, &records));
    wait_for(burst);
    let all = started.elapsed();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &watch.id().to_string()])
        .status();
    let _ = watch.wait();
    let paced = if flags.is_empty() {
        "EC2's buckets"
    } else {
        "unpaced"
    };
    if !samples.is_empty() {
        let worst = samples.iter().max().copied().unwrap_or_default();
        println!(
            "event to verified fix and deleted message ({paced}): median {:>7.2?} (worst {worst:.2?}) over {singles} single events",
            median(samples)
        );
    }
    println!(
        "{burst} events for {burst} groups at once ({paced}): {all:>7.2?}; EC2's mutating bucket alone sets a floor of {:.1} s",
        (burst as f64 - 50.0).max(0.0) / 5.0
    );
}

fn main() {
    // `cargo bench` passes --bench; a filter argument is not supported here.
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).expect("project root");
    if std::env::var_os("HARDEN_BENCH_ONLY_SCALING").is_some() {
        scaling::scaling(&scaling::sizes());
        return;
    }
    if std::env::var_os("HARDEN_BENCH_ONLY_EVENTS").is_some() {
        event_latency(20, 100, &[]);
        event_latency(0, 100, &["--ec2-rate", "off"]);
        return;
    }
    if std::env::var_os("HARDEN_BENCH_ONLY_ACCOUNTS").is_some() {
        accounts_side_by_side(10);
        return;
    }
    if std::env::var_os("HARDEN_BENCH_ONLY_NETWORK").is_none() {
        planner_only(20_000);
        against_moto(300);
        scaling::scaling(&scaling::sizes());
    }
    accounts_side_by_side(10);
    through_real_buckets(300);
    event_latency(20, 100, &[]);
    event_latency(0, 100, &["--ec2-rate", "off"]);
}
