//! AWS Config (FSBP Config.1, CIS 3.3): a recorder records every supported resource type
//! (global types in the home region), with the service-linked role (or the role given),
//! is recording, its last status is not Failure, and a delivery channel exists.
//!
//! A region has at most one recorder: an existing one is reused under its own name,
//! never assumed to be `default`. A delivery channel is added only when none exists.
//! AWS Config has no dry-run.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_config::operation::RequestId;
use aws_sdk_config::types::{
    ConfigurationRecorder, DeliveryChannel as SdkDeliveryChannel, RecordingGroup,
};
use serde_json::{Value, json};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Action, ActionInfo, ActionPlan, Applied, ArgSpec, Calls, DraftChain, Inverse, api_call, arg,
    arguments_of, parse_call, typed_args, typed_call,
};
use crate::actions::state_of;
use crate::actions::{Resource, ResourceKind};
use crate::aws::{RegionClients, failure};
use crate::error::{Error, Result};
use crate::event::KnownEvent;
use crate::inventory::{Filters, Kind, Narrowing};
use crate::plan::{ApiCall, BlockReason, Change, ChangeKind};
use crate::template::KNOWN_AFTER_APPLY;

/// Makes the region's recorder record everything, deliver, and run.
pub struct EnsureRecorder;

static ENSURE: ActionInfo = ActionInfo {
    name: "config:ensure-recorder",
    description: "make the region's configuration recorder (reused under its own name, or created) record all supported resource types with the given role, add a delivery channel when none exists, and start recording",
    resource_kind: ResourceKind::ConfigRecorder,
    outputs: &[],
    waits: false,
};

/// Each change's after: the last status is the service's to say once it records.
fn after_state(setup: &ConfigSetup) -> Value {
    let mut value = state_of(setup);
    if setup.recorder.is_some() {
        value["recorder"]["last_status"] = json!(KNOWN_AFTER_APPLY);
    }
    value
}

impl Action for EnsureRecorder {
    fn arguments(&self) -> Vec<ArgSpec> {
        arguments_of::<RecorderArgs>()
    }

    fn info(&self) -> &'static ActionInfo {
        &ENSURE
    }

    fn plan(&self, target: &Resource, args: &Value) -> std::result::Result<ActionPlan, String> {
        let Resource::ConfigRecorder(setup) = target else {
            return Err(format!(
                "expected a region's AWS Config setup, given {}",
                target.kind()
            ));
        };
        let args: RecorderArgs = typed_args(args)?;
        let role_arn = args
            .role_arn
            .ok_or_else(|| "argument role_arn: a role ARN is required".to_string())?;
        let bucket = args
            .bucket_name
            .ok_or_else(|| "argument bucket_name: a bucket name is required".to_string())?;
        let include_global = args.include_global.unwrap_or(false);
        let new_name = args.recorder_name.unwrap_or_else(|| "default".into());

        let mut next = setup.clone();
        let mut chain = DraftChain::new("config", state_of(setup));
        let wanted = |r: &ConfigRecorder| {
            r.all_supported && r.role_arn == role_arn && (r.include_global || !include_global)
        };
        match setup.recorder.as_ref() {
            Some(r) if wanted(r) => {}
            existing => {
                let name = existing.map_or(new_name.clone(), |r| r.name.clone());
                let recorder = ConfigRecorder {
                    name: name.clone(),
                    role_arn: role_arn.clone(),
                    all_supported: true,
                    // Keep global recording where it is already on.
                    include_global: include_global || existing.is_some_and(|r| r.include_global),
                    recording: existing.is_some_and(|r| r.recording),
                    last_status: existing.and_then(|r| r.last_status.clone()),
                };
                let summary = match existing {
                    Some(_) => format!(
                        "make recorder {name} record all supported resource types{} with {role_arn}",
                        if recorder.include_global {
                            " and global ones"
                        } else {
                            ""
                        }
                    ),
                    None => format!("create recorder {name} with {role_arn}"),
                };
                let call = put_recorder(&name, &role_arn, recorder.include_global);
                next.recorder = Some(recorder);
                chain.push_call(
                    if existing.is_some() {
                        ChangeKind::Update
                    } else {
                        ChangeKind::Create
                    },
                    summary,
                    after_state(&next),
                    &call,
                )?;
            }
        }
        if next.delivery_channels.is_empty() {
            next.delivery_channels.push(DeliveryChannel {
                name: "default".into(),
                bucket: bucket.clone(),
            });
            chain.push_call(
                ChangeKind::Create,
                format!("add delivery channel default to bucket {bucket}"),
                after_state(&next),
                &ConfigCall::PutDeliveryChannel(PutChannelInput {
                    delivery_channel: ChannelInput {
                        name: "default".into(),
                        s3_bucket_name: bucket.clone(),
                    },
                }),
            )?;
        }
        if let Some(recorder) = next.recorder.as_mut()
            && !recorder.recording
        {
            recorder.recording = true;
            let name = recorder.name.clone();
            chain.push_call(
                ChangeKind::Update,
                format!("start recorder {name}"),
                after_state(&next),
                &ConfigCall::StartConfigurationRecorder(recorder_name(&name)),
            )?;
        }
        if chain.is_empty()
            && let Some(r) = &setup.recorder
            && r.last_status.as_deref() == Some("Failure")
        {
            return Ok(ActionPlan::blocked(
                BlockReason::Failing,
                format!(
                    "recorder {} is set up but its last recording failed: check that the role can read resources and write to the delivery channel's bucket",
                    r.name
                ),
            ));
        }
        Ok(chain.into_plan(Resource::ConfigRecorder(next)))
    }

    fn calls(&self) -> &'static dyn Calls {
        &RecorderCalls
    }

    fn passed_role_arg(&self) -> Option<&'static str> {
        Some("role_arn")
    }

    fn service_owned(&self) -> &'static [&'static str] {
        &["/recorder/last_status"]
    }

    /// Each change has its own way back (deleting the recorder leaves its channel): a
    /// started recorder is stopped (it was stopped before; Config deletes a channel only
    /// then), a channel the run added is deleted, a recorder it created is deleted, and
    /// one it changed gets its role and global recording back. A recorder that recorded
    /// chosen resource types before cannot be put back: harden did not record which.
    fn inverse(
        &self,
        call: &ApiCall,
        before: &Value,
        _after: &Value,
    ) -> std::result::Result<Inverse, String> {
        let was: ConfigSetup = super::recorded(before, "AWS Config setup")?;
        let made: ConfigCall = parse_call(call)?;
        let (kind, summary, undo) = match (made, &was.recorder) {
            (ConfigCall::StartConfigurationRecorder(_), Some(r)) if !r.recording => (
                ChangeKind::Update,
                format!("stop recorder {} again, as before the run", r.name),
                ConfigCall::StopConfigurationRecorder(recorder_name(&r.name)),
            ),
            (ConfigCall::StartConfigurationRecorder(_), _) => {
                return Err("the recorder was recording (or missing) before the run".into());
            }
            (ConfigCall::PutDeliveryChannel(input), _) => {
                let name = input.delivery_channel.name;
                if was.delivery_channels.iter().any(|c| c.name == name) {
                    return Err(format!("delivery channel {name} existed before the run"));
                }
                (
                    ChangeKind::Delete,
                    format!("delete delivery channel {name}, which the run added"),
                    ConfigCall::DeleteDeliveryChannel(ChannelName {
                        delivery_channel_name: name,
                    }),
                )
            }
            (ConfigCall::PutConfigurationRecorder(input), None) => {
                let name = input.configuration_recorder.name;
                (
                    ChangeKind::Delete,
                    format!("delete recorder {name}, which the run created"),
                    ConfigCall::DeleteConfigurationRecorder(recorder_name(&name)),
                )
            }
            (ConfigCall::PutConfigurationRecorder(_), Some(r)) if r.all_supported => (
                ChangeKind::Update,
                format!(
                    "give recorder {} its role and global recording back",
                    r.name
                ),
                put_recorder(&r.name, &r.role_arn, r.include_global),
            ),
            (ConfigCall::PutConfigurationRecorder(_), Some(r)) => {
                return Err(format!(
                    "recorder {} recorded chosen resource types before the run, which harden does not record",
                    r.name
                ));
            }
            (other, _) => {
                return Err(format!(
                    "no inverse for {}",
                    api_call("config", &other)?.operation
                ));
            }
        };
        let undo = api_call("config", &undo)?;
        Ok(Inverse {
            kind,
            ..Inverse::restoring(before, summary, &undo.operation, undo.input)
        })
    }
}

/// Reads, applies (and cannot probe) AWS Config changes.
pub struct RecorderCalls;

/// The arguments of `config:ensure-recorder`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecorderArgs {
    /// Role the recorder uses (the service-linked role AWSServiceRoleForConfig, or
    /// another).
    #[serde(deserialize_with = "arg::text")]
    #[schemars(required)]
    pub role_arn: Option<String>,
    /// Also record global resource types such as IAM (true in one region only: the
    /// home region).
    #[serde(default, deserialize_with = "arg::flag")]
    pub include_global: Option<bool>,
    /// Bucket of a delivery channel added when none exists.
    #[serde(deserialize_with = "arg::text")]
    #[schemars(required)]
    pub bucket_name: Option<String>,
    /// Name of a recorder created when the region has none (default: default).
    #[serde(default, deserialize_with = "arg::text")]
    pub recorder_name: Option<String>,
}

/// Every call of this concern, as a plan stores it (AWS Config's field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
enum ConfigCall {
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
struct PutRecorderInput {
    configuration_recorder: RecorderInput,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecorderInput {
    name: String,
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
struct PutChannelInput {
    delivery_channel: ChannelInput,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChannelInput {
    name: String,
    s3_bucket_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RecorderName {
    configuration_recorder_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ChannelName {
    delivery_channel_name: String,
}

fn put_recorder(name: &str, role_arn: &str, include_global: bool) -> ConfigCall {
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

fn recorder_name(name: &str) -> RecorderName {
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
            kms_via_ec2: false,
            includes: &[],
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
        let aws = |e| Error::Aws(e);
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
                    .map_err(|e| aws(failure(operation, &e)))?
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
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
            ConfigCall::StartConfigurationRecorder(input) => config
                .start_configuration_recorder()
                .configuration_recorder_name(input.configuration_recorder_name)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
            ConfigCall::StopConfigurationRecorder(input) => config
                .stop_configuration_recorder()
                .configuration_recorder_name(input.configuration_recorder_name)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
            ConfigCall::DeleteDeliveryChannel(input) => config
                .delete_delivery_channel()
                .delivery_channel_name(input.delivery_channel_name)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
            ConfigCall::DeleteConfigurationRecorder(input) => config
                .delete_configuration_recorder()
                .configuration_recorder_name(input.configuration_recorder_name)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
        };
        Ok(Applied::request(request_id.as_deref()))
    }
}

/// Reads the region's recorder (with its status) and delivery channels.
pub async fn read_setup(clients: &RegionClients) -> Result<ConfigSetup> {
    let config = &clients.config;
    let (recorders, statuses, channels) = tokio::join!(
        config.describe_configuration_recorders().send(),
        config.describe_configuration_recorder_status().send(),
        config.describe_delivery_channels().send(),
    );
    let recorders =
        recorders.map_err(|e| Error::Aws(failure("DescribeConfigurationRecorders", &e)))?;
    let statuses =
        statuses.map_err(|e| Error::Aws(failure("DescribeConfigurationRecorderStatus", &e)))?;
    let channels = channels.map_err(|e| Error::Aws(failure("DescribeDeliveryChannels", &e)))?;
    let recorder = recorders.configuration_recorders().first().map(|r| {
        let name = r.name().unwrap_or_default().to_string();
        let status = statuses
            .configuration_recorders_status()
            .iter()
            .find(|s| s.name() == Some(name.as_str()));
        ConfigRecorder {
            role_arn: r.role_arn().unwrap_or_default().to_string(),
            all_supported: r.recording_group().is_some_and(|g| g.all_supported()),
            include_global: r
                .recording_group()
                .is_some_and(|g| g.include_global_resource_types()),
            recording: status.is_some_and(|s| s.recording()),
            last_status: status
                .and_then(|s| s.last_status())
                .map(|s| s.as_str().to_string()),
            name,
        }
    });
    let mut delivery_channels: Vec<DeliveryChannel> = channels
        .delivery_channels()
        .iter()
        .map(|c| DeliveryChannel {
            name: c.name().unwrap_or_default().to_string(),
            bucket: c.s3_bucket_name().unwrap_or_default().to_string(),
        })
        .collect();
    delivery_channels.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(ConfigSetup {
        region: clients.region.clone(),
        recorder,
        delivery_channels,
    })
}

/// A region's AWS Config setup: its recorder (a region has at most one) and delivery
/// channels. One resource per region, whose id is the region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSetup {
    /// The region, which is also the id.
    pub region: String,
    /// The recorder, under whatever name it has.
    pub recorder: Option<ConfigRecorder>,
    /// Delivery channels (name, bucket).
    pub delivery_channels: Vec<DeliveryChannel>,
}

/// A configuration recorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRecorder {
    /// Its name (never assumed to be `default`).
    pub name: String,
    /// The role it records with.
    pub role_arn: String,
    /// Records all supported resource types.
    pub all_supported: bool,
    /// Records global resource types (IAM) too.
    pub include_global: bool,
    /// Whether it is recording.
    pub recording: bool,
    /// `Success`, `Failure` or `Pending`; `None` before the first recording.
    pub last_status: Option<String>,
}

/// A delivery channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryChannel {
    /// Name.
    pub name: String,
    /// Destination bucket.
    pub bucket: String,
}

impl ConfigSetup {
    /// Whether a delivery channel (and so its bucket) has to be made.
    pub fn needs_delivery_channel(&self) -> bool {
        self.delivery_channels.is_empty()
    }
}

impl Kind for ConfigSetup {
    const NAME: &'static str = "config:recorder";
    const FILTERS: &'static [&'static str] = &[];
    const NARROWING: Narrowing = Narrowing::RegionWide;
    const UNDONE_BY: &'static [KnownEvent] = &[
        KnownEvent::new("StopConfigurationRecorder", "config.amazonaws.com"),
        KnownEvent::new("DeleteConfigurationRecorder", "config.amazonaws.com"),
        KnownEvent::new("DeleteDeliveryChannel", "config.amazonaws.com"),
        KnownEvent::new("PutConfigurationRecorder", "config.amazonaws.com"),
    ];

    fn sample() -> Self {
        ConfigSetup {
            region: "us-east-1".into(),
            recorder: None,
            delivery_channels: Vec::new(),
        }
    }

    fn id(&self) -> &str {
        &self.region
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        None
    }

    fn template_facts(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![(
            "needs_delivery_channel",
            self.needs_delivery_channel().into(),
        )]
    }

    /// Reads the region's AWS Config setup: one resource whose id is the region.
    async fn discover(clients: &RegionClients, _filters: &Filters) -> Result<Vec<Self>> {
        Ok(vec![read_setup(clients).await?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLE: &str = "arn:aws:iam::111122223333:role/aws-service-role/config.amazonaws.com/AWSServiceRoleForConfig";

    fn setup(recorder: Option<ConfigRecorder>, channels: usize) -> Resource {
        Resource::ConfigRecorder(ConfigSetup {
            region: "eu-west-1".into(),
            recorder,
            delivery_channels: (0..channels)
                .map(|i| DeliveryChannel {
                    name: format!("channel-{i}"),
                    bucket: "theirs".into(),
                })
                .collect(),
        })
    }

    fn args(global: bool) -> Value {
        json!({"role_arn": ROLE, "bucket_name": "logs", "include_global": global})
    }

    #[test]
    fn every_change_of_a_new_setup_has_a_way_back_and_a_narrow_recorder_has_none() {
        let empty = setup(None, 0);
        let planned = EnsureRecorder.plan(&empty, &args(false)).expect("plans");
        let undo: Vec<(String, ChangeKind)> = planned
            .changes
            .iter()
            .map(|change| {
                let inverse = EnsureRecorder
                    .inverse(&change.call, &change.before, &change.after)
                    .expect("a way back");
                (inverse.operation, inverse.kind)
            })
            .collect();
        assert_eq!(
            undo,
            [
                (
                    "DeleteConfigurationRecorder".to_string(),
                    ChangeKind::Delete
                ),
                ("DeleteDeliveryChannel".to_string(), ChangeKind::Delete),
                ("StopConfigurationRecorder".to_string(), ChangeKind::Update),
            ]
        );
        let narrow = ConfigRecorder {
            name: "legacy".into(),
            role_arn: ROLE.into(),
            all_supported: false,
            include_global: false,
            recording: true,
            last_status: None,
        };
        let Resource::ConfigRecorder(narrow_setup) = setup(Some(narrow), 1) else {
            unreachable!("built as a Config setup")
        };
        let planned = EnsureRecorder
            .plan(
                &Resource::ConfigRecorder(narrow_setup.clone()),
                &args(false),
            )
            .expect("plans");
        let why = EnsureRecorder
            .inverse(
                &planned.changes[0].call,
                &state_of(&narrow_setup),
                &json!(null),
            )
            .expect_err("the chosen types were not recorded");
        assert!(why.contains("chosen resource types"), "{why}");
    }

    fn operations(plan: &ActionPlan) -> Vec<&str> {
        plan.changes
            .iter()
            .map(|c| c.call.operation.as_str())
            .collect()
    }

    #[test]
    fn a_stopped_recorder_with_an_odd_name_is_reused_under_that_name() {
        let odd = ConfigRecorder {
            name: "legacy-recorder".into(),
            role_arn: "arn:aws:iam::111122223333:role/old".into(),
            all_supported: false,
            include_global: false,
            recording: false,
            last_status: None,
        };
        let planned = EnsureRecorder
            .plan(&setup(Some(odd), 1), &args(true))
            .expect("plans");
        assert_eq!(
            operations(&planned),
            ["PutConfigurationRecorder", "StartConfigurationRecorder"],
            "the existing delivery channel is kept"
        );
        assert_eq!(
            planned.changes[0].call.input["ConfigurationRecorder"]["name"],
            "legacy-recorder"
        );
        assert_eq!(
            planned.changes[1].call.input,
            json!({"ConfigurationRecorderName": "legacy-recorder"})
        );
        let Some(projected) = planned.projected else {
            panic!("projects")
        };
        assert_eq!(
            EnsureRecorder.plan(&projected, &args(true)).expect("plans"),
            ActionPlan::default(),
            "converges: nothing more to do"
        );
    }

    #[test]
    fn an_empty_region_gets_recorder_channel_and_start_in_that_order() {
        let planned = EnsureRecorder
            .plan(&setup(None, 0), &args(false))
            .expect("plans");
        assert_eq!(
            operations(&planned),
            [
                "PutConfigurationRecorder",
                "PutDeliveryChannel",
                "StartConfigurationRecorder"
            ]
        );
        assert_eq!(
            planned.changes[0].call.input,
            json!({"ConfigurationRecorder": {"name": "default", "roleARN": ROLE,
                "recordingGroup": {"allSupported": true, "includeGlobalResourceTypes": false}}})
        );
    }

    #[test]
    fn a_recording_recorder_whose_last_status_is_failure_is_reported_not_hidden() {
        let failing = ConfigRecorder {
            name: "default".into(),
            role_arn: ROLE.into(),
            all_supported: true,
            include_global: true,
            recording: true,
            last_status: Some("Failure".into()),
        };
        let planned = EnsureRecorder
            .plan(&setup(Some(failing), 1), &args(true))
            .expect("plans");
        assert_eq!(planned.blocked.map(|b| b.0), Some(BlockReason::Failing));
    }
}
