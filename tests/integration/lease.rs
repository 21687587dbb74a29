//! `--lease-bucket` on moto (whose S3 honours `If-None-Match` and `If-Match`): an
//! account-region another run holds is refused before anything is journaled or
//! changed, naming the holder; an expired lease is taken over and released at the end.
//! Two runs started at the same instant are not tried here: moto checks the condition
//! and then writes, so two simultaneous conditional writes can both pass on moto, where
//! S3 lets exactly one through.

use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use serde_json::{Value, json};

use crate::support::{Emulator, Kind, block_on, create_open_group, lets_all_out, run};

const REGION: &str = "us-east-1";
const RUNBOOK: &str = "runbooks/restrict-sg-egress.yaml";
const BUCKET: &str = "harden-leases";

fn apply(emulator: &Emulator, state: &Path) -> std::process::Command {
    let mut cmd = emulator.harden(state);
    cmd.args([
        "apply",
        RUNBOOK,
        "--yes",
        "--region",
        REGION,
        "--lease-bucket",
        BUCKET,
    ]);
    cmd
}

fn put_lease(emulator: &Emulator, run_id: &str, expires: jiff::Timestamp) {
    let key = format!("harden/leases/{}/{REGION}.json", emulator.account());
    let body = json!({
        "run_id": run_id,
        "principal": "arn:aws:sts::123456789012:assumed-role/ops/someone",
        "acquired_at": "2026-12-01T00:00:00Z",
        "expires_at": expires.to_string(),
    });
    block_on(async {
        emulator
            .s3(REGION)
            .put_object()
            .bucket(BUCKET)
            .key(key)
            .body(ByteStream::from(body.to_string().into_bytes()))
            .send()
            .await
            .expect("lease written")
    });
}

fn lease_exists(emulator: &Emulator) -> bool {
    let key = format!("harden/leases/{}/{REGION}.json", emulator.account());
    block_on(async {
        emulator
            .s3(REGION)
            .head_object()
            .bucket(BUCKET)
            .key(key)
            .send()
            .await
            .is_ok()
    })
}

fn open_groups(emulator: &Emulator, ids: &[String]) -> usize {
    block_on(async {
        let out = emulator
            .ec2(REGION)
            .describe_security_groups()
            .set_group_ids(Some(ids.to_vec()))
            .send()
            .await
            .expect("groups");
        out.security_groups()
            .iter()
            .filter(|g| lets_all_out(g))
            .count()
    })
}

fn succeeded_changes(state: &Path) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(state.join("audit.jsonl")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["type"] == "change" && r["outcome"]["status"] == "succeeded")
        .collect()
}

#[test]
fn a_second_run_on_one_account_region_is_refused_by_the_lease_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    block_on(async {
        emulator
            .s3(REGION)
            .create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .expect("bucket")
    });
    let groups: Vec<String> = block_on(async {
        let ec2 = emulator.ec2(REGION);
        vec![
            create_open_group(&ec2, "10.61.0.0/16", "a").await,
            create_open_group(&ec2, "10.62.0.0/16", "b").await,
        ]
    });
    assert_eq!(open_groups(&emulator, &groups), 2);

    // Held by another run until an hour from now: refused, nothing done or journaled.
    let held_until = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    put_lease(&emulator, "20261201T000000Z-0ther0ne", held_until);
    let state = tempfile::tempdir().expect("state");
    let out = run(apply(&emulator, state.path()));
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("run 20261201T000000Z-0ther0ne")
            && out.stderr.contains("holds its lease until")
            && out.stderr.contains("nothing was changed"),
        "{}",
        out.stderr
    );
    assert_eq!(open_groups(&emulator, &groups), 2, "nothing was changed");
    assert!(succeeded_changes(state.path()).is_empty());
    assert!(
        !state.path().join("runs").exists()
            || std::fs::read_dir(state.path().join("runs"))
                .expect("runs")
                .next()
                .is_none(),
        "a refused run never started"
    );

    // Expired (its holder died): taken over, the run applies, the lease is released.
    put_lease(
        &emulator,
        "20261201T000000Z-0ther0ne",
        jiff::Timestamp::now() - jiff::SignedDuration::from_mins(1),
    );
    let out = run(apply(&emulator, state.path()));
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(open_groups(&emulator, &groups), 0);
    assert!(!lease_exists(&emulator), "released at the end");
    emulator.assert_audit_verifies(state.path());
}
