//! `--region all` across every enabled region, the confirmation prompt of `apply` on a
//! real terminal (a pseudo-terminal from util-linux `script`), and Ctrl-C during apply.
//!
//! These run on moto only: they test harden's own behaviour (region fan-out, prompting,
//! interruption), which does not change with the emulator; the security-group and EBS
//! scenarios run on both moto and LocalStack.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::proxy::{Answer, Proxy};
use crate::support::{Emulator, Kind, run};

/// `--region all` plans every enabled region, and side by side: through a proxy that
/// holds each request 200 ms, one region after the other would never send a request
/// of one region less than 200 ms after one of another (each waits for its answer).
#[test]
fn region_all_plans_every_enabled_region_concurrently() {
    let emulator = Emulator::start(Kind::Moto);
    let state = tempfile::tempdir().expect("state");
    let arrivals: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let seen = Arc::clone(&arrivals);
    let proxy = Proxy::start(&emulator.endpoint, move |request| {
        // SigV4 names the region in the credential scope: Credential=KEY/DATE/REGION/...
        let region = request
            .head
            .split("Credential=")
            .nth(1)
            .and_then(|scope| scope.split('/').nth(2))
            .unwrap_or_default()
            .to_string();
        if let Ok(mut seen) = seen.lock() {
            seen.push((Instant::now(), region));
        }
        Answer::Delay(Duration::from_millis(200))
    });
    let mut cmd = emulator.harden_through(&proxy.endpoint, state.path());
    cmd.args([
        "plan",
        "runbooks/close-default-security-groups.yaml",
        "--region",
        "all",
        "--format",
        "json",
    ]);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    let regions: Vec<&str> = plan["accounts"][0]["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    assert!(regions.len() > 10, "{regions:?}");
    assert_eq!(
        regions[0], "us-east-1",
        "the home region (configured, else us-east-1) leads"
    );
    for expected in ["us-east-1", "eu-west-1", "ap-southeast-2"] {
        assert!(
            regions.contains(&expected),
            "{expected} missing from {regions:?}"
        );
    }
    // Every region's default VPC has an open default group: one change per region.
    let changed: std::collections::BTreeSet<&str> = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["region"].as_str())
        .collect();
    assert_eq!(changed.len(), regions.len());
    let arrivals = arrivals.lock().expect("arrivals").clone();
    let overlapping = arrivals.iter().enumerate().any(|(i, (at, region))| {
        arrivals[i + 1..].iter().any(|(other_at, other)| {
            other != region && other_at.saturating_duration_since(*at) < Duration::from_millis(150)
        })
    });
    assert!(
        overlapping,
        "no two regions' requests were in flight together: {:?}",
        arrivals.iter().map(|(_, r)| r).collect::<Vec<_>>()
    );
}

/// Runs `harden apply` under a pseudo-terminal, answering the prompt with `answer`.
fn apply_answering(emulator: &Emulator, state: &std::path::Path, answer: &str) -> (i32, String) {
    let binary = assert_cmd::cargo::cargo_bin("harden");
    let line = format!(
        "{} --endpoint-url {} --state-dir {} apply runbooks/close-default-security-groups.yaml --region eu-west-1",
        binary.display(),
        emulator.endpoint,
        state.display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{answer}\n").as_bytes())
        .expect("answer");
    let out = child.wait_with_output().expect("finishes");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn apply_asks_on_a_terminal_and_only_yes_applies() {
    let emulator = Emulator::start(Kind::Moto);
    let state = tempfile::tempdir().expect("state");
    let (code, stdout) = apply_answering(&emulator, state.path(), "y");
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("Only 'yes' is accepted"), "{stdout}");
    assert!(
        stdout.contains("Apply cancelled; nothing was changed."),
        "{stdout}"
    );
    assert!(!state.path().join("runs").exists(), "no run was started");

    let (code, stdout) = apply_answering(&emulator, state.path(), "yes");
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("1 succeeded, 0 failed, 0 not attempted"),
        "{stdout}"
    );
}

/// Ctrl-C during apply: the change in flight finishes and is recorded, nothing more
/// starts, the rest is audited as not attempted, and the exit code says it did not finish.
#[test]
fn an_interrupted_apply_finishes_in_flight_changes_and_records_the_rest() {
    let emulator = Emulator::start(Kind::Moto);
    let ec2 = emulator.ec2("eu-west-1");
    crate::support::block_on(crate::support::create_open_groups(
        &ec2,
        "10.60.0.0/16",
        "g",
        150,
    ));
    let state = tempfile::tempdir().expect("state");
    let (mut child, mut lines) = interruptible_apply(emulator.harden(state.path()), state.path());
    // Interrupt as soon as the first change is under way.
    wait_for(&mut lines, "applying");
    interrupt(&child);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("finishes");
    let stdout = std::fs::read_to_string(state.path().join("stdout.txt")).expect("stdout");
    assert_eq!(status.code(), Some(1), "{stdout}\n{rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("interrupted: finishing the changes in flight")),
        "{rest:?}"
    );
    assert!(
        stdout.contains("not attempted: apply was interrupted"),
        "{stdout}"
    );
    // 150 groups and the region's two default groups, one change each.
    let reported = |word: &str| {
        stdout
            .lines()
            .filter(|l| l.trim_start().starts_with(word))
            .count()
    };
    let (succeeded, skipped) = (reported("ok "), reported("skipped "));
    assert_eq!(succeeded + skipped, 152, "{stdout}");
    assert!(
        succeeded >= 1 && skipped >= 1,
        "some but not all changes made: {stdout}"
    );

    // Every change is accounted for in the audit log, and the chain verifies.
    let log = std::fs::read_to_string(state.path().join("audit.jsonl")).expect("audit log");
    let changes = log
        .lines()
        .filter(|l| l.contains("\"type\":\"change\""))
        .count();
    assert_eq!(changes, 152);
    emulator.assert_audit_verifies(state.path());
}

/// A second Ctrl-C does not wait for the changes in flight: through a proxy that holds
/// every change for 20 s, the first interrupt lets the change under way finish, the
/// second stops harden at once with exit code 130 (as shells report an interrupt), and
/// what it wrote still verifies: the journal shows the run interrupted with its change
/// in flight, for `harden resume` to read back.
#[test]
fn a_second_interrupt_exits_at_once_with_130_and_leaves_the_audit_verifying() {
    let emulator = Emulator::start(Kind::Moto);
    let ec2 = emulator.ec2("eu-west-1");
    crate::support::block_on(crate::support::create_open_groups(
        &ec2,
        "10.61.0.0/16",
        "slow",
        3,
    ));
    let slow = Proxy::start(&emulator.endpoint, |request| {
        if request.text().contains("Action=ModifySecurityGroupRules") {
            Answer::Delay(Duration::from_secs(20))
        } else {
            Answer::Forward
        }
    });
    let state = tempfile::tempdir().expect("state");
    let (mut child, mut lines) = interruptible_apply(
        emulator.harden_through(&slow.endpoint, state.path()),
        state.path(),
    );
    wait_for(&mut lines, "applying");
    interrupt(&child);
    wait_for(&mut lines, "interrupted: finishing the changes in flight");
    let second = Instant::now();
    interrupt(&child);
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("exits");
    assert_eq!(status.code(), Some(130), "{rest:?}");
    assert!(
        second.elapsed() < Duration::from_secs(15),
        "exited without waiting for the change held 20 s: {:?}",
        second.elapsed()
    );
    assert!(
        rest.iter().any(|l| l.contains("exiting at once")),
        "{rest:?}"
    );
    emulator.assert_audit_verifies(state.path());
    let runs = run({
        let mut cmd = emulator.harden(state.path());
        cmd.args(["runs", "--format", "json"]);
        cmd
    });
    assert_eq!(runs.code, 0, "{}", runs.stderr);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).expect("runs JSON");
    assert_eq!(runs[0]["state"], "interrupted", "{runs}");
    assert_eq!(
        runs[0]["in_flight"], 1,
        "the change held at the proxy: {runs}"
    );
}

/// `cmd` started as an apply of restrict-sg-egress in eu-west-1 one change at a time,
/// logging each change it starts; stdout goes to `state/stdout.txt` (the plan printed
/// first is large, so that neither pipe can fill while the test reads the other).
fn interruptible_apply(
    mut cmd: Command,
    state: &std::path::Path,
) -> (
    std::process::Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
) {
    use std::io::BufRead;
    cmd.args([
        "apply",
        "runbooks/restrict-sg-egress.yaml",
        "--region",
        "eu-west-1",
        "--yes",
        "--concurrency",
        "1",
    ])
    .env("HARDEN_LOG", "harden=info")
    .stdout(std::fs::File::create(state.join("stdout.txt")).expect("stdout file"))
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("starts");
    let stderr = child.stderr.take().expect("stderr");
    (child, std::io::BufReader::new(stderr).lines())
}

/// Reads stderr up to the first line holding `needle`.
fn wait_for(lines: &mut impl Iterator<Item = std::io::Result<String>>, needle: &str) {
    for line in lines.by_ref() {
        if line.expect("stderr line").contains(needle) {
            return;
        }
    }
    panic!("stderr ended before a line with {needle:?}");
}

/// Ctrl-C, as a terminal sends it.
fn interrupt(child: &std::process::Child) {
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill")
            .success()
    );
}
