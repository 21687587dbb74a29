use async_trait::async_trait;
use aws_sdk_ec2::operation::RequestId;
use serde_json::Value;

use serde::{Deserialize, Serialize};

use crate::actions::{Applied, Calls, NoInput, dry_run_answer, state_of, typed_call};
use crate::aws::{Answer, RegionClients};
use crate::error::{AwsFailure, Error, Result};
use crate::plan::{Change, Probe};

use super::read::read_setting;

/// Every call of this concern, as a plan stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
pub(super) enum EbsCall {
    EnableEbsEncryptionByDefault(NoInput),
    /// Only rollback turns it off, and only where it was off before the run.
    DisableEbsEncryptionByDefault(NoInput),
    ModifyEbsDefaultKmsKeyId(ModifyKeyInput),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct ModifyKeyInput {
    pub(super) kms_key_id: String,
}

/// Reads, applies and probes changes to the encryption-by-default setting.
pub struct EbsCalls;

pub(super) async fn call(
    clients: &RegionClients,
    change: &Change,
    dry_run: bool,
) -> Result<Applied> {
    let operation = change.call.operation.as_str();
    match typed_call::<EbsCall>(change)? {
        EbsCall::EnableEbsEncryptionByDefault(NoInput {}) => {
            let out = clients
                .ec2
                .enable_ebs_encryption_by_default()
                .dry_run(dry_run)
                .send()
                .await
                .or_failure(operation)?;
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
                .or_failure(operation)?;
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
                .or_failure(operation)?;
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
            ..crate::actions::Rights::NONE
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
