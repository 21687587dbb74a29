//! Bad input: a clear message naming the file, line and column or the flag, exit 1,
//! and nothing contacted or changed.

use std::path::Path;
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;

use crate::support::{Emulator, Kind, block_on, create_open_group, run};

fn harden(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("harden").expect("binary");
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        // Nothing listens here: any AWS call would fail loudly.
        .arg("--endpoint-url")
        .arg("http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_MAX_ATTEMPTS", "1");
    cmd
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write runbook");
    path
}

const GOOD_HEAD: &str =
    "version: 1\nid: t\ntitle: T\ndiscover:\n  groups:\n    resource: ec2:security-group\n";

#[test]
fn malformed_yaml_names_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "bad.yaml",
        "version: 1\nid: t\ntitle: \"unclosed\nsteps: []\n",
    );
    let out = run({
        let mut c = harden(dir.path());
        c.arg("validate").arg(&file);
        c
    });
    assert_eq!(out.code, 1);
    let first = out.stderr.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("error: {}:3:", file.display())),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join("state").exists(), "nothing written");
}

#[test]
fn duplicate_keys_are_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(
        dir.path(),
        "dup.yaml",
        "version: 1\nid: t\nid: u\ntitle: T\nsteps: []\n",
    );
    let out = run({
        let mut c = harden(dir.path());
        c.arg("validate").arg(&file);
        c
    });
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(&format!("{}:3:", file.display())),
        "{}",
        out.stderr
    );
}

#[test]
fn unknown_action_and_bad_templates_are_all_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "{GOOD_HEAD}steps:\n  - id: a\n    action: ec2:nope\n    for_each: groups\n  - id: b\n    action: ec2:restrict-egress\n    for_each: groups\n    args:\n      allowed: \"{{{{params.missing}}}}\"\n  - id: b\n    action: ec2:close-security-group\n    for_each: groups\n    args:\n      close_in_use: \"{{{{steps.c.outputs.x}}}}\"\n  - id: c\n    action: ec2:close-security-group\n    for_each: groups\n"
    );
    let file = write(dir.path(), "many.yaml", &text);
    let out = run({
        let mut c = harden(dir.path());
        c.arg("validate").arg(&file);
        c
    });
    assert_eq!(out.code, 1);
    let f = file.display().to_string();
    for expected in [
        format!("error: {f}:9:13: step a: unknown action \"ec2:nope\""),
        format!(
            "error: {f}:15:16: step b argument allowed: variable \"params.missing\" does not exist"
        ),
        format!("error: {f}:16:9: duplicate step id \"b\""),
        format!("error: {f}:20:21: step b refers to steps.c, a later step"),
    ] {
        assert!(
            out.stderr.contains(&expected),
            "missing {expected:?} in:\n{}",
            out.stderr
        );
    }
}

#[test]
fn missing_required_parameter_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "{GOOD_HEAD}parameters:\n  allowed:\n    type: list\nsteps:\n  - id: a\n    action: ec2:restrict-egress\n    for_each: groups\n    args:\n      allowed: \"{{{{params.allowed}}}}\"\n"
    );
    let file = write(dir.path(), "req.yaml", &text);
    let out = run({
        let mut c = harden(dir.path());
        c.arg("plan").arg(&file);
        c
    });
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("runbook t needs the parameter allowed (list): pass --param allowed=VALUE"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("127.0.0.1:9"),
        "nothing contacted: {}",
        out.stderr
    );
}

#[test]
fn bad_params_are_refused_before_anything_is_contacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (param, message) in [
        (
            "close_in_use=maybe",
            "--param close_in_use=maybe: parameter close_in_use of runbook close-default-security-groups: expected a bool, found the string \"maybe\"",
        ),
        (
            "nonsense=1",
            "--param nonsense: no selected runbook declares the parameter nonsense",
        ),
        (
            "noequals",
            "--param noequals: expected KEY=VALUE or RUNBOOK_ID.KEY=VALUE",
        ),
        (
            "other-runbook.close_in_use=true",
            "--param other-runbook.close_in_use: no selected runbook has the id other-runbook",
        ),
    ] {
        let out = run({
            let mut c = harden(dir.path());
            c.args([
                "plan",
                "runbooks/close-default-security-groups.yaml",
                "--param",
                param,
            ]);
            c
        });
        assert_eq!(out.code, 1, "{param}");
        assert!(out.stderr.contains(message), "{param}: {}", out.stderr);
        assert!(!dir.path().join("state").exists(), "nothing written");
    }
}

/// A saved plan applied once its endpoint has gone (moto stopped after planning): apply
/// fails naming the endpoint, and the audit log the plan was recorded in gains no
/// record of a change, let alone a success.
#[test]
fn unreachable_endpoint_fails_clearly_without_a_success_record() {
    let emulator = Emulator::start(Kind::Moto);
    block_on(create_open_group(
        &emulator.ec2("us-east-1"),
        "10.80.0.0/16",
        "gone",
    ));
    let state = tempfile::tempdir().expect("state");
    let saved = state.path().join("plan.json");
    let mut plan = emulator.harden(state.path());
    plan.args([
        "plan",
        "runbooks/restrict-sg-egress.yaml",
        "--region",
        "us-east-1",
        "--out",
    ])
    .arg(&saved);
    assert_eq!(run(plan).code, 0);
    let mut apply = emulator.harden(state.path());
    apply.args(["apply", "--yes", "--plan"]).arg(&saved);
    let endpoint = emulator.endpoint.clone();
    drop(emulator);

    let out = run(apply);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("EndpointUnreachable"), "{}", out.stderr);
    let log =
        std::fs::read_to_string(state.path().join("audit.jsonl")).expect("the plan's audit log");
    let records: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("record"))
        .collect();
    assert!(
        records.iter().any(|r| r["type"] == "plan_saved"),
        "the log the apply would write to is there: {log}"
    );
    assert!(
        records.iter().all(|r| r["type"] != "change"),
        "no change is recorded, let alone a success, against {endpoint}: {log}"
    );
}

#[test]
fn malformed_plan_file_names_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, "{\"format_version\": 1, \"oops\": ").expect("write");
    let out = run({
        let mut c = harden(dir.path());
        c.args(["apply", "--plan"]).arg(&plan);
        c
    });
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(&format!("{}:1:", plan.display())),
        "{}",
        out.stderr
    );
}

#[test]
fn schema_and_list_describe_the_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run({
        let mut c = harden(dir.path());
        c.arg("schema");
        c
    });
    assert_eq!(out.code, 0);
    let schema: serde_json::Value = serde_json::from_str(&out.stdout).expect("schema is JSON");
    assert!(schema["properties"]["steps"].is_object(), "{}", out.stdout);
    let out = run({
        let mut c = harden(dir.path());
        c.args(["list", "runbooks/"]);
        c
    });
    assert_eq!(out.code, 0);
    assert!(
        out.stdout.contains("close-default-security-groups")
            && out.stdout.contains("control: AWS FSBP EC2.2")
    );
    assert!(
        out.stdout.contains(
            "trigger: AuthorizeSecurityGroupEgress -> groups, narrowed to the ids at detail.requestParameters.groupId"
        ) && out.stdout.contains("trigger: StopLogging -> trails of the event's region"),
        "{}",
        out.stdout
    );
    assert!(
        schema["properties"]["triggers"].is_object(),
        "the schema has triggers"
    );
}

#[test]
fn wait_and_outputs_an_action_does_not_have_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "{GOOD_HEAD}steps:\n  - id: a\n    action: ec2:close-security-group\n    for_each: groups\n    wait: {{timeout_seconds: 5}}\n    outputs: [x]\n"
    );
    let file = write(dir.path(), "wait.yaml", &text);
    let out = run({
        let mut c = harden(dir.path());
        c.arg("validate").arg(&file);
        c
    });
    assert_eq!(out.code, 1);
    let f = file.display().to_string();
    assert!(
        out.stderr.contains(&format!(
            "error: {f}:9:13: step a: action ec2:close-security-group does not wait for anything"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!(
            "error: {f}:12:15: step a: action ec2:close-security-group has no output \"x\""
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn endless_and_non_utf8_input_is_refused_within_bounds_with_a_location() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run({
        let mut c = harden(dir.path());
        c.args(["validate", "/dev/zero"]);
        c
    });
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("/dev/zero: runbook is over 4194304 bytes"),
        "{}",
        out.stderr
    );
    let file = dir.path().join("latin1.yaml");
    std::fs::write(&file, b"version: 1\nid: t\ntitle: caf\xe9\nsteps: []\n").expect("write");
    let out = run({
        let mut c = harden(dir.path());
        c.arg("validate").arg(&file);
        c
    });
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains(&format!("{}:3:11: not UTF-8 text", file.display())),
        "{}",
        out.stderr
    );
    // A saved plan is bounded too.
    let out = run({
        let mut c = harden(dir.path());
        c.args(["apply", "--plan", "/dev/zero", "--yes"]);
        c
    });
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("plan is over"), "{}", out.stderr);
    assert!(!dir.path().join("state").exists(), "nothing written");
}

#[test]
fn plan_and_apply_refuse_a_broken_audit_chain_before_contacting_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    {
        let mut log = harden::audit::AuditLog::open(&state).expect("opens");
        for run in ["run-a", "run-b"] {
            log.append(
                run,
                "123456789012",
                "arn:aws:iam::123456789012:user/a",
                harden::audit::Entry::Repair {
                    detail: "seeded by the test".into(),
                },
            )
            .expect("appends");
        }
    }
    let path = state.join("audit.jsonl");
    let text = std::fs::read_to_string(&path).expect("reads");
    std::fs::write(&path, text.replacen("run-a", "run-z", 1)).expect("writes");
    for args in [
        vec!["plan", "runbooks/restrict-sg-egress.yaml"],
        vec!["apply", "runbooks/restrict-sg-egress.yaml", "--yes"],
    ] {
        let out = run({
            let mut c = harden(dir.path());
            c.args(&args);
            c
        });
        assert_eq!(out.code, 1, "{args:?}");
        assert!(
            out.stderr
                .contains("line 1: its content does not match its hash")
                && out.stderr.contains("restore audit.jsonl from a copy"),
            "{args:?}: {}",
            out.stderr
        );
        // Refused before discovery: the unreachable endpoint was never tried.
        assert!(!out.stderr.contains("endpoint"), "{}", out.stderr);
    }
}

/// The corpus of bad runbooks (`tests/fixtures/bad-runbooks/`, each naming on its first
/// line, `# expect: ...`, what its error must say): every one is refused by `validate`,
/// `plan` and `apply` alike with exit 1, a `file:line:column` and that text, quickly
/// (alias bombs and 10,000-deep nesting included), without a panic and before anything
/// is contacted or written.
#[test]
fn every_file_of_the_bad_runbook_corpus_is_refused_with_a_location() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad-runbooks");
    let mut files: Vec<_> = std::fs::read_dir(&corpus)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 10, "the corpus holds {} files", files.len());
    for file in files {
        let bytes = std::fs::read(&file).expect("read");
        let first = String::from_utf8_lossy(&bytes);
        let expect = first
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{}: first line says `# expect: ...`", file.display()))
            .to_string();
        let name = file.file_name().and_then(|n| n.to_str()).expect("name");
        for command in [
            vec!["validate"],
            vec!["plan", "--region", "us-east-1"],
            vec!["apply", "--yes", "--region", "us-east-1"],
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let started = std::time::Instant::now();
            let mut cmd = harden(dir.path());
            cmd.args(&command).arg(&file);
            let out = run(cmd);
            assert_eq!(out.code, 1, "{name} {command:?}: {}", out.stderr);
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "{name}: refused within bounds, not after {:?}",
                started.elapsed()
            );
            let at = format!("{}:", file.display());
            let line: Option<u64> = out.stderr.find(&at).and_then(|i| {
                let rest = &out.stderr[i + at.len()..];
                let (line, rest) = rest.split_once(':')?;
                let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
                (!column.is_empty()).then_some(())?;
                line.parse().ok()
            });
            assert!(
                line.is_some_and(|l| l > 0),
                "{name} {command:?}: names the file, line and column: {}",
                out.stderr
            );
            assert!(
                out.stderr.to_lowercase().contains(&expect.to_lowercase()),
                "{name} {command:?}: says {expect:?}: {}",
                out.stderr
            );
            assert!(!out.stderr.contains("panicked"), "{name}: {}", out.stderr);
            assert!(
                !dir.path().join("state").join("audit.jsonl").exists(),
                "{name} {command:?}: nothing written"
            );
        }
    }
}
