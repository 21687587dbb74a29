//! `make bench`: how plan and apply scale, against moto on loopback, and the pure planner
//! on a large in-memory inventory. Prints medians; it asserts nothing about speed.
//!
//! - plan of N security groups (discovery: three paginated list calls per region);
//! - apply of N independent group changes at --concurrency 1 and 8;
//! - the planner alone over 20,000 groups, with the process's peak memory.

#[path = "../tests/integration/support.rs"]
#[allow(dead_code, unreachable_pub)]
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{IpPermission, Ipv6Range};
use harden::accounts::Scope;
use harden::aws::CallerIdentity;
use harden::inventory::{Peer, RegionInventory, Resource, ResourceKind, Rule, SecurityGroup};
use harden::plan::planner::{Place, PlanRequest, plan_on_inventory};
use harden::runbook::{load_paths, params, validate::validate};
use harden::template::Renderer;
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

fn main() {
    // `cargo bench` passes --bench; a filter argument is not supported here.
    std::env::set_current_dir(env!("CARGO_MANIFEST_DIR")).expect("project root");
    planner_only(20_000);
    against_moto(300);
}
