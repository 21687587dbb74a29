//! enable-cloudtrail (FSBP CloudTrail.1, .4) against moto: an existing single-region
//! trail that is not logging and records only write events is fixed in place (no second
//! trail, no bucket); with no trail, the bucket and a trail are created and logging is
//! read back. LocalStack community does not emulate CloudTrail: the plan fails saying so.

use aws_sdk_cloudtrail::types::{EventSelector, ReadWriteType};
use serde_json::{Value, json};

use crate::support::{Emulator, Kind, block_on, run};

const RUNBOOK: &str = "runbooks/enable-cloudtrail.yaml";

fn operations(plan: &Value) -> Vec<(String, String)> {
    plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["resource"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                c["call"]["operation"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

/// (name, multi-region, log validation, logging, management selectors) of every trail.
async fn trails(ct: &aws_sdk_cloudtrail::Client) -> Vec<(String, bool, bool, bool, Vec<String>)> {
    let out = ct.describe_trails().send().await.expect("trails");
    let mut found = Vec::new();
    for t in out.trail_list() {
        let name = t.name().unwrap_or_default().to_string();
        let status = ct
            .get_trail_status()
            .name(&name)
            .send()
            .await
            .expect("status");
        let selectors = ct
            .get_event_selectors()
            .trail_name(&name)
            .send()
            .await
            .expect("selectors");
        found.push((
            name,
            t.is_multi_region_trail().unwrap_or(false),
            t.log_file_validation_enabled().unwrap_or(false),
            status.is_logging().unwrap_or(false),
            selectors
                .event_selectors()
                .iter()
                .filter(|s| s.include_management_events() == Some(true))
                .map(|s| {
                    s.read_write_type()
                        .map(|r| r.as_str().to_string())
                        .unwrap_or_default()
                })
                .collect(),
        ));
    }
    found.sort();
    found
}

/// In eu-west-1, a single-region trail `team-trail` writing to bucket
/// `team-trail-logs`, not logging and recording only write management events.
pub(crate) async fn seed_team_trail(ct: &aws_sdk_cloudtrail::Client, s3: &aws_sdk_s3::Client) {
    crate::support::create_bucket(s3, "team-trail-logs", "eu-west-1").await;
    ct.create_trail()
        .name("team-trail")
        .s3_bucket_name("team-trail-logs")
        .send()
        .await
        .expect("single-region trail, not logging");
    ct.put_event_selectors()
        .trail_name("team-trail")
        .event_selectors(
            EventSelector::builder()
                .read_write_type(ReadWriteType::WriteOnly)
                .include_management_events(true)
                .build(),
        )
        .send()
        .await
        .expect("write-only selectors");
}

#[test]
fn an_existing_trail_is_fixed_in_place_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    let region = "eu-west-1";
    let ct = emulator.cloudtrail(region);
    let s3 = emulator.s3(region);
    let state = tempfile::tempdir().expect("state");
    let cli = |args: &[&str]| {
        let mut cmd = emulator.harden(state.path());
        cmd.args(args).args(["--region", region]);
        run(cmd)
    };
    block_on(seed_team_trail(&ct, &s3));
    let before = block_on(trails(&ct));
    assert_eq!(
        before,
        vec![(
            "team-trail".into(),
            false,
            false,
            false,
            vec!["WriteOnly".into()]
        )]
    );

    let out = cli(&["plan", RUNBOOK, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    let trail_ops = [
        ("cloudtrail:trails", "UpdateTrail"),
        ("cloudtrail:trails", "PutEventSelectors"),
        ("cloudtrail:trails", "StartLogging"),
    ]
    .map(|(k, o)| (k.to_string(), o.to_string()));
    assert_eq!(
        operations(&plan),
        trail_ops,
        "fixed in place: no bucket, no second trail"
    );
    assert_eq!(
        plan["changes"][0]["call"]["input"],
        json!({"Name": "team-trail", "IsMultiRegionTrail": true,
               "EnableLogFileValidation": true, "IncludeGlobalServiceEvents": true})
    );

    let out = cli(&["dry-run", RUNBOOK]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("services without dry-run: cloudtrail"),
        "{}",
        out.stdout
    );
    assert_eq!(
        block_on(trails(&ct)),
        before,
        "plan and dry-run change nothing"
    );

    let out = cli(&["apply", RUNBOOK, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        block_on(trails(&ct)),
        vec![("team-trail".into(), true, true, true, vec!["All".into()])],
        "the one trail is compliant; none was added"
    );
    let buckets = block_on(s3.list_buckets().send()).expect("buckets");
    assert_eq!(buckets.buckets().len(), 1, "no bucket was created");

    let out = cli(&["plan", RUNBOOK, "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "converged:\n{}", out.stdout);
    emulator.assert_audit_verifies(state.path());
}

#[test]
fn with_no_trail_a_bucket_and_a_logging_trail_are_created_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    let region = "us-east-1";
    let ct = emulator.cloudtrail(region);
    let s3 = emulator.s3(region);
    let account = emulator.account();
    let bucket = format!("harden-cloudtrail-{account}-{region}");
    let state = tempfile::tempdir().expect("state");
    let cli = |args: &[&str]| {
        let mut cmd = emulator.harden(state.path());
        // Two regions: the trail is made once, in the first (the home region).
        cmd.args(args)
            .args(["--region", region, "--region", "eu-central-1"]);
        run(cmd)
    };
    let out = cli(&["plan", RUNBOOK, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    let expected: Vec<(String, String)> = [
        ("s3:bucket", "CreateBucket"),
        ("s3:bucket", "PutPublicAccessBlock"),
        ("s3:bucket", "PutBucketEncryption"),
        ("s3:bucket", "PutBucketVersioning"),
        ("s3:bucket", "PutBucketPolicy"),
        ("cloudtrail:trails", "CreateTrail"),
        ("cloudtrail:trails", "PutEventSelectors"),
        ("cloudtrail:trails", "StartLogging"),
    ]
    .iter()
    .map(|(k, o)| (k.to_string(), o.to_string()))
    .collect();
    assert_eq!(operations(&plan), expected);
    assert_eq!(
        plan["changes"][0]["call"]["input"],
        json!({"Bucket": bucket}),
        "us-east-1: no LocationConstraint"
    );
    assert_eq!(
        plan["changes"][5]["call"]["input"],
        json!({"Name": "harden-trail", "S3BucketName": bucket, "IsMultiRegionTrail": true,
               "EnableLogFileValidation": true, "IncludeGlobalServiceEvents": true})
    );

    let out = cli(&["apply", RUNBOOK, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        block_on(trails(&ct)),
        vec![("harden-trail".into(), true, true, true, vec!["All".into()])]
    );
    let policy = block_on(s3.get_bucket_policy().bucket(&bucket).send()).expect("policy");
    let policy: Value = serde_json::from_str(policy.policy().unwrap_or("{}")).expect("JSON");
    let write = policy["Statement"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["Sid"] == "AWSCloudTrailWrite"))
        .cloned()
        .expect("write statement");
    assert_eq!(
        write["Condition"]["StringEquals"]["aws:SourceArn"],
        format!("arn:aws:cloudtrail:{region}:{account}:trail/harden-trail")
    );
    assert_eq!(
        write["Resource"],
        format!("arn:aws:s3:::{bucket}/AWSLogs/{account}/*")
    );

    let out = cli(&["plan", RUNBOOK, "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "converged in both regions:\n{}", out.stdout);
}

#[test]
fn localstack_community_fails_clearly_because_it_does_not_emulate_cloudtrail() {
    let emulator = Emulator::start(Kind::LocalStack);
    let state = tempfile::tempdir().expect("state");
    let plan = |extra: &[&str]| {
        let mut cmd = emulator.harden(state.path());
        cmd.args(["plan", RUNBOOK, "--region", "us-east-1"])
            .args(extra);
        run(cmd)
    };
    // The runbook is left out, saying why, and the plan is refused as incomplete.
    let out = plan(&[]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!(
            "? enable-cloudtrail in {}, us-east-1: discovery failed: DescribeTrails failed",
            emulator.account()
        )) && out.stdout.contains("not emulated"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("the plan is incomplete"),
        "{}",
        out.stderr
    );
    // With --fail-fast, planning stops at the failed call.
    let out = plan(&["--fail-fast"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("DescribeTrails") && out.stderr.contains("not emulated"),
        "{}",
        out.stderr
    );
}
