use serde_json::{Value, json};

use schemars::JsonSchema;
use serde::Deserialize;

use crate::actions::{
    Action, ActionInfo, ActionPlan, ArgSpec, Calls, DraftChain, Inverse, Resource, ResourceKind,
    api_call, arg, arguments_of, parse_call, state_of, typed_args,
};
use crate::plan::{ApiCall, BlockReason, ChangeKind};
use crate::template::KNOWN_AFTER_APPLY;

use super::calls::{
    ChannelInput, ChannelName, ConfigCall, PutChannelInput, RecorderCalls, put_recorder,
    recorder_name,
};
use super::kind::{ConfigRecorder, ConfigSetup, DeliveryChannel};

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
        let was: ConfigSetup = crate::actions::recorded(before, "AWS Config setup")?;
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
