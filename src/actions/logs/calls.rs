use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::operation::RequestId;
use serde_json::Value;

use serde::{Deserialize, Serialize};

use crate::actions::{Applied, Calls, state_of, typed_call};
use crate::aws::{Answer, RegionClients};
use crate::error::{Error, Result};
use crate::plan::Change;

use super::read::read_log_group;

/// Every call of this concern, as a plan stores it (CloudWatch Logs' field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
pub(super) enum LogsCall {
    CreateLogGroup(CreateInput),
    PutRetentionPolicy(RetentionInput),
    AssociateKmsKey(KeyInput),
    /// Rollback: only while the group holds no log stream.
    DeleteLogGroup(GroupInput),
    DeleteRetentionPolicy(GroupInput),
    DisassociateKmsKey(GroupInput),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct GroupInput {
    log_group_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CreateInput {
    pub(super) log_group_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) kms_key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RetentionInput {
    pub(super) log_group_name: String,
    pub(super) retention_in_days: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct KeyInput {
    pub(super) log_group_name: String,
    pub(super) kms_key_id: String,
}

pub(super) fn group(name: &str) -> GroupInput {
    GroupInput {
        log_group_name: name.to_string(),
    }
}

/// Reads and applies log group changes (CloudWatch Logs has no dry-run).
pub struct LogGroupCalls;

#[async_trait]
impl Calls for LogGroupCalls {
    fn rights(&self) -> &'static crate::actions::Rights {
        &crate::actions::Rights {
            reads: &["logs:DescribeLogGroups", "logs:DescribeLogStreams"],
            changes: &[
                "logs:CreateLogGroup",
                "logs:PutRetentionPolicy",
                "logs:AssociateKmsKey",
                "logs:DeleteLogGroup",
                "logs:DeleteRetentionPolicy",
                "logs:DisassociateKmsKey",
            ],
            ..crate::actions::Rights::NONE
        }
    }

    fn check(&self, change: &Change) -> Result<()> {
        typed_call::<LogsCall>(change).map(drop)
    }

    async fn read(&self, clients: &RegionClients, resource_id: &str) -> Result<Value> {
        Ok(state_of(&read_log_group(clients, resource_id).await?))
    }

    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        _current: &Value,
    ) -> Result<Applied> {
        let logs = &clients.logs;
        let operation = change.call.operation.as_str();
        let request_id = match typed_call::<LogsCall>(change)? {
            LogsCall::CreateLogGroup(input) => logs
                .create_log_group()
                .log_group_name(input.log_group_name)
                .set_kms_key_id(input.kms_key_id)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            LogsCall::PutRetentionPolicy(input) => logs
                .put_retention_policy()
                .log_group_name(input.log_group_name)
                .retention_in_days(input.retention_in_days)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            LogsCall::AssociateKmsKey(input) => logs
                .associate_kms_key()
                .log_group_name(input.log_group_name)
                .kms_key_id(input.kms_key_id)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            LogsCall::DeleteLogGroup(GroupInput {
                log_group_name: name,
            }) => {
                // Streams exist once anything was delivered; a group that has one
                // holds logs someone may need.
                let streams = logs
                    .describe_log_streams()
                    .log_group_name(&name)
                    .limit(1)
                    .send()
                    .await
                    .or_failure("DescribeLogStreams")?;
                if let Some(stream) = streams.log_streams().first() {
                    return Err(Error::NotEmpty {
                        resource: format!("log group {name}"),
                        what: format!(
                            "log stream {}",
                            stream.log_stream_name().unwrap_or_default()
                        ),
                    });
                }
                logs.delete_log_group()
                    .log_group_name(name)
                    .send()
                    .await
                    .or_failure(operation)?
                    .request_id()
                    .map(str::to_string)
            }
            LogsCall::DeleteRetentionPolicy(input) => logs
                .delete_retention_policy()
                .log_group_name(input.log_group_name)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            LogsCall::DisassociateKmsKey(input) => logs
                .disassociate_kms_key()
                .log_group_name(input.log_group_name)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
        };
        Ok(Applied::request(request_id.as_deref()))
    }
}
