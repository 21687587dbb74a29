use std::collections::BTreeMap;

use serde_json::Value;

use crate::actions::{Action, ActionPlan, Calls, Resource, ResourceKind};
use crate::plan::{ApiCall, Change, ChangeKind};

use super::calls::LogGroupCalls;
use super::kind::LogGroup;
use super::plan::EnsureLogGroup;

use serde_json::json;

#[test]
fn a_missing_group_is_created_with_its_retention_and_then_left_alone() {
    let planned = EnsureLogGroup
        .plan(
            &Resource::LogGroup(LogGroup::missing("flows")),
            &json!({"retention_days": 365}),
        )
        .expect("plans");
    let calls: Vec<(&str, &Value)> = planned
        .changes
        .iter()
        .map(|c| (c.call.operation.as_str(), &c.call.input))
        .collect();
    assert_eq!(
        calls,
        [
            ("CreateLogGroup", &json!({"logGroupName": "flows"})),
            (
                "PutRetentionPolicy",
                &json!({"logGroupName": "flows", "retentionInDays": 365})
            )
        ]
    );
    let Some(projected) = planned.projected else {
        panic!("projects")
    };
    assert_eq!(
        EnsureLogGroup
            .plan(&projected, &json!({"retention_days": 365}))
            .expect("plans"),
        ActionPlan::default()
    );
    assert!(
        EnsureLogGroup
            .plan(&projected, &json!({"retention_days": 100}))
            .expect_err("not a retention CloudWatch Logs accepts")
            .contains("retention_days")
    );
}

/// Neither emulator implements AssociateKmsKey or DisassociateKmsKey: a key given
/// to a group that has none is associated, read back, and taken off again by the
/// rollback's inverse, each call with the exact input, through mocked responses.
#[tokio::test]
async fn a_key_the_run_associated_is_read_back_and_disassociated_by_its_inverse() {
    use aws_sdk_cloudwatchlogs::Client;
    use aws_sdk_cloudwatchlogs::operation::associate_kms_key::AssociateKmsKeyOutput;
    use aws_sdk_cloudwatchlogs::operation::describe_log_groups::DescribeLogGroupsOutput;
    use aws_sdk_cloudwatchlogs::operation::disassociate_kms_key::DisassociateKmsKeyOutput;
    use aws_sdk_cloudwatchlogs::types::LogGroup as SdkLogGroup;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    const KEY: &str = "arn:aws:kms:eu-west-1:123456789012:key/1111";
    let group = |key: Option<&str>| {
        DescribeLogGroupsOutput::builder()
            .log_groups(
                SdkLogGroup::builder()
                    .log_group_name("flows")
                    .arn("arn:aws:logs:eu-west-1:123456789012:log-group:flows:*")
                    .retention_in_days(365)
                    .set_kms_key_id(key.map(str::to_string))
                    .build(),
            )
            .build()
    };
    let associate = mock!(Client::associate_kms_key)
        .match_requests(|r| r.log_group_name() == Some("flows") && r.kms_key_id() == Some(KEY))
        .then_output(|| AssociateKmsKeyOutput::builder().build());
    let disassociate = mock!(Client::disassociate_kms_key)
        .match_requests(|r| r.log_group_name() == Some("flows"))
        .then_output(|| DisassociateKmsKeyOutput::builder().build());
    let keyed = mock!(Client::describe_log_groups).then_output(move || group(Some(KEY)));
    let plain = mock!(Client::describe_log_groups).then_output(move || group(None));
    let logs = mock_client!(
        aws_sdk_cloudwatchlogs,
        RuleMode::Sequential,
        [&associate, &keyed, &disassociate, &plain]
    );
    let mut clients = crate::aws::Aws::with_ec2_client(aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .build(),
    ))
    .region("eu-west-1");
    clients.logs = logs;

    let existing = LogGroup {
        name: "flows".into(),
        exists: true,
        arn: Some("arn:aws:logs:eu-west-1:123456789012:log-group:flows".into()),
        retention_days: Some(365),
        kms_key_id: None,
        tags: BTreeMap::new(),
    };
    let planned = EnsureLogGroup
        .plan(
            &Resource::LogGroup(existing),
            &json!({"retention_days": 365, "kms_key_arn": KEY}),
        )
        .expect("plans");
    let [draft] = planned.changes.as_slice() else {
        panic!("one change: {:?}", planned.changes)
    };
    assert_eq!(draft.call.operation, "AssociateKmsKey");
    let change = |call: ApiCall| Change {
        id: "t/eu-west-1/group/flows#1".into(),
        runbook: "t".into(),
        account_id: "123456789012".into(),
        region: "eu-west-1".into(),
        step: "group".into(),
        action: "logs:ensure-log-group".into(),
        resource: crate::plan::ResourceRef {
            kind: ResourceKind::LogGroup,
            id: "flows".into(),
            tags: Default::default(),
        },
        kind: ChangeKind::Update,
        summary: String::new(),
        before: Value::Null,
        after: Value::Null,
        call,
        on_failure: crate::runbook::model::OnFailure::Stop,
        wait_timeout_seconds: None,
        probe: None,
    };
    LogGroupCalls
        .apply(&clients, &change(draft.call.clone()), &draft.before)
        .await
        .expect("associated");
    let read_back = LogGroupCalls.read(&clients, "flows").await.expect("read");
    crate::plan::state_matches(&draft.after, &read_back).expect("the key read back");

    let inverse = EnsureLogGroup
        .inverse(&draft.call, &draft.before, &draft.after)
        .expect("an inverse");
    assert_eq!(inverse.operation, "DisassociateKmsKey");
    assert_eq!(inverse.input, json!({"logGroupName": "flows"}));
    let undo = ApiCall {
        service: "logs".into(),
        operation: inverse.operation.clone(),
        input: inverse.input.clone(),
    };
    LogGroupCalls
        .apply(&clients, &change(undo), &read_back)
        .await
        .expect("disassociated");
    let after_undo = LogGroupCalls.read(&clients, "flows").await.expect("read");
    crate::plan::state_matches(&inverse.after, &after_undo).expect("the key read back gone");
    assert_eq!(associate.num_calls(), 1);
    assert_eq!(disassociate.num_calls(), 1);
}
