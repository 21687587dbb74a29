//! enable-vpc-flow-logs (FSBP EC2.6) against moto and LocalStack: seeded VPCs without a
//! flow log, with a compliant one, with one recording only rejected traffic, and an
//! exempt one; the log bucket missing (moto, eu-west-1) or present with a policy of its
//! own (LocalStack, us-east-1). Plan and dry-run change nothing; apply reaches exactly
//! the compliant state; a second plan is empty; the audit verifies.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{
    Filter, FlowLogsResourceType, LogDestinationType, ResourceType, Tag, TagSpecification,
    TrafficType,
};
use serde_json::{Value, json};

use crate::support::{Emulator, Kind, block_on, create_vpc, run};

const RUNBOOK: &str = "runbooks/enable-vpc-flow-logs.yaml";

/// (traffic type, destination, status) of each VPC's flow logs, by VPC.
pub(crate) async fn flow_logs(
    ec2: &aws_sdk_ec2::Client,
) -> BTreeMap<String, Vec<(String, String, String)>> {
    let out = ec2.describe_flow_logs().send().await.expect("flow logs");
    let mut logs: BTreeMap<String, Vec<(String, String, String)>> = BTreeMap::new();
    for f in out.flow_logs() {
        logs.entry(f.resource_id().unwrap_or_default().to_string())
            .or_default()
            .push((
                f.traffic_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                f.log_destination().unwrap_or_default().to_string(),
                f.flow_log_status().unwrap_or_default().to_string(),
            ));
    }
    for list in logs.values_mut() {
        list.sort();
    }
    logs
}

async fn vpc_ids(ec2: &aws_sdk_ec2::Client) -> Vec<String> {
    let out = ec2.describe_vpcs().send().await.expect("vpcs");
    let mut ids: Vec<String> = out
        .vpcs()
        .iter()
        .filter_map(|v| v.vpc_id().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

async fn add_flow_log(ec2: &aws_sdk_ec2::Client, vpc: &str, traffic: TrafficType, bucket: &str) {
    let out = ec2
        .create_flow_logs()
        .resource_ids(vpc)
        .resource_type(FlowLogsResourceType::Vpc)
        .traffic_type(traffic)
        .log_destination_type(LogDestinationType::S3)
        .log_destination(format!("arn:aws:s3:::{bucket}"))
        .send()
        .await
        .expect("seed flow log");
    assert!(out.unsuccessful().is_empty(), "seed flow log refused");
}

/// The bucket's policy statements by Sid, or none.
pub(crate) async fn policy_sids(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let Ok(out) = s3.get_bucket_policy().bucket(bucket).send().await else {
        return Vec::new();
    };
    let policy: Value = serde_json::from_str(out.policy().unwrap_or("{}")).expect("policy JSON");
    let statements = match &policy["Statement"] {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    statements
        .iter()
        .filter_map(|s| s["Sid"].as_str().map(str::to_string))
        .collect()
}

/// (all public access blocked, default encryption set, versioning enabled) of a bucket.
pub(crate) async fn bucket_protections(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> (bool, bool, bool) {
    let blocked = s3
        .get_public_access_block()
        .bucket(bucket)
        .send()
        .await
        .ok()
        .and_then(|o| o.public_access_block_configuration().cloned())
        .is_some_and(|c| {
            c.block_public_acls() == Some(true)
                && c.ignore_public_acls() == Some(true)
                && c.block_public_policy() == Some(true)
                && c.restrict_public_buckets() == Some(true)
        });
    let encrypted = s3
        .get_bucket_encryption()
        .bucket(bucket)
        .send()
        .await
        .ok()
        .and_then(|o| o.server_side_encryption_configuration().cloned())
        .is_some_and(|c| !c.rules().is_empty());
    let versioned = s3
        .get_bucket_versioning()
        .bucket(bucket)
        .send()
        .await
        .ok()
        .and_then(|o| o.status().cloned())
        .is_some_and(|s| s.as_str() == "Enabled");
    (blocked, encrypted, versioned)
}

fn scenario(kind: Kind, region: &str, bucket_exists: bool) {
    let emulator = Emulator::start(kind);
    let ec2 = emulator.ec2(region);
    let s3 = emulator.s3(region);
    let account = emulator.account();
    let bucket = format!("harden-flowlogs-{account}-{region}");
    let bucket_arn = format!("arn:aws:s3:::{bucket}");
    let state = tempfile::tempdir().expect("state");
    let cli = |args: &[&str]| {
        let mut cmd = emulator.harden(state.path());
        cmd.args(args).args(["--region", region]);
        run(cmd)
    };

    let (bare, compliant, reject_only, exempt) = block_on(async {
        let elsewhere = format!("existing-logs-{account}");
        crate::support::create_bucket(&s3, &elsewhere, region).await;
        let bare = create_vpc(&ec2, "10.1.0.0/16").await;
        let compliant = create_vpc(&ec2, "10.2.0.0/16").await;
        add_flow_log(&ec2, &compliant, TrafficType::All, &elsewhere).await;
        let reject_only = create_vpc(&ec2, "10.3.0.0/16").await;
        add_flow_log(&ec2, &reject_only, TrafficType::Reject, &elsewhere).await;
        let exempt = ec2
            .create_vpc()
            .cidr_block("10.4.0.0/16")
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Vpc)
                    .tags(Tag::builder().key("harden:exempt").value("true").build())
                    .build(),
            )
            .send()
            .await
            .expect("exempt vpc")
            .vpc()
            .and_then(|v| v.vpc_id())
            .expect("id")
            .to_string();
        if bucket_exists {
            crate::support::create_bucket(&s3, &bucket, region).await;
            let theirs = json!({"Version": "2012-10-17", "Statement": [{
                "Sid": "TheirAuditRead", "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
                "Action": "s3:GetObject", "Resource": format!("{bucket_arn}/*")}]});
            s3.put_bucket_policy()
                .bucket(&bucket)
                .policy(theirs.to_string())
                .send()
                .await
                .expect("their policy");
        }
        (bare, compliant, reject_only, exempt)
    });
    let all_vpcs = block_on(vpc_ids(&ec2));
    // The emulator's default VPC (if it made one) needs a flow log too.
    let needing: Vec<&String> = all_vpcs
        .iter()
        .filter(|v| **v != compliant && **v != exempt)
        .collect();
    assert!(needing.contains(&&bare) && needing.contains(&&reject_only));
    let logs_before = block_on(flow_logs(&ec2));

    // The plan: exact calls, in order, bucket first; the exempt VPC listed as blocked.
    let out = cli(&["plan", RUNBOOK, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    let mut operations: Vec<(&str, &str)> = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["resource"]["id"].as_str().unwrap_or_default(),
                c["call"]["operation"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    // An existing bucket gets exactly the protections it lacks (LocalStack, like AWS,
    // blocks public access and encrypts new buckets by default; versioning stays off).
    let (protected, encrypted, versioned) = if bucket_exists {
        block_on(bucket_protections(&s3, &bucket))
    } else {
        (false, false, false)
    };
    let mut expected: Vec<(&str, &str)> = Vec::new();
    if !bucket_exists {
        expected.push((bucket.as_str(), "CreateBucket"));
    }
    for (done, op) in [
        (protected, "PutPublicAccessBlock"),
        (encrypted, "PutBucketEncryption"),
        (versioned, "PutBucketVersioning"),
        (false, "PutBucketPolicy"),
    ] {
        if !done {
            expected.push((bucket.as_str(), op));
        }
    }
    for vpc in &needing {
        expected.push((vpc.as_str(), "CreateFlowLogs"));
    }
    // VPCs are planned in the order the service lists them.
    operations.sort_by_key(|(id, op)| (*op == "CreateFlowLogs", *id == bucket, *id));
    assert_eq!(operations, expected, "{}", out.stdout);
    let create_call = plan["changes"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["resource"]["id"] == json!(bare)))
        .map(|c| c["call"]["input"].clone())
        .expect("flow log change of the bare VPC");
    assert_eq!(
        create_call,
        json!({"ResourceIds": [bare], "ResourceType": "VPC", "TrafficType": "ALL",
               "LogDestinationType": "s3", "LogDestination": bucket_arn})
    );
    if !bucket_exists {
        let create_bucket = &plan["changes"][0]["call"]["input"];
        assert_eq!(
            create_bucket,
            &json!({"Bucket": bucket, "CreateBucketConfiguration": {"LocationConstraint": region}})
        );
    }
    let blocked: Vec<(&str, &str)> = plan["blocked"]
        .as_array()
        .expect("blocked")
        .iter()
        .map(|b| {
            (
                b["resource"]["id"].as_str().unwrap_or_default(),
                b["reason"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(blocked, vec![(exempt.as_str(), "exempt")]);

    // Dry-run: flow logs probed with DryRun, S3 listed as not probed; nothing changes.
    let out = cli(&["dry-run", RUNBOOK]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("services without dry-run: s3"),
        "{}",
        out.stdout
    );
    assert_eq!(
        block_on(flow_logs(&ec2)),
        logs_before,
        "plan and dry-run change nothing"
    );
    let bucket_there = block_on(s3.head_bucket().bucket(&bucket).send()).is_ok();
    assert_eq!(
        bucket_there, bucket_exists,
        "plan and dry-run create no bucket"
    );

    let out = cli(&["apply", RUNBOOK, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);

    // Exactly the compliant state: one new ALL flow log to the bucket per VPC that needed
    // it, the compliant VPC's own flow log untouched, the exempt VPC untouched.
    let logs_after = block_on(flow_logs(&ec2));
    for vpc in &all_vpcs {
        let mut expected = logs_before.get(vpc).cloned().unwrap_or_default();
        if needing.contains(&vpc) {
            expected.push(("ALL".into(), bucket_arn.clone(), "ACTIVE".into()));
            expected.sort();
        }
        assert_eq!(
            logs_after.get(vpc).cloned().unwrap_or_default(),
            expected,
            "{vpc}"
        );
    }
    block_on(async {
        let pab = s3
            .get_public_access_block()
            .bucket(&bucket)
            .send()
            .await
            .expect("public access block");
        let pab = pab.public_access_block_configuration().expect("configured");
        assert_eq!(
            (
                pab.block_public_acls(),
                pab.ignore_public_acls(),
                pab.block_public_policy(),
                pab.restrict_public_buckets()
            ),
            (Some(true), Some(true), Some(true), Some(true))
        );
        let encryption = s3
            .get_bucket_encryption()
            .bucket(&bucket)
            .send()
            .await
            .expect("encryption");
        let algorithm = encryption
            .server_side_encryption_configuration()
            .and_then(|c| c.rules().first())
            .and_then(|r| r.apply_server_side_encryption_by_default())
            .map(|d| d.sse_algorithm().as_str().to_string());
        assert_eq!(algorithm.as_deref(), Some("AES256"));
    });
    let mut sids = block_on(policy_sids(&s3, &bucket));
    sids.sort();
    let mut expected_sids = vec![
        "AWSLogDeliveryAclCheck".to_string(),
        "AWSLogDeliveryWrite".to_string(),
        "DenyInsecureTransport".to_string(),
    ];
    if bucket_exists {
        expected_sids.push("TheirAuditRead".into());
        expected_sids.sort();
    }
    assert_eq!(
        sids, expected_sids,
        "their statement is kept, ours are added"
    );

    let out = cli(&["plan", RUNBOOK, "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "converged:\n{}", out.stdout);
    emulator.assert_audit_verifies(state.path());
}

#[test]
fn flow_logs_and_a_new_bucket_on_moto() {
    scenario(Kind::Moto, "eu-west-1", false);
}

#[test]
fn flow_logs_and_an_existing_bucket_policy_merged_on_localstack() {
    scenario(Kind::LocalStack, "us-east-1", true);
}

/// A saved plan is applied exactly: a VPC created after planning is not touched by it,
/// and the next plan finds it.
#[test]
fn a_vpc_created_between_plan_and_apply_is_not_touched_by_the_saved_plan() {
    let emulator = Emulator::start(Kind::Moto);
    let region = "eu-central-1";
    let ec2 = emulator.ec2(region);
    let state = tempfile::tempdir().expect("state");
    let plan_file = state.path().join("plan.json");
    let cli = |args: &[&str]| {
        let mut cmd = emulator.harden(state.path());
        cmd.args(args);
        run(cmd)
    };
    let plan_path = plan_file.to_str().expect("path");
    let out = cli(&["plan", RUNBOOK, "--region", region, "--out", plan_path]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let late = block_on(create_vpc(&ec2, "10.9.0.0/16"));
    let out = cli(&["apply", "--plan", plan_path, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let logs = block_on(async {
        ec2.describe_flow_logs()
            .filter(Filter::builder().name("resource-id").values(&late).build())
            .send()
            .await
            .expect("flow logs")
    });
    assert!(
        logs.flow_logs().is_empty(),
        "a saved plan is applied exactly"
    );
    let out = cli(&["plan", RUNBOOK, "--region", region, "--format", "json"]);
    let plan: Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    let resources: Vec<&str> = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["resource"]["id"].as_str())
        .collect();
    assert_eq!(resources, vec![late.as_str()], "the next plan finds it");
}

/// Each VPC's flow logs as (traffic, destination type, log group or destination, role).
async fn cloud_watch_flow_logs(
    ec2: &aws_sdk_ec2::Client,
) -> BTreeMap<String, Vec<(String, String, String, String)>> {
    let out = ec2.describe_flow_logs().send().await.expect("flow logs");
    let mut logs: BTreeMap<String, Vec<(String, String, String, String)>> = BTreeMap::new();
    for f in out.flow_logs() {
        logs.entry(f.resource_id().unwrap_or_default().to_string())
            .or_default()
            .push((
                f.traffic_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                f.log_destination_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                f.log_group_name()
                    .or(f.log_destination())
                    .unwrap_or_default()
                    .to_string(),
                f.deliver_logs_permission_arn()
                    .unwrap_or_default()
                    .to_string(),
            ));
    }
    logs
}

/// Flow logs to CloudWatch Logs with nothing prepared: a log group with the retention
/// in each region, one delivery role (IAM is global: made in the home region) that only
/// flow logs of this account may assume and that may only write to that log group,
/// then a flow log per VPC in each region naming both.
fn cloud_watch_scenario(kind: Kind) {
    let emulator = Emulator::start(kind);
    let regions = ["eu-west-1", "us-east-2"];
    let account = emulator.account();
    let state = tempfile::tempdir().expect("state");
    let cli = |args: &[&str]| {
        let mut cmd = emulator.harden(state.path());
        cmd.args(args)
            .args(["--region", regions[0], "--region", regions[1]])
            .args(["--param", "destination_type=cloud-watch-logs"]);
        run(cmd)
    };
    for region in regions {
        block_on(create_vpc(&emulator.ec2(region), "10.40.0.0/16"));
    }

    let out = cli(&["plan", RUNBOOK, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    let made: Vec<(String, String, String)> = plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["call"]["service"] != "ec2")
        .map(|c| {
            (
                c["region"].as_str().unwrap_or_default().to_string(),
                c["resource"]["id"].as_str().unwrap_or_default().to_string(),
                c["call"]["operation"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        (regions[0], "harden-vpc-flow-logs", "CreateLogGroup"),
        (regions[0], "harden-vpc-flow-logs", "PutRetentionPolicy"),
        (regions[0], "harden-vpc-flow-logs-delivery", "CreateRole"),
        (regions[0], "harden-vpc-flow-logs-delivery", "PutRolePolicy"),
        (regions[1], "harden-vpc-flow-logs", "CreateLogGroup"),
        (regions[1], "harden-vpc-flow-logs", "PutRetentionPolicy"),
    ]
    .iter()
    .map(|(r, id, op)| (r.to_string(), id.to_string(), op.to_string()))
    .collect();
    assert_eq!(
        made, expected,
        "one role, in the home region; a log group per region"
    );
    assert!(
        !plan["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .any(|c| c["call"]["service"] == "s3"),
        "no bucket for a CloudWatch destination"
    );

    let out = cli(&["apply", RUNBOOK, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);

    let role_arn = format!("arn:aws:iam::{account}:role/harden-vpc-flow-logs-delivery");
    let iam = emulator.iam();
    let (trust, policy) = block_on(async {
        let role = iam
            .get_role()
            .role_name("harden-vpc-flow-logs-delivery")
            .send()
            .await
            .expect("the role exists");
        let trust = role
            .role()
            .and_then(|r| r.assume_role_policy_document())
            .expect("trust policy")
            .to_string();
        let policy = iam
            .get_role_policy()
            .role_name("harden-vpc-flow-logs-delivery")
            .policy_name("deliver-vpc-flow-logs")
            .send()
            .await
            .expect("the inline policy exists")
            .policy_document()
            .to_string();
        (trust, policy)
    });
    let decode = |text: &str| -> Value {
        let decoded = percent_encoding::percent_decode_str(text).decode_utf8_lossy();
        serde_json::from_str(&decoded).expect("a JSON policy")
    };
    let trust = decode(&trust);
    assert_eq!(
        trust["Statement"][0]["Principal"],
        json!({"Service": "vpc-flow-logs.amazonaws.com"})
    );
    assert_eq!(
        trust["Statement"][0]["Condition"]["StringEquals"]["aws:SourceAccount"], account,
        "only flow logs acting for this account"
    );
    let policy = decode(&policy);
    assert_eq!(
        policy["Statement"][0]["Resource"],
        format!("arn:aws:logs:*:{account}:log-group:harden-vpc-flow-logs:*"),
        "writes only to its log group"
    );

    for region in regions {
        let groups = block_on(async {
            emulator
                .logs(region)
                .describe_log_groups()
                .log_group_name_prefix("harden-vpc-flow-logs")
                .send()
                .await
                .expect("log groups")
        });
        let retention: Vec<(Option<&str>, Option<i32>)> = groups
            .log_groups()
            .iter()
            .map(|g| (g.log_group_name(), g.retention_in_days()))
            .collect();
        assert_eq!(
            retention,
            [(Some("harden-vpc-flow-logs"), Some(365))],
            "{region}"
        );
        let ec2 = emulator.ec2(region);
        let logs = block_on(cloud_watch_flow_logs(&ec2));
        for vpc in block_on(vpc_ids(&ec2)) {
            let found = logs.get(&vpc).cloned().unwrap_or_default();
            assert_eq!(found.len(), 1, "{region} {vpc}: {found:?}");
            let (traffic, kind, group, role) = &found[0];
            assert_eq!(
                (traffic.as_str(), kind.as_str()),
                ("ALL", "cloud-watch-logs")
            );
            assert!(group.contains("harden-vpc-flow-logs"), "{group}");
            assert_eq!(role, &role_arn, "{region} {vpc}");
        }
    }

    let out = cli(&["plan", RUNBOOK, "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "converged:\n{}", out.stdout);
    emulator.assert_audit_verifies(state.path());
}

#[test]
fn flow_logs_to_a_created_log_group_and_role_on_moto() {
    cloud_watch_scenario(Kind::Moto);
}

#[test]
fn flow_logs_to_a_created_log_group_and_role_on_localstack() {
    cloud_watch_scenario(Kind::LocalStack);
}
