//! EBS encryption by default (FSBP EC2.7): planned, dry-run and applied against moto and
//! LocalStack, read back through the SDK, and converged.

use crate::support::{Emulator, Kind, block_on, run};

const RUNBOOK: &str = "tests/fixtures/ebs-encryption-by-default.yaml";
const REGION: &str = "ap-southeast-2";

async fn enabled(ec2: &aws_sdk_ec2::Client) -> bool {
    ec2.get_ebs_encryption_by_default()
        .send()
        .await
        .expect("read the setting")
        .ebs_encryption_by_default()
        .unwrap_or(false)
}

fn scenario(kind: Kind) {
    let emulator = Emulator::start(kind);
    let ec2 = emulator.ec2(REGION);
    let state = tempfile::tempdir().expect("state");
    let cli = |args: &[&str]| {
        let mut cmd = emulator.harden(state.path());
        cmd.args(args).args(["--region", REGION]);
        run(cmd)
    };
    assert!(!block_on(enabled(&ec2)), "off in a new region");

    let out = cli(&["plan", RUNBOOK, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    let changes = plan["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["resource"]["id"], REGION);
    assert_eq!(
        changes[0]["call"]["operation"],
        "EnableEbsEncryptionByDefault"
    );

    let out = cli(&["dry-run", RUNBOOK]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains("dry-run: would succeed"),
        "{}",
        out.stdout
    );
    assert!(!block_on(enabled(&ec2)), "dry-run changed nothing");

    let out = cli(&["apply", RUNBOOK, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(block_on(enabled(&ec2)), "on after apply");

    let out = cli(&["plan", RUNBOOK, "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "{}", out.stdout);
}

#[test]
fn ebs_encryption_by_default_on_moto() {
    scenario(Kind::Moto);
}

#[test]
fn ebs_encryption_by_default_on_localstack() {
    scenario(Kind::LocalStack);
}

/// `--localstack` needs no credentials or region configured: test credentials,
/// us-east-1, and the account id LocalStack reports.
#[test]
fn localstack_flag_needs_no_configuration() {
    let emulator = Emulator::start(Kind::LocalStack);
    let state = tempfile::tempdir().expect("state");
    let mut cmd = emulator.harden(state.path());
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env("AWS_CONFIG_FILE", state.path().join("no-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            state.path().join("no-credentials"),
        )
        .args(["--localstack", "plan", RUNBOOK, "--format", "json"]);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    assert_eq!(plan["account_id"], "000000000000");
    assert_eq!(plan["regions"], serde_json::json!(["us-east-1"]));
}
