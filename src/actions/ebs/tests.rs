use serde_json::Value;

use crate::actions::{Action, ActionPlan, Calls, Resource, ResourceKind};
use crate::plan::{ApiCall, Change, ChangeKind};

use super::calls::EbsCalls;
use super::kind::EbsEncryptionDefault;
use super::plan::EnableEncryptionByDefault;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::operation::get_ebs_default_kms_key_id::GetEbsDefaultKmsKeyIdOutput;
use aws_sdk_ec2::operation::get_ebs_encryption_by_default::GetEbsEncryptionByDefaultOutput;
use aws_sdk_ec2::operation::modify_ebs_default_kms_key_id::ModifyEbsDefaultKmsKeyIdOutput;
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use serde_json::json;

use crate::plan::ResourceRef;

const KEY: &str = "arn:aws:kms:eu-west-1:123456789012:key/1111";
const AWS_MANAGED: &str = "arn:aws:kms:eu-west-1:123456789012:key/aaaa";

fn setting(enabled: bool, key: Option<&str>) -> Resource {
    Resource::EbsEncryptionDefault(EbsEncryptionDefault {
        region: "eu-west-1".into(),
        enabled,
        kms_key_id: key.map(str::to_string),
    })
}

#[test]
fn plans_one_call_when_off_and_nothing_when_on() {
    let plan = EnableEncryptionByDefault
        .plan(&setting(false, None), &json!({}))
        .expect("plans");
    assert_eq!(plan.changes.len(), 1);
    assert_eq!(
        plan.changes[0].call.operation,
        "EnableEbsEncryptionByDefault"
    );
    assert_eq!(
        plan.changes[0].before,
        json!({"region": "eu-west-1", "enabled": false})
    );
    assert_eq!(
        plan.changes[0].after,
        json!({"region": "eu-west-1", "enabled": true})
    );
    let Some(projected) = plan.projected else {
        panic!("projects the setting")
    };
    let again = EnableEncryptionByDefault
        .plan(&projected, &json!({}))
        .expect("plans");
    assert_eq!(again, ActionPlan::default());
}

#[test]
fn a_default_key_asked_for_is_set_after_encryption_is_on_and_only_when_it_differs() {
    let args = json!({"kms_key_arn": KEY});
    let plan = EnableEncryptionByDefault
        .plan(&setting(false, Some(AWS_MANAGED)), &args)
        .expect("plans");
    let calls: Vec<&ApiCall> = plan.changes.iter().map(|c| &c.call).collect();
    assert_eq!(calls[0].operation, "EnableEbsEncryptionByDefault");
    assert_eq!(calls[1].operation, "ModifyEbsDefaultKmsKeyId");
    assert_eq!(calls[1].input, json!({"KmsKeyId": KEY}));
    assert_eq!(plan.changes[1].after["kms_key_id"], KEY);
    assert!(plan.changes[1].summary.contains(AWS_MANAGED));
    assert_eq!(
        EnableEncryptionByDefault
            .plan(&setting(true, Some(KEY)), &args)
            .expect("plans"),
        ActionPlan::default()
    );
    assert!(
        EnableEncryptionByDefault
            .plan(&setting(true, None), &json!({"kms_key_arn": "alias/mine"}))
            .expect_err("an alias is refused")
            .contains("expected a key ARN")
    );
}

/// The emulators implement neither reading nor, usefully, setting the default key:
/// the call and its read-back with mocked responses.
#[tokio::test]
async fn setting_the_default_key_is_read_back() {
    let modify = mock!(Client::modify_ebs_default_kms_key_id)
        .match_requests(|r| r.kms_key_id() == Some(KEY))
        .then_output(|| {
            ModifyEbsDefaultKmsKeyIdOutput::builder()
                .kms_key_id(KEY)
                .build()
        });
    let enabled = mock!(Client::get_ebs_encryption_by_default).then_output(|| {
        GetEbsEncryptionByDefaultOutput::builder()
            .ebs_encryption_by_default(true)
            .build()
    });
    let key = mock!(Client::get_ebs_default_kms_key_id).then_output(|| {
        GetEbsDefaultKmsKeyIdOutput::builder()
            .kms_key_id(KEY)
            .build()
    });
    let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&modify, &enabled, &key]);
    let clients = crate::aws::Aws::with_ec2_client(client).region("eu-west-1");
    let change = Change {
        id: "t/eu-west-1/default_encryption/eu-west-1#2".into(),
        runbook: "t".into(),
        account_id: "123456789012".into(),
        region: "eu-west-1".into(),
        step: "default_encryption".into(),
        action: "ec2:enable-ebs-encryption-by-default".into(),
        resource: ResourceRef {
            kind: ResourceKind::EbsEncryptionDefault,
            id: "eu-west-1".into(),
            tags: Default::default(),
        },
        kind: ChangeKind::Update,
        summary: String::new(),
        before: Value::Null,
        after: Value::Null,
        call: ApiCall {
            service: "ec2".into(),
            operation: "ModifyEbsDefaultKmsKeyId".into(),
            input: json!({"KmsKeyId": KEY}),
        },
        on_failure: crate::runbook::model::OnFailure::Stop,
        wait_timeout_seconds: None,
        probe: None,
    };
    EbsCalls
        .apply(&clients, &change, &Value::Null)
        .await
        .expect("applied");
    assert_eq!(modify.num_calls(), 1);
    assert_eq!(
        EbsCalls.read(&clients, "eu-west-1").await.expect("read"),
        json!({"region": "eu-west-1", "enabled": true, "kms_key_id": KEY})
    );
}
