//! `harden enforce` over three accounts and two regions of moto, as a platform team runs
//! it every night: a policy that auto-fixes open egress, holds the default groups'
//! closure for approval and reports EBS encryption. Asserted: exactly the auto changes
//! are made; the held ones are a saved plan that `apply --plan` applies exactly; the
//! report (JSON, and HTML rendered in headless Chromium) says what was fixed, what
//! awaits approval and what drift is left; the exit codes a scheduler reads (2 while
//! drift is left, 0 once compliant); a second enforce on a held state directory is
//! refused at once.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::multi_account::{any_open, seed};
use crate::support::{Emulator, Kind, Run, block_on, run, runbooks_changed};

const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const ACCOUNTS: [&str; 3] = ["111111111111", "222222222222", "333333333333"];
const RUNBOOKS: [&str; 3] = [
    "runbooks/close-default-security-groups.yaml",
    "runbooks/encrypt-ebs-volumes.yaml",
    "runbooks/restrict-sg-egress.yaml",
];
const POLICY: &str = "version: 1
default: report
rules:
  - {mode: auto, runbook: restrict-sg-egress}
  - {mode: approve, runbook: close-default-security-groups}
";

fn enforce(emulator: &Emulator, state: &Path, extra: &[&str]) -> Run {
    let mut cmd = emulator.harden(state);
    cmd.arg("enforce").args(RUNBOOKS);
    for region in REGIONS {
        cmd.args(["--region", region]);
    }
    cmd.args(extra);
    run(cmd)
}

async fn default_groups_open(emulator: &Emulator, account: &str, region: &str) -> usize {
    emulator
        .ec2_in(account, region)
        .await
        .describe_security_groups()
        .send()
        .await
        .expect("groups")
        .security_groups()
        .iter()
        .filter(|g| g.group_name() == Some("default") && !g.ip_permissions_egress().is_empty())
        .count()
}

async fn encrypted_by_default(emulator: &Emulator, account: &str, region: &str) -> bool {
    emulator
        .ec2_in(account, region)
        .await
        .get_ebs_encryption_by_default()
        .send()
        .await
        .expect("default encryption")
        .ebs_encryption_by_default()
        .unwrap_or(false)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .expect("JSON")
}

/// Renders the page in headless Chromium: the DOM as rendered, and what Chromium
/// logged (console messages included).
fn render_in_chromium(page: &Path) -> (String, String) {
    let chromium = std::env::var("HARDEN_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium is not installed at {chromium}: run `make browser` (or set HARDEN_CHROMIUM)"
    );
    let profile = tempfile::tempdir().expect("profile");
    let out = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn enforce_fixes_what_the_policy_allows_holds_and_reports_the_rest_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    block_on(seed(&emulator, &ACCOUNTS));
    let state = tempfile::tempdir().expect("state");
    let accounts = state.path().join("accounts.yaml");
    std::fs::write(
        &accounts,
        format!(
            "accounts:\n  - {{id: \"{}\", name: sandbox, tags: {{env: sandbox}}}}\n  - {{id: \"{}\", name: stage}}\n  - {{id: \"{}\", name: prod, tags: {{env: prod}}}}\n",
            ACCOUNTS[0], ACCOUNTS[1], ACCOUNTS[2]
        ),
    )
    .expect("accounts");
    let policy = state.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).expect("policy");
    let reports = state.path().join("reports");
    let flags = [
        "--accounts",
        accounts.to_str().expect("utf-8"),
        "--policy",
        policy.to_str().expect("utf-8"),
        "--report-dir",
        reports.to_str().expect("utf-8"),
    ];

    // A second enforce while one holds the state directory is refused at once.
    // `-o`: the lock is held by flock itself, not by the sleep it runs, so killing
    // flock releases it.
    let mut holder = Command::new("flock")
        .arg("-o")
        .arg(state.path().join("lock"))
        .args(["sleep", "30"])
        .spawn()
        .expect("flock");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = enforce(&emulator, state.path(), &flags);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr
            .contains("another harden is writing to this state directory"),
        "{}",
        out.stderr
    );
    assert!(!reports.exists(), "nothing was planned or written");

    block_on(async {
        emulator
            .s3("us-east-1")
            .create_bucket()
            .bucket("org-harden")
            .send()
            .await
            .expect("bucket")
    });
    let shipping = [
        "--report-bucket",
        "org-harden",
        "--audit-bucket",
        "org-harden",
        "--security-hub",
    ];
    let out = enforce(
        &emulator,
        state.path(),
        &[&flags[..], &shipping[..]].concat(),
    );
    assert_eq!(out.code, 2, "drift is left: {}\n{}", out.stdout, out.stderr);
    block_on(async {
        for account in ACCOUNTS {
            for region in REGIONS {
                let ec2 = emulator.ec2_in(account, region).await;
                assert!(
                    !any_open(&ec2).await,
                    "auto: {account} {region} app group restricted"
                );
                assert_eq!(
                    default_groups_open(&emulator, account, region).await,
                    2,
                    "approve: {account} {region} default groups untouched"
                );
                assert!(
                    !encrypted_by_default(&emulator, account, region).await,
                    "report: untouched"
                );
            }
        }
    });
    let pending = reports.join("pending-plan.json");
    let held = read_json(&pending);
    assert_eq!(runbooks_changed(&held), ["close-default-security-groups"]);
    assert_eq!(
        held["changes"].as_array().map(Vec::len),
        Some(12),
        "2 default groups per account-region"
    );

    let report = read_json(&reports.join("report.json"));
    assert_eq!(report["source"], "enforce");
    let summary = &report["summary"];
    assert_eq!(
        (
            summary["accounts"].as_u64(),
            summary["fixed"].as_u64(),
            summary["awaiting_approval"].as_u64(),
            summary["drift"].as_u64(),
            summary["failed"].as_u64()
        ),
        (Some(3), Some(6), Some(12), Some(6), Some(0))
    );
    let first = &report["accounts"][0];
    assert_eq!(first["name"], "sandbox");
    let statuses: Vec<(&str, &str, &str)> = first["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .flat_map(|r| {
            r["runbooks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |b| {
                    (
                        r["region"].as_str().unwrap_or_default(),
                        b["runbook"].as_str().unwrap_or_default(),
                        b["status"].as_str().unwrap_or_default(),
                    )
                })
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (
                "us-east-1",
                "close-default-security-groups",
                "awaiting_approval"
            ),
            ("us-east-1", "encrypt-ebs-volumes", "drift"),
            ("us-east-1", "restrict-sg-egress", "fixed"),
            (
                "eu-west-1",
                "close-default-security-groups",
                "awaiting_approval"
            ),
            ("eu-west-1", "encrypt-ebs-volumes", "drift"),
            ("eu-west-1", "restrict-sg-egress", "fixed"),
        ]
    );

    // The report and the run's audit records were shipped, encrypted, under keys that
    // name the account, the shard and the run.
    let run_id = report["run_id"].as_str().expect("run id").to_string();
    let caller = emulator.account();
    block_on(async {
        let s3 = emulator.s3("us-east-1");
        let listed = s3
            .list_objects_v2()
            .bucket("org-harden")
            .send()
            .await
            .expect("list");
        let mut keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                format!("harden/audit/{caller}/all/{run_id}.jsonl"),
                format!("harden/reports/{caller}/all/{run_id}/pending-plan.json"),
                format!("harden/reports/{caller}/all/{run_id}/report.html"),
                format!("harden/reports/{caller}/all/{run_id}/report.json"),
            ]
        );
        for key in &keys {
            let head = s3
                .head_object()
                .bucket("org-harden")
                .key(*key)
                .send()
                .await
                .expect("head");
            assert_eq!(
                head.server_side_encryption(),
                Some(&aws_sdk_s3::types::ServerSideEncryption::Aes256),
                "{key}"
            );
        }
        let segment = s3
            .get_object()
            .bucket("org-harden")
            .key(format!("harden/audit/{caller}/all/{run_id}.jsonl"))
            .send()
            .await
            .expect("segment")
            .body
            .collect()
            .await
            .expect("body")
            .into_bytes();
        let records: Vec<Value> = String::from_utf8_lossy(&segment)
            .lines()
            .map(|l| serde_json::from_str(l).expect("record"))
            .collect();
        assert!(records.iter().all(|r| r["run_id"] == run_id.as_str()));
        // The plan summary, the six changes, the apply summary and the seal of the
        // changes held for approval.
        assert_eq!(records.len(), 9, "{records:?}");
        assert_eq!(records[8]["type"], "plan_saved");
    });

    // Each account's findings went to its own Security Hub: the fixed group resolved,
    // with a note naming the run; the reported drift new and failed.
    assert!(
        out.stdout.contains(&format!(
            "Security Hub {} us-east-1: 4 finding(s) imported (1 resolved), 0 refused",
            ACCOUNTS[0]
        )),
        "{}",
        out.stdout
    );
    block_on(async {
        let hub =
            aws_sdk_securityhub::Client::new(&emulator.config_in(ACCOUNTS[0], "us-east-1").await);
        let found = hub
            .get_findings()
            .max_results(100)
            .send()
            .await
            .expect("findings");
        let findings = found.findings();
        assert_eq!(findings.len(), 4, "{findings:?}");
        let fixed: Vec<_> = findings
            .iter()
            .filter(|f| f.generator_id() == Some("harden/restrict-sg-egress"))
            .collect();
        assert_eq!(fixed.len(), 1);
        assert_eq!(
            fixed[0].workflow().and_then(|w| w.status()),
            Some(&aws_sdk_securityhub::types::WorkflowStatus::Resolved)
        );
        assert!(
            fixed[0]
                .note()
                .and_then(|n| n.text())
                .is_some_and(|t| t.contains(&run_id)),
            "{:?}",
            fixed[0].note()
        );
        let ebs: Vec<_> = findings
            .iter()
            .filter(|f| f.generator_id() == Some("harden/encrypt-ebs-volumes"))
            .collect();
        assert_eq!(ebs.len(), 1);
        assert_eq!(
            ebs[0].compliance().and_then(|c| c.status()),
            Some(&aws_sdk_securityhub::types::ComplianceStatus::Failed)
        );
    });
    // The same findings as OCSF Detection Findings, as Prowler writes them.
    let mut ocsf = emulator.harden(state.path());
    ocsf.args(["report", "--run", &run_id, "--format", "ocsf"]);
    let out = run(ocsf);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let findings: Vec<Value> = serde_json::from_str(&out.stdout).expect("OCSF JSON");
    assert_eq!(
        findings.len(),
        6 + 12 + 6,
        "one per resource fixed, held or left"
    );
    assert!(
        findings
            .iter()
            .all(|f| f["class_uid"] == 2004 && f["category_uid"] == 2)
    );
    assert_eq!(
        findings
            .iter()
            .filter(|f| f["status"] == "Resolved")
            .count(),
        6
    );

    // The HTML page renders in a real browser, without console errors, summary first.
    let (dom, log) = render_in_chromium(&reports.join("report.html"));
    for (total, value) in [
        ("fixed", 6),
        ("awaiting_approval", 12),
        ("drift", 6),
        ("failed", 0),
    ] {
        assert!(
            dom.contains(&format!(
                "data-total=\"{total}\"><span class=\"n\">{value}</span>"
            )),
            "{total} = {value} in the summary:\n{dom}"
        );
    }
    assert!(dom.find("id=\"summary\"") < dom.find("id=\"account-111111111111\""));
    assert!(!log.contains("CONSOLE"), "no console message: {log}");

    // The held plan as a page for a reviewer: the changes coloured by their sign.
    let mut page = emulator.harden(state.path());
    page.args(["plan", "--format", "html"])
        .args(RUNBOOKS[..1].iter());
    page.args(["--accounts", accounts.to_str().expect("utf-8")]);
    for region in REGIONS {
        page.args(["--region", region]);
    }
    let out = run(page);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan_page = state.path().join("plan.html");
    std::fs::write(&plan_page, &out.stdout).expect("page");
    let (dom, log) = render_in_chromium(&plan_page);
    assert!(
        dom.contains("<span class=\"del\">")
            && dom.contains("Plan: 0 to create, 0 to update, 12 to delete."),
        "{dom}"
    );
    assert!(!log.contains("CONSOLE"), "{log}");

    // The held changes, applied exactly after review.
    let mut apply = emulator.harden(state.path());
    apply.args(["apply", "--yes", "--plan", pending.to_str().expect("utf-8")]);
    let out = run(apply);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("12 succeeded, 0 failed"),
        "{}",
        out.stdout
    );

    // Reported drift stays until a person fixes it; then enforce finds nothing left.
    let out = enforce(&emulator, state.path(), &flags);
    assert_eq!(out.code, 2, "{}", out.stdout);
    let report = read_json(&reports.join("report.json"));
    assert_eq!(
        (
            report["summary"]["fixed"].as_u64(),
            report["summary"]["awaiting_approval"].as_u64(),
            report["summary"]["drift"].as_u64()
        ),
        (Some(0), Some(0), Some(6))
    );
    let mut fix = emulator.harden(state.path());
    fix.args([
        "apply",
        "runbooks/encrypt-ebs-volumes.yaml",
        "--accounts",
        accounts.to_str().expect("utf-8"),
        "--yes",
    ]);
    for region in REGIONS {
        fix.args(["--region", region]);
    }
    let out = run(fix);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let out = enforce(&emulator, state.path(), &flags);
    assert_eq!(out.code, 0, "compliant:\n{}", out.stdout);

    // `harden report` shows the last run's report again.
    let mut show = emulator.harden(state.path());
    show.args(["report", "--format", "json"]);
    let out = run(show);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let shown: Value = serde_json::from_str(&out.stdout).expect("report JSON");
    assert_eq!(shown, read_json(&reports.join("report.json")));
    emulator.assert_audit_verifies(state.path());
}

#[test]
fn a_bad_policy_is_refused_before_anything_is_contacted() {
    let state = tempfile::tempdir().expect("state");
    let policy = state.path().join("policy.yaml");
    std::fs::write(&policy, "version: 1\nrules:\n  - {mode: sometimes}\n").expect("policy");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harden"));
    cmd.args(["--endpoint-url", "http://127.0.0.1:9", "--state-dir"])
        .arg(state.path())
        .args(["enforce", RUNBOOKS[0], "--region", "us-east-1", "--policy"])
        .arg(&policy)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
    let out = run(cmd);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .starts_with(&format!("error: {}:3:", policy.display()))
            && out.stderr.contains("invalid policy"),
        "{}",
        out.stderr
    );
    assert!(
        !state.path().join("audit.jsonl").exists(),
        "nothing was recorded"
    );
}
