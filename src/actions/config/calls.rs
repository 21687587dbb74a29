use async_trait::async_trait;
use aws_sdk_config::operation::RequestId;
use aws_sdk_config::types::{
    ConfigurationRecorder, DeliveryChannel as SdkDeliveryChannel, RecordingGroup,
};
use serde_json::Value;

use serde::{Deserialize, Serialize};

use crate::actions::{Applied, Calls, state_of, typed_call};
use crate::aws::{Answer, RegionClients};
use crate::error::Result;
use crate::plan::Change;

use super::read::read_setup;

/// Reads, applies (and cannot probe) AWS Config changes.
pub struct RecorderCalls;

/// Every call of this concern, as a plan stores it (AWS Config's field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
pub(super) enum ConfigCall {
    PutConfigurationRecorder(PutRecorderInput),
    PutDeliveryChannel(PutChannelInput),
    StartConfigurationRecorder(RecorderName),
    /// Rollback of a start.
    StopConfigurationRecorder(RecorderName),
    /// Rollback of an added channel.
    DeleteDeliveryChannel(ChannelName),
    /// Rollback of a created recorder.
    DeleteConfigurationRecorder(RecorderName),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct PutRecorderInput {
    pub(super) configuration_recorder: RecorderInput,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RecorderInput {
    pub(super) name: String,
    #[serde(rename = "roleARN")]
    role_arn: String,
    #[serde(rename = "recordingGroup")]
    recording_group: RecordingGroupInput,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RecordingGroupInput {
    all_supported: bool,
    include_global_resource_types: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct PutChannelInput {
    pub(super) delivery_channel: ChannelInput,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ChannelInput {
    pub(super) name: String,
    pub(super) s3_bucket_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct RecorderName {
    configuration_recorder_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct ChannelName {
    pub(super) delivery_channel_name: String,
}

pub(super) fn put_recorder(name: &str, role_arn: &str, include_global: bool) -> ConfigCall {
    ConfigCall::PutConfigurationRecorder(PutRecorderInput {
        configuration_recorder: RecorderInput {
            name: name.to_string(),
            role_arn: role_arn.to_string(),
            recording_group: RecordingGroupInput {
                all_supported: true,
                include_global_resource_types: include_global,
            },
        },
    })
}

pub(super) fn recorder_name(name: &str) -> RecorderName {
    RecorderName {
        configuration_recorder_name: name.to_string(),
    }
}

#[async_trait]
impl Calls for RecorderCalls {
    fn rights(&self) -> &'static crate::actions::Rights {
        &crate::actions::Rights {
            reads: &[
                "config:DescribeConfigurationRecorders",
                "config:DescribeConfigurationRecorderStatus",
                "config:DescribeDeliveryChannels",
            ],
            changes: &[
                "config:PutConfigurationRecorder",
                "config:PutDeliveryChannel",
                "config:StartConfigurationRecorder",
                "config:StopConfigurationRecorder",
                "config:DeleteDeliveryChannel",
                "config:DeleteConfigurationRecorder",
            ],
            passes_role_to: &["config.amazonaws.com"],
            ..crate::actions::Rights::NONE
        }
    }

    fn check(&self, change: &Change) -> Result<()> {
        typed_call::<ConfigCall>(change).map(drop)
    }

    async fn read(&self, clients: &RegionClients, _resource_id: &str) -> Result<Value> {
        Ok(state_of(&read_setup(clients).await?))
    }

    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        _current: &Value,
    ) -> Result<Applied> {
        let config = &clients.config;
        let operation = change.call.operation.as_str();
        let request_id = match typed_call::<ConfigCall>(change)? {
            ConfigCall::PutConfigurationRecorder(input) => {
                let r = input.configuration_recorder;
                let recorder = ConfigurationRecorder::builder()
                    .name(r.name)
                    .role_arn(r.role_arn)
                    .recording_group(
                        RecordingGroup::builder()
                            .all_supported(r.recording_group.all_supported)
                            .include_global_resource_types(
                                r.recording_group.include_global_resource_types,
                            )
                            .build(),
                    )
                    .build();
                config
                    .put_configuration_recorder()
                    .configuration_recorder(recorder)
                    .send()
                    .await
                    .or_failure(operation)?
                    .request_id()
                    .map(str::to_string)
            }
            ConfigCall::PutDeliveryChannel(input) => config
                .put_delivery_channel()
                .delivery_channel(
                    SdkDeliveryChannel::builder()
                        .name(input.delivery_channel.name)
                        .s3_bucket_name(input.delivery_channel.s3_bucket_name)
                        .build(),
                )
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            ConfigCall::StartConfigurationRecorder(input) => config
                .start_configuration_recorder()
                .configuration_recorder_name(input.configuration_recorder_name)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            ConfigCall::StopConfigurationRecorder(input) => config
                .stop_configuration_recorder()
                .configuration_recorder_name(input.configuration_recorder_name)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            ConfigCall::DeleteDeliveryChannel(input) => config
                .delete_delivery_channel()
                .delivery_channel_name(input.delivery_channel_name)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            ConfigCall::DeleteConfigurationRecorder(input) => config
                .delete_configuration_recorder()
                .configuration_recorder_name(input.configuration_recorder_name)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
        };
        Ok(Applied::request(request_id.as_deref()))
    }
}
