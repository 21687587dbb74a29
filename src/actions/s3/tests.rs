//! Pure tests of the concern: exact plans, inverses and saved calls.

use serde_json::{Value, json};

use crate::actions::{Action, ActionPlan, Resource, state_of};
use crate::plan::ApiCall;

use super::kind::{Bucket, BucketEncryption, PublicAccessBlock};
use super::plan::{EnsureBucket, normalize_policy};

fn call(operation: &str) -> ApiCall {
    ApiCall {
        service: "s3".into(),
        operation: operation.into(),
        input: json!({"Bucket": "logs"}),
    }
}

#[test]
fn a_created_bucket_is_deleted_and_an_existing_one_gets_its_settings_back() {
    let missing = state_of(&Bucket::missing("logs", "eu-west-1"));
    let created = EnsureBucket
        .inverse(&call("CreateBucket"), &missing, &json!(null))
        .expect("a way back");
    assert_eq!(
        (created.operation.as_str(), created.removes_created),
        ("DeleteBucket", true)
    );
    let existing = Bucket {
        exists: true,
        policy: Some(json!({"Version": "2012-10-17", "Statement": []})),
        ..Bucket::missing("logs", "eu-west-1")
    };
    let policy = EnsureBucket
        .inverse(&call("PutBucketPolicy"), &state_of(&existing), &json!(null))
        .expect("a way back");
    assert_eq!(policy.operation, "PutBucketPolicy");
    assert_eq!(
        policy.input["Policy"],
        existing.policy.clone().unwrap_or_default()
    );
    assert!(!policy.removes_created);
    let block = EnsureBucket
        .inverse(
            &call("PutPublicAccessBlock"),
            &state_of(&existing),
            &json!(null),
        )
        .expect("a way back");
    assert_eq!(block.operation, "DeletePublicAccessBlock");
    let never_versioned = EnsureBucket
        .inverse(
            &call("PutBucketVersioning"),
            &state_of(&existing),
            &json!(null),
        )
        .expect_err("S3 can only suspend versioning");
    assert!(
        never_versioned.contains("only suspend"),
        "{never_versioned}"
    );
}

fn statement(sid: &str, action: &str) -> Value {
    json!({"Sid": sid, "Effect": "Allow", "Principal": {"Service": "delivery.logs.amazonaws.com"},
           "Action": [action], "Resource": "arn:aws:s3:::b/*"})
}

fn plan(bucket: &Bucket, args: Value) -> ActionPlan {
    EnsureBucket
        .plan(&Resource::Bucket(bucket.clone()), &args)
        .expect("plans")
}

#[test]
fn a_missing_bucket_is_created_then_protected_and_us_east_1_has_no_location_constraint() {
    let args = json!({"policy_statements": [statement("Write", "s3:PutObject")]});
    let planned = plan(&Bucket::missing("logs", "us-east-1"), args.clone());
    let operations: Vec<&str> = planned
        .changes
        .iter()
        .map(|c| c.call.operation.as_str())
        .collect();
    assert_eq!(
        operations,
        [
            "CreateBucket",
            "PutPublicAccessBlock",
            "PutBucketEncryption",
            "PutBucketVersioning",
            "PutBucketPolicy"
        ]
    );
    assert_eq!(planned.changes[0].call.input, json!({"Bucket": "logs"}));
    // Each change starts where the previous one ends.
    for pair in planned.changes.windows(2) {
        assert_eq!(pair[0].after, pair[1].before);
    }
    let elsewhere = plan(&Bucket::missing("logs", "eu-west-1"), args.clone());
    assert_eq!(
        elsewhere.changes[0].call.input,
        json!({"Bucket": "logs", "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}})
    );
    // Planned again on what it projects, nothing is left to do.
    let Some(Resource::Bucket(projected)) = planned.projected else {
        panic!("projects the bucket")
    };
    assert_eq!(plan(&projected, args).changes, Vec::new());
}

#[test]
fn an_existing_policy_is_merged_by_sid_never_overwritten() {
    let mut bucket = Bucket::missing("logs", "eu-west-1");
    bucket.exists = true;
    bucket.public_access_block = Some(PublicAccessBlock::ALL_ON);
    bucket.encryption = Some(BucketEncryption {
        algorithm: "aws:kms".into(),
        kms_key_id: None,
    });
    bucket.versioning = Some("Enabled".into());
    bucket.policy = Some(normalize_policy(&json!({
        "Version": "2012-10-17",
        "Statement": [statement("Theirs", "s3:GetObject"), statement("Write", "s3:GetObject")]
    })));
    let planned = plan(
        &bucket,
        json!({"policy_statements": [statement("Write", "s3:PutObject"), statement("Check", "s3:GetBucketAcl")]}),
    );
    assert_eq!(planned.changes.len(), 1, "only the policy differs");
    assert_eq!(
        planned.changes[0].call.input["Policy"]["Statement"],
        normalize_policy(&json!([
            statement("Theirs", "s3:GetObject"),
            statement("Write", "s3:PutObject"),
            statement("Check", "s3:GetBucketAcl")
        ]))
    );
}

#[test]
fn statements_without_a_sid_are_refused() {
    let error = EnsureBucket
        .plan(
            &Resource::Bucket(Bucket::missing("logs", "eu-west-1")),
            &json!({"policy_statements": [{"Effect": "Allow"}]}),
        )
        .expect_err("refused");
    assert!(error.contains("needs a Sid"), "{error}");
}
