//! Pure tests of the concern: exact plans, inverses and saved calls.

use serde_json::Value;

use crate::actions::{Action, ActionPlan, Resource};
use crate::template::KNOWN_AFTER_APPLY;

use serde_json::json;

use super::kind::ServiceLinkedRole;
use super::plan::{EnsureRole, EnsureServiceLinkedRole};
use super::read::{decode_policy, missing};

fn role_args() -> Value {
    json!({
        "trust_policy": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Principal": {"Service": "vpc-flow-logs.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
        "policy_name": "deliver",
        "policy": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
            "Action": ["logs:PutLogEvents"], "Resource": "arn:aws:logs:*:1:log-group:g:*"}]},
    })
}

#[test]
fn a_service_role_is_created_with_its_trust_and_policy_and_held_to_them() {
    let args = role_args();
    let planned = EnsureRole
        .plan(&Resource::Role(missing("delivery")), &args)
        .expect("plans");
    let operations: Vec<&str> = planned
        .changes
        .iter()
        .map(|c| c.call.operation.as_str())
        .collect();
    assert_eq!(operations, ["CreateRole", "PutRolePolicy"]);
    assert_eq!(
        decode_policy(
            planned.changes[0].call.input["AssumeRolePolicyDocument"]
                .as_str()
                .expect("a string")
        ),
        args["trust_policy"],
        "IAM takes the document as a JSON string"
    );
    let Some(Resource::Role(mut projected)) = planned.projected else {
        panic!("projects")
    };
    assert_eq!(
        EnsureRole
            .plan(&Resource::Role(projected.clone()), &args)
            .expect("plans"),
        ActionPlan::default()
    );
    // Someone widened who may assume it: put back, the inline policy left alone.
    projected.trust_policy = Some(json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}));
    let fixed = EnsureRole
        .plan(&Resource::Role(projected), &args)
        .expect("plans");
    assert_eq!(fixed.changes.len(), 1);
    assert_eq!(fixed.changes[0].call.operation, "UpdateAssumeRolePolicy");
}

#[test]
fn policy_documents_are_read_url_encoded_or_plain() {
    assert_eq!(
        decode_policy("%7B%22Version%22%3A%222012-10-17%22%7D"),
        json!({"Version": "2012-10-17"})
    );
    assert_eq!(
        decode_policy(r#"{"Version":"2012-10-17"}"#),
        json!({"Version": "2012-10-17"})
    );
}

#[test]
fn a_missing_service_linked_role_is_created_and_an_existing_one_left_alone() {
    let planned = EnsureServiceLinkedRole
        .plan(
            &Resource::ServiceLinkedRole(ServiceLinkedRole::missing("config.amazonaws.com")),
            &json!({}),
        )
        .expect("plans");
    assert_eq!(planned.changes.len(), 1);
    assert_eq!(
        planned.changes[0].call.input,
        json!({"AWSServiceName": "config.amazonaws.com"})
    );
    // Whatever name AWS (or an emulator) gives it, the read-back matches.
    assert_eq!(
        planned.changes[0].after,
        json!({"service": "config.amazonaws.com", "exists": true,
               "name": KNOWN_AFTER_APPLY, "arn": KNOWN_AFTER_APPLY})
    );
    let Some(projected) = planned.projected else {
        panic!("projects")
    };
    assert_eq!(
        EnsureServiceLinkedRole
            .plan(&projected, &json!({}))
            .expect("plans"),
        ActionPlan::default()
    );
}
