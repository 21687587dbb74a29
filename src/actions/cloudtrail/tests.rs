//! Pure tests of the concern: exact plans, inverses and saved calls.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::actions::{Action, ActionPlan, Resource};
use crate::plan::{ApiCall, BlockReason};

use super::kind::{Trail, Trails};
use super::plan::{EnsureTrail, state};

#[test]
fn a_trail_gets_its_settings_back_and_a_created_one_is_deleted() {
    let mut was = trail("t", "eu-west-1");
    was.logging = false;
    was.multi_region = false;
    let before = state(&Trails {
        region: "eu-west-1".into(),
        trails: vec![was.clone()],
    });
    let inverse = |operation: &str, input: Value, before: &Value| {
        EnsureTrail.inverse(
            &ApiCall {
                service: "cloudtrail".into(),
                operation: operation.into(),
                input,
            },
            before,
            &json!(null),
        )
    };
    let update = inverse("UpdateTrail", json!({"Name": "t"}), &before).expect("way back");
    assert_eq!(update.input["IsMultiRegionTrail"], json!(false));
    let stop = inverse("StartLogging", json!({"Name": "t"}), &before).expect("way back");
    assert_eq!(stop.operation, "StopLogging");
    let keyed = inverse(
        "UpdateTrail",
        json!({"Name": "t", "KmsKeyId": "k"}),
        &before,
    )
    .expect_err("a key cannot come off");
    assert!(keyed.contains("KMS"), "{keyed}");
    let created = inverse(
        "CreateTrail",
        json!({"Name": "new", "S3BucketName": "b"}),
        &before,
    )
    .expect("way back");
    assert_eq!(
        (created.operation.as_str(), created.removes_created),
        ("DeleteTrail", true)
    );
    assert!(
        inverse(
            "CreateTrail",
            json!({"Name": "t", "S3BucketName": "b"}),
            &before
        )
        .is_err()
    );
}

fn trail(name: &str, home: &str) -> Trail {
    Trail {
        name: name.into(),
        arn: format!("arn:aws:cloudtrail:{home}:111122223333:trail/{name}"),
        home_region: home.into(),
        multi_region: true,
        organization: false,
        logging: true,
        log_file_validation: true,
        kms_key_id: None,
        bucket: "b".into(),
        include_global_service_events: true,
        selectors: json!({"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": true}]}),
        tags: BTreeMap::new(),
    }
}

fn trails(list: Vec<Trail>) -> Resource {
    Resource::Trails(Trails {
        region: "eu-west-1".into(),
        trails: list,
    })
}

fn plan(target: &Resource, args: Value) -> ActionPlan {
    EnsureTrail.plan(target, &args).expect("plans")
}

fn operations(planned: &ActionPlan) -> Vec<&str> {
    planned
        .changes
        .iter()
        .map(|c| c.call.operation.as_str())
        .collect()
}

fn args() -> Value {
    json!({"trail_name": "harden-trail", "bucket_name": "logs"})
}

#[test]
fn a_compliant_trail_anywhere_is_enough_and_an_organization_trail_counts() {
    assert_eq!(
        plan(&trails(vec![trail("main", "eu-west-1")]), args()),
        ActionPlan::default()
    );
    let mut org = trail("org", "us-east-1");
    org.organization = true;
    assert_eq!(plan(&trails(vec![org]), args()), ActionPlan::default());
}

#[test]
fn a_non_compliant_trail_homed_here_is_fixed_in_place_never_doubled() {
    let mut t = trail("single", "eu-west-1");
    t.multi_region = false;
    t.logging = false;
    t.log_file_validation = false;
    t.selectors = json!({"EventSelectors": [
        {"ReadWriteType": "WriteOnly", "IncludeManagementEvents": true},
        {"ReadWriteType": "All", "IncludeManagementEvents": false,
         "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}]});
    let planned = plan(&trails(vec![t]), args());
    assert_eq!(
        operations(&planned),
        ["UpdateTrail", "PutEventSelectors", "StartLogging"]
    );
    assert_eq!(
        planned.changes[1].call.input,
        json!({"TrailName": "single", "EventSelectors": [
            {"ReadWriteType": "All", "IncludeManagementEvents": false,
             "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]},
            {"ReadWriteType": "All", "IncludeManagementEvents": true}]}),
        "data events are kept"
    );
    for pair in planned.changes.windows(2) {
        assert_eq!(pair[0].after, pair[1].before);
    }
    let Some(projected) = planned.projected else {
        panic!("projects")
    };
    assert_eq!(plan(&projected, args()), ActionPlan::default());
}

#[test]
fn excluded_management_sources_and_missing_kms_are_not_compliant() {
    let mut t = trail("main", "eu-west-1");
    t.selectors = json!({"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": true,
        "ExcludeManagementEventSources": ["kms.amazonaws.com"]}]});
    assert_eq!(
        operations(&plan(&trails(vec![t]), args())),
        ["PutEventSelectors"]
    );
    let with_kms =
        json!({"trail_name": "harden-trail", "bucket_name": "logs", "kms_key_id": "alias/trail"});
    let planned = plan(&trails(vec![trail("main", "eu-west-1")]), with_kms);
    assert_eq!(operations(&planned), ["UpdateTrail"]);
    assert_eq!(planned.changes[0].call.input["KmsKeyId"], "alias/trail");
}

#[test]
fn with_no_trail_one_is_created_explicitly_and_started() {
    let planned = plan(&trails(Vec::new()), args());
    assert_eq!(
        operations(&planned),
        ["CreateTrail", "PutEventSelectors", "StartLogging"]
    );
    assert_eq!(
        planned.changes[0].call.input,
        json!({"Name": "harden-trail", "S3BucketName": "logs", "IsMultiRegionTrail": true,
               "EnableLogFileValidation": true, "IncludeGlobalServiceEvents": true})
    );
}

#[test]
fn exempt_and_other_region_trails_block_rather_than_add_a_second_trail() {
    let mut t = trail("mine", "eu-west-1");
    t.logging = false;
    t.tags.insert("harden:exempt".into(), "true".into());
    let planned = plan(&trails(vec![t]), args());
    assert_eq!(planned.blocked.map(|b| b.0), Some(BlockReason::Exempt));
    let mut far = trail("far", "us-east-1");
    far.logging = false;
    let planned = plan(&trails(vec![far]), args());
    assert_eq!(planned.blocked.map(|b| b.0), Some(BlockReason::OtherRegion));
}
