//! EBS: the region's encryption-by-default setting (FSBP EC2.7, CIS 2.2.1). With it on,
//! every new volume and snapshot copy in the region is encrypted, with the AWS-managed
//! key unless a default key was set (`kms_key_arn`, compared with what
//! GetEbsDefaultKmsKeyId reads back, which is always an ARN).

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ec2::operation::RequestId;
use serde_json::Value;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Action, ActionInfo, ActionPlan, Applied, ArgSpec, Calls, DraftChain, Inverse, NoInput,
    api_call, arg, arguments_of, dry_run_answer, typed_args, typed_call,
};
use crate::actions::state_of;
use crate::actions::{Resource, ResourceKind};
use crate::aws::{RegionClients, failure};
use crate::error::{AwsFailure, Error, Result};
use crate::event::KnownEvent;
use crate::inventory::{Filters, Kind, Narrowing};
use crate::plan::{ApiCall, Change, ChangeKind, Probe};

/// Every call of this concern, as a plan stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
enum EbsCall {
    EnableEbsEncryptionByDefault(NoInput),
    /// Only rollback turns it off, and only where it was off before the run.
    DisableEbsEncryptionByDefault(NoInput),
    ModifyEbsDefaultKmsKeyId(ModifyKeyInput),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ModifyKeyInput {
    kms_key_id: String,
}

/// Turns EBS encryption by default on.
pub struct EnableEncryptionByDefault;

/// The arguments of `ec2:enable-ebs-encryption-by-default`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnableArgs {
    /// ARN of the KMS key new volumes get by default; empty for the AWS-managed key
    /// (aws/ebs).
    #[serde(default, deserialize_with = "arg::text")]
    pub kms_key_arn: Option<String>,
}

static ENABLE: ActionInfo = ActionInfo {
    name: "ec2:enable-ebs-encryption-by-default",
    description: "turn on EBS encryption by default in the region (new volumes and snapshot copies are encrypted), and set its default KMS key when kms_key_arn is given",
    resource_kind: ResourceKind::EbsEncryptionDefault,
    outputs: &[],
    waits: false,
};

impl Action for EnableEncryptionByDefault {
    fn arguments(&self) -> Vec<ArgSpec> {
        arguments_of::<EnableArgs>()
    }

    fn info(&self) -> &'static ActionInfo {
        &ENABLE
    }

    fn plan(&self, target: &Resource, args: &Value) -> std::result::Result<ActionPlan, String> {
        let Resource::EbsEncryptionDefault(setting) = target else {
            return Err(format!(
                "expected the EBS encryption-by-default setting, given {}",
                target.kind()
            ));
        };
        let key = typed_args::<EnableArgs>(args)?.kms_key_arn;
        if let Some(key) = &key
            && !key.starts_with("arn:")
        {
            return Err(format!(
                "argument kms_key_arn: expected a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID; the service reads the default key back as an ARN), found {key}"
            ));
        }
        let mut current = setting.clone();
        let mut chain = DraftChain::new("ec2", state_of(&current));
        if !current.enabled {
            current.enabled = true;
            chain.push_call(
                ChangeKind::Update,
                "enable EBS encryption by default".into(),
                state_of(&current),
                &EbsCall::EnableEbsEncryptionByDefault(NoInput {}),
            )?;
        }
        if let Some(key) = key
            && current.kms_key_id.as_deref() != Some(key.as_str())
        {
            let was = match &current.kms_key_id {
                Some(old) => format!("was {old}"),
                None => "the current one could not be read".to_string(),
            };
            current.kms_key_id = Some(key.clone());
            chain.push_call(
                ChangeKind::Update,
                format!("make {key} the default EBS key ({was})"),
                state_of(&current),
                &EbsCall::ModifyEbsDefaultKmsKeyId(ModifyKeyInput { kms_key_id: key }),
            )?;
        }
        Ok(chain.into_plan(Resource::EbsEncryptionDefault(current)))
    }

    fn calls(&self) -> &'static dyn Calls {
        &EbsCalls
    }

    /// Encryption by default is turned off again only if it was off before the run; the
    /// default key is set back to the one read before.
    fn inverse(
        &self,
        call: &ApiCall,
        before: &Value,
        _after: &Value,
    ) -> std::result::Result<Inverse, String> {
        let was: EbsEncryptionDefault = super::recorded(before, "setting")?;
        match call.operation.as_str() {
            "EnableEbsEncryptionByDefault" if !was.enabled => {
                let undo = api_call("ec2", &EbsCall::DisableEbsEncryptionByDefault(NoInput {}))?;
                Ok(Inverse {
                    kind: ChangeKind::Update,
                    summary: "turn EBS encryption by default off again, as it was before the run"
                        .into(),
                    operation: undo.operation,
                    input: undo.input,
                    after: state_of(&EbsEncryptionDefault {
                        enabled: false,
                        ..was.clone()
                    }),
                    removes_created: false,
                })
            }
            "EnableEbsEncryptionByDefault" => Err("it was already on before the run".into()),
            "ModifyEbsDefaultKmsKeyId" => {
                let key = was.kms_key_id.clone().ok_or(
                    "the default key before the run could not be read, so it cannot be set back",
                )?;
                let summary = format!("make {key} the default EBS key again");
                let undo = api_call(
                    "ec2",
                    &EbsCall::ModifyEbsDefaultKmsKeyId(ModifyKeyInput { kms_key_id: key }),
                )?;
                Ok(Inverse::restoring(
                    before,
                    summary,
                    &undo.operation,
                    undo.input,
                ))
            }
            other => Err(format!("no inverse for {other}")),
        }
    }
}

/// Reads, applies and probes changes to the encryption-by-default setting.
pub struct EbsCalls;

async fn call(clients: &RegionClients, change: &Change, dry_run: bool) -> Result<Applied> {
    let operation = change.call.operation.as_str();
    match typed_call::<EbsCall>(change)? {
        EbsCall::EnableEbsEncryptionByDefault(NoInput {}) => {
            let out = clients
                .ec2
                .enable_ebs_encryption_by_default()
                .dry_run(dry_run)
                .send()
                .await
                .map_err(|e| Error::Aws(failure(operation, &e)))?;
            if out.ebs_encryption_by_default() != Some(true) {
                return Err(Error::Aws(AwsFailure {
                    operation: operation.into(),
                    code: "ReturnedFalse".into(),
                    message: "the service answered without error but reports encryption by default as off"
                        .into(),
                    request_id: out.request_id().map(str::to_string),
                }));
            }
            Ok(Applied::request(out.request_id()))
        }
        EbsCall::DisableEbsEncryptionByDefault(NoInput {}) => {
            let out = clients
                .ec2
                .disable_ebs_encryption_by_default()
                .dry_run(dry_run)
                .send()
                .await
                .map_err(|e| Error::Aws(failure(operation, &e)))?;
            Ok(Applied::request(out.request_id()))
        }
        EbsCall::ModifyEbsDefaultKmsKeyId(input) => {
            let out = clients
                .ec2
                .modify_ebs_default_kms_key_id()
                .kms_key_id(input.kms_key_id)
                .dry_run(dry_run)
                .send()
                .await
                .map_err(|e| Error::Aws(failure(operation, &e)))?;
            Ok(Applied::request(out.request_id()))
        }
    }
}

#[async_trait]
impl Calls for EbsCalls {
    fn rights(&self) -> &'static crate::actions::Rights {
        &crate::actions::Rights {
            reads: &["ec2:GetEbsEncryptionByDefault", "ec2:GetEbsDefaultKmsKeyId"],
            changes: &[
                "ec2:EnableEbsEncryptionByDefault",
                "ec2:DisableEbsEncryptionByDefault",
                "ec2:ModifyEbsDefaultKmsKeyId",
            ],
            passes_role_to: &[],
            kms_via_ec2: false,
            includes: &[],
        }
    }

    fn check(&self, change: &Change) -> Result<()> {
        typed_call::<EbsCall>(change).map(drop)
    }

    async fn read(&self, clients: &RegionClients, _resource_id: &str) -> Result<Value> {
        Ok(state_of(&read_setting(clients).await?))
    }

    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        _current: &Value,
    ) -> Result<Applied> {
        call(clients, change, false).await
    }

    async fn probe(&self, clients: &RegionClients, change: &Change) -> Probe {
        dry_run_answer(call(clients, change, true).await)
    }
}

async fn read_setting(clients: &RegionClients) -> Result<EbsEncryptionDefault> {
    let out = clients
        .ec2
        .get_ebs_encryption_by_default()
        .send()
        .await
        .map_err(|e| Error::Aws(failure("GetEbsEncryptionByDefault", &e)))?;
    // The key is unknown rather than an error where the endpoint cannot say: the
    // emulators do not implement GetEbsDefaultKmsKeyId, and a caller without the right
    // may still turn encryption on. A key asked for then fails its read-back.
    // Not retried: the emulators answer HTTP 500, which the retry policy would back
    // off on for seconds; throttling is still an error.
    let kms_key_id = match clients
        .ec2
        .get_ebs_default_kms_key_id()
        .customize()
        .config_override(
            aws_sdk_ec2::config::Builder::default()
                .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled()),
        )
        .send()
        .await
    {
        Ok(out) => out.kms_key_id().map(str::to_string),
        Err(e) => {
            let f = failure("GetEbsDefaultKmsKeyId", &e);
            if f.code == "RequestLimitExceeded" {
                return Err(Error::Aws(f));
            }
            tracing::debug!(region = %clients.region, code = %f.code, "the default EBS key cannot be read: {}", f.message);
            None
        }
    };
    Ok(EbsEncryptionDefault {
        region: clients.region.clone(),
        enabled: out.ebs_encryption_by_default().unwrap_or(false),
        kms_key_id,
    })
}

/// A region's EBS encryption-by-default setting (FSBP EC2.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EbsEncryptionDefault {
    /// The region, which is also its id.
    pub region: String,
    /// Whether new volumes and snapshot copies are encrypted by default.
    pub enabled: bool,
    /// The ARN of the KMS key they are encrypted with; absent where the endpoint does
    /// not say (the emulators do not implement GetEbsDefaultKmsKeyId).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

impl Kind for EbsEncryptionDefault {
    const NAME: &'static str = "ec2:ebs-encryption-default";
    const FILTERS: &'static [&'static str] = &[];
    const NARROWING: Narrowing = Narrowing::RegionWide;
    const UNDONE_BY: &'static [KnownEvent] = &[
        KnownEvent::new("DisableEbsEncryptionByDefault", "ec2.amazonaws.com"),
        KnownEvent::new("ModifyEbsDefaultKmsKeyId", "ec2.amazonaws.com"),
        KnownEvent::new("ResetEbsDefaultKmsKeyId", "ec2.amazonaws.com"),
    ];

    fn sample() -> Self {
        EbsEncryptionDefault {
            region: "us-east-1".into(),
            enabled: false,
            kms_key_id: None,
        }
    }

    fn id(&self) -> &str {
        &self.region
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        None
    }

    /// Reads the region's setting: one resource whose id is the region.
    async fn discover(clients: &RegionClients, _filters: &Filters) -> Result<Vec<Self>> {
        Ok(vec![read_setting(clients).await?])
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::Client;
    use aws_sdk_ec2::operation::get_ebs_default_kms_key_id::GetEbsDefaultKmsKeyIdOutput;
    use aws_sdk_ec2::operation::get_ebs_encryption_by_default::GetEbsEncryptionByDefaultOutput;
    use aws_sdk_ec2::operation::modify_ebs_default_kms_key_id::ModifyEbsDefaultKmsKeyIdOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use serde_json::json;

    use super::*;
    use crate::plan::{ApiCall, ResourceRef};

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
}
