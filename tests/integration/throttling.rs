//! Pacing by EC2's request-token buckets, through a proxy of the test suite that
//! enforces them in front of moto (scaled down so the test is quick): with harden's
//! limiter sized to the same buckets, one apply converges without a single call being
//! throttled; without it, the proxy throttles (so the test would see it). Throttling
//! no limiter can avoid (three requests in ten refused) is waited out: one apply still
//! converges.

use std::sync::Arc;

use crate::proxy::{Answer, Buckets, Proxy};
use crate::support::{Emulator, Kind, Run, block_on, create_vpc, run};

const REGION: &str = "eu-west-1";
const RUNBOOK: &str = "runbooks/restrict-sg-egress.yaml";
const GROUPS: usize = 40;

fn throttling_proxy(emulator: &Emulator, buckets: Arc<Buckets>) -> Proxy {
    Proxy::throttling(&emulator.endpoint, buckets)
}

fn seed(emulator: &Emulator, groups: usize) {
    block_on(async {
        let ec2 = emulator.ec2(REGION);
        let vpc = create_vpc(&ec2, "10.40.0.0/16").await;
        for n in 0..groups {
            ec2.create_security_group()
                .group_name(format!("app-{n}"))
                .description("app")
                .vpc_id(&vpc)
                .send()
                .await
                .expect("group");
        }
    });
}

fn apply(emulator: &Emulator, proxy: &Proxy, state: &std::path::Path, rates: &[&str]) -> Run {
    let mut cmd = emulator.harden_through(&proxy.endpoint, state);
    for rate in rates {
        cmd.args(["--ec2-rate", rate]);
    }
    cmd.args([
        "apply",
        RUNBOOK,
        "--region",
        REGION,
        "--yes",
        "--concurrency",
        "8",
    ]);
    run(cmd)
}

/// Asserts that the apply changed every group, the `groups` seeded plus the VPC's
/// default group and moto's default VPC's, and nothing failed; returns how many.
fn assert_every_group_changed(out: &Run, groups: usize) -> usize {
    let total = groups + 2;
    assert!(
        out.stdout
            .contains(&format!("{total} succeeded, 0 failed, 0 not attempted")),
        "{}",
        out.stdout
    );
    total
}

#[test]
fn paced_by_the_buckets_one_apply_converges_without_being_throttled_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    seed(&emulator, GROUPS);
    // EC2's buckets scaled down: describes 20 then 20 per second, mutations 10 then 5.
    let proxy = throttling_proxy(&emulator, Arc::new(Buckets::new((20.0, 20.0), (10.0, 5.0))));
    let state = tempfile::tempdir().expect("state");
    // The limiter is told the same buckets with 5% less refill: on this machine, under
    // the whole suite's load, a call can take longer to reach the proxy than the one
    // token harden keeps in reserve covers (50 ms at 20 per second).
    let out = apply(
        &emulator,
        &proxy,
        state.path(),
        &["describe=20/19", "mutating=10/4.75"],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_every_group_changed(&out, GROUPS);
    assert_eq!(
        proxy.answered(),
        0,
        "no call was throttled: the limiter paced them"
    );
    let mut cmd = emulator.harden_through(&proxy.endpoint, state.path());
    cmd.args(["plan", RUNBOOK, "--region", REGION, "--detailed-exitcode"]);
    assert_eq!(run(cmd).code, 0, "converged");
    emulator.assert_audit_verifies(state.path());
}

#[test]
fn unpaced_the_same_apply_is_throttled_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    seed(&emulator, GROUPS);
    let proxy = throttling_proxy(&emulator, Arc::new(Buckets::new((20.0, 20.0), (10.0, 5.0))));
    let state = tempfile::tempdir().expect("state");
    let out = apply(&emulator, &proxy, state.path(), &["off"]);
    assert!(
        proxy.answered() > 0,
        "the proxy throttles unpaced calls:\n{}",
        out.stdout
    );
    emulator.assert_audit_verifies(state.path());
}

/// Three EC2 requests in ten answered `RequestLimitExceeded` (whatever the limiter
/// does: another tool in the account spending the same tokens), while a saved plan is
/// applied with the SDK allowed only two attempts: harden sends the throttled calls
/// again until the run's deadline, so one apply converges, nothing fails, and each
/// change has exactly one record.
#[test]
fn with_three_requests_in_ten_throttled_one_apply_converges_on_moto() {
    const GROUPS: usize = 8;
    let emulator = Emulator::start(Kind::Moto);
    seed(&emulator, GROUPS);
    let state = tempfile::tempdir().expect("state");
    let saved = state.path().join("plan.json");
    let mut cmd = emulator.harden(state.path());
    cmd.args(["plan", RUNBOOK, "--region", REGION, "--out"])
        .arg(&saved);
    assert_eq!(run(cmd).code, 0);

    let seen = std::sync::atomic::AtomicUsize::new(0);
    let proxy = Proxy::start(&emulator.endpoint, move |request| {
        let ec2 = request.text().contains("Version=2016-11-15");
        let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // Spread over the requests (0, 3, 6 of every ten, in a shuffled order).
        if ec2 && (n * 7) % 10 < 3 {
            Answer::Respond(
                503,
                "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>proxy</RequestID></Response>".into(),
            )
        } else {
            Answer::Forward
        }
    });
    let mut cmd = emulator.harden_through(&proxy.endpoint, state.path());
    cmd.args(["apply", "--yes", "--plan"]).arg(&saved);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let total = assert_every_group_changed(&out, GROUPS);
    // Each change is its call and a share of its page's two reads, so three in ten
    // requests throttled is about a third as many answers as changes.
    assert!(
        proxy.answered() >= total / 4,
        "the proxy throttled: {} answers for {total} changes",
        proxy.answered()
    );

    let log = std::fs::read_to_string(state.path().join("audit.jsonl")).expect("audit");
    let changes: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("record"))
        .filter(|r| r["type"] == "change")
        .collect();
    assert_eq!(changes.len(), total, "one record per change");
    assert!(
        changes
            .iter()
            .all(|r| r["outcome"]["status"] == "succeeded" && r["recovered"].is_null()),
        "throttled calls were not made, so none is a recovered success"
    );
    let mut cmd = emulator.harden(state.path());
    cmd.args(["plan", RUNBOOK, "--region", REGION, "--detailed-exitcode"]);
    assert_eq!(run(cmd).code, 0, "converged");
    emulator.assert_audit_verifies(state.path());
}
