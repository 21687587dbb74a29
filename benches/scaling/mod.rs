//! Apply of restrict-sg-egress at growing N against a plain sequential SDK loop making
//! the same calls on the same moto (the floor for those calls), with what each costs:
//! wall time, client CPU, peak RSS, requests served and the emulator's CPU per second
//! of wall (its saturation). Writes the figures as JSON and draws them (SVG, and PNG
//! through headless Chromium when `HARDEN_CHROMIUM` names it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_ec2::types::{SecurityGroupRuleRequest, SecurityGroupRuleUpdate};
use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::REGION;
use crate::support::{Emulator, Kind, block_on, create_vpc};

mod chart;

/// The allow-list every group's allow-all egress becomes (as the issue measured
/// Cloud Custodian's set-permissions against).
const ALLOWED: &str = "allowed_egress=[{protocol: tcp, from_port: 443, to_port: 443, cidr: 10.0.0.0/8, description: HTTPS to the private ranges}]";

/// Linux reports process times in clock ticks of 1/100 s (USER_HZ on every
/// architecture Linux runs harden on).
const TICKS_PER_SECOND: f64 = 100.0;

/// What one run cost.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Cost {
    pub wall_s: f64,
    pub client_cpu_s: f64,
    /// Peak resident memory of the harden process (the plain loop runs in the bench
    /// process, whose peak says nothing about it).
    pub peak_rss_mib: Option<f64>,
    pub requests: usize,
    /// Seconds of emulator CPU per second of wall: 1.0 is one core busy throughout.
    pub emulator_busy: f64,
}

/// One N.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Point {
    pub groups: usize,
    pub plan_client_cpu_s: f64,
    pub harden: Cost,
    pub sdk_loop: Cost,
}

/// utime + stime of `/proc/<pid>/stat` (or `thread-self`) in seconds.
fn cpu_seconds(stat: &str) -> Option<f64> {
    // The command name is in parentheses and may hold spaces: fields count from after it.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / TICKS_PER_SECOND)
}

/// CPU seconds process `pid` has used.
pub(crate) fn process_cpu(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| cpu_seconds(&s))
        .unwrap_or(0.0)
}

fn thread_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/stat")
        .ok()
        .and_then(|s| cpu_seconds(&s))
        .unwrap_or(0.0)
}

/// Runs `cmd` to its end, sampling its peak RSS while it runs and reading its CPU time
/// once it has exited but before it is reaped (a zombie keeps its times, not its memory).
fn measured(mut cmd: Command, out_dir: &Path) -> (i32, f64, f64, f64) {
    let stdout = std::fs::File::create(out_dir.join("stdout")).expect("stdout file");
    let stderr = std::fs::File::create(out_dir.join("stderr")).expect("stderr file");
    let started = Instant::now();
    let mut child = cmd
        .stdout(stdout)
        .stderr(stderr)
        .stdin(Stdio::null())
        .spawn()
        .expect("harden starts");
    let pid = child.id();
    let (mut peak_kib, mut cpu) = (0u64, 0.0);
    while let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next());
        if state == Some("Z") {
            cpu = cpu_seconds(&stat).unwrap_or(0.0);
            break;
        }
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(kib) = status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        {
            peak_kib = kib;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = started.elapsed().as_secs_f64();
    let code = child.wait().expect("harden ends").code().unwrap_or(-1);
    (code, wall, cpu, peak_kib as f64 / 1024.0)
}

async fn seed(ec2: &aws_sdk_ec2::Client, n: usize) {
    let vpc = create_vpc(ec2, "10.70.0.0/16").await;
    // New groups come with the allow-all egress rule: nothing else to add.
    let made: Vec<()> = stream::iter(0..n)
        .map(|i| {
            let (ec2, vpc) = (ec2.clone(), vpc.clone());
            async move {
                ec2.create_security_group()
                    .group_name(format!("scale-{i}"))
                    .description("bench")
                    .vpc_id(vpc)
                    .send()
                    .await
                    .expect("group");
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(made.len(), n);
}

/// The plain loop: list the rules once, rewrite each allow-all egress rule in place,
/// one call after the other.
async fn sdk_loop(ec2: &aws_sdk_ec2::Client) -> usize {
    let mut open = Vec::new();
    let mut pages = ec2
        .describe_security_group_rules()
        .max_results(1000)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for rule in page.expect("rules").security_group_rules() {
            if rule.is_egress() == Some(true)
                && rule.ip_protocol() == Some("-1")
                && rule.cidr_ipv4() == Some("0.0.0.0/0")
                && let (Some(group), Some(id)) = (rule.group_id(), rule.security_group_rule_id())
            {
                open.push((group.to_string(), id.to_string()));
            }
        }
    }
    for (group, id) in &open {
        ec2.modify_security_group_rules()
            .group_id(group)
            .security_group_rules(
                SecurityGroupRuleUpdate::builder()
                    .security_group_rule_id(id)
                    .security_group_rule(
                        SecurityGroupRuleRequest::builder()
                            .ip_protocol("tcp")
                            .from_port(443)
                            .to_port(443)
                            .cidr_ipv4("10.0.0.0/8")
                            .description("HTTPS to the private ranges")
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("modify");
    }
    open.len()
}

fn point(groups: usize) -> Point {
    let emulator = Emulator::start(Kind::Moto);
    let ec2 = emulator.ec2(REGION);

    // The floor first, on the same moto, which is then reset and seeded again.
    block_on(seed(&ec2, groups));
    let plain = emulator.ec2(REGION);
    let (served_before, moto_before, cpu_before, started) = (
        emulator.requests_served(),
        process_cpu(emulator.pid()),
        thread_cpu(),
        Instant::now(),
    );
    let rewritten = block_on(sdk_loop(&plain));
    let wall = started.elapsed().as_secs_f64();
    // The seeded groups, and the default groups of moto's default VPC and of the new one.
    assert!(
        rewritten >= groups,
        "one allow-all rule per group: {rewritten}"
    );
    let sdk_loop = Cost {
        wall_s: wall,
        client_cpu_s: thread_cpu() - cpu_before,
        peak_rss_mib: None,
        requests: emulator.requests_served() - served_before,
        emulator_busy: (process_cpu(emulator.pid()) - moto_before) / wall,
    };

    emulator.reset();
    block_on(seed(&ec2, groups));
    let state = tempfile::tempdir().expect("state");
    let saved = state.path().join("plan.json");
    let mut plan = emulator.harden(state.path());
    plan.args([
        "plan",
        "runbooks/restrict-sg-egress.yaml",
        "--region",
        REGION,
        "--param",
        ALLOWED,
        "--out",
    ])
    .arg(&saved);
    let (code, _, plan_cpu, _) = measured(plan, state.path());
    assert_eq!(
        code,
        0,
        "plan: {}",
        std::fs::read_to_string(state.path().join("stderr")).unwrap_or_default()
    );
    let mut apply = emulator.harden(state.path());
    // moto does not throttle, and the loop does not pace itself: harden's pacing to
    // EC2's buckets (5 changes a second after 50) is measured by through_real_buckets.
    apply
        .args(["apply", "--yes", "--ec2-rate", "off", "--plan"])
        .arg(&saved)
        .env("AWS_MAX_ATTEMPTS", "6");
    let (served_before, moto_before) = (emulator.requests_served(), process_cpu(emulator.pid()));
    let (code, wall, cpu, rss) = measured(apply, state.path());
    assert_eq!(
        code,
        0,
        "apply: {}",
        std::fs::read_to_string(state.path().join("stderr")).unwrap_or_default()
    );
    let harden = Cost {
        wall_s: wall,
        client_cpu_s: cpu,
        peak_rss_mib: Some(rss),
        requests: emulator.requests_served() - served_before,
        emulator_busy: (process_cpu(emulator.pid()) - moto_before) / wall,
    };
    Point {
        groups,
        plan_client_cpu_s: plan_cpu,
        harden,
        sdk_loop,
    }
}

/// The Ns measured: 300, 1000 and 3000 groups, or `HARDEN_BENCH_SCALING_SIZES`
/// (comma-separated) for a quicker look.
pub(crate) fn sizes() -> Vec<usize> {
    std::env::var("HARDEN_BENCH_SCALING_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|sizes: &Vec<usize>| !sizes.is_empty())
        .unwrap_or_else(|| vec![300, 1000, 3000])
}

/// Measures every N, prints the table, writes `target/bench/scaling.json` and the chart.
pub(crate) fn scaling(sizes: &[usize]) {
    let points: Vec<Point> = sizes.iter().map(|&n| point(n)).collect();
    println!(
        "apply of restrict-sg-egress (one rewrite per group) against a plain sequential SDK loop, moto:"
    );
    println!(
        "{:>6} | {:>9} {:>9} {:>6} | {:>9} {:>9} | {:>11} {:>11} {:>8} | {:>9} {:>9} | {:>9} | {:>9}",
        "N",
        "harden s",
        "loop s",
        "ratio",
        "requests",
        "loop req",
        "CPU/change",
        "loop CPU",
        "RSS MiB",
        "moto busy",
        "loop busy",
        "plan CPU",
        "budget"
    );
    for p in &points {
        println!(
            "{:>6} | {:>9.2} {:>9.2} {:>5.2}x | {:>9} {:>9} | {:>8.3} ms {:>8.3} ms {:>8.1} | {:>9.2} {:>9.2} | {:>7.2} s | {:>9}",
            p.groups,
            p.harden.wall_s,
            p.sdk_loop.wall_s,
            p.harden.wall_s / p.sdk_loop.wall_s,
            p.harden.requests,
            p.sdk_loop.requests,
            p.harden.client_cpu_s * 1000.0 / p.groups as f64,
            // The loop's own CPU per call: the SDK's cost of a call, the floor for
            // harden's per change.
            p.sdk_loop.client_cpu_s * 1000.0 / p.groups as f64,
            p.harden.peak_rss_mib.unwrap_or(0.0),
            p.harden.emulator_busy,
            p.sdk_loop.emulator_busy,
            p.plan_client_cpu_s,
            p.groups + p.groups / 50,
        );
    }
    let dir = PathBuf::from("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    let json = serde_json::to_string_pretty(&points).expect("figures");
    std::fs::write(dir.join("scaling.json"), json).expect("scaling.json");
    chart::draw(&points, &dir.join("scaling.svg"), &dir.join("scaling.png"));
}
