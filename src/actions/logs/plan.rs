use serde_json::Value;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::actions::{
    Action, ActionInfo, ActionPlan, ArgSpec, Calls, DraftChain, Inverse, Resource, ResourceKind,
    api_call, arg, arguments_of, state_of, typed_args,
};
use crate::plan::{ApiCall, ChangeKind};
use crate::template::KNOWN_AFTER_APPLY;

use super::calls::{CreateInput, KeyInput, LogGroupCalls, LogsCall, RetentionInput, group};
use super::kind::LogGroup;

/// The retention periods CloudWatch Logs accepts, in days.
const RETENTION_DAYS: &[i32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Creates a log group when missing and holds it to a retention and key.
pub struct EnsureLogGroup;

/// The arguments of `logs:ensure-log-group`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogGroupArgs {
    /// Days events are kept: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545,
    /// 731, 1096, 1827, 2192, 2557, 2922, 3288 or 3653.
    #[schemars(with = "i32")]
    pub retention_days: Value,
    /// ARN of the KMS key to encrypt events with; empty for CloudWatch Logs' own
    /// encryption.
    #[serde(default, deserialize_with = "arg::text")]
    pub kms_key_arn: Option<String>,
}

static ENSURE: ActionInfo = ActionInfo {
    name: "logs:ensure-log-group",
    description: "create the log group when missing (CreateLogGroup), set its retention (PutRetentionPolicy) and, when kms_key_arn is given, its key (AssociateKmsKey)",
    resource_kind: ResourceKind::LogGroup,
    outputs: &[],
    waits: false,
};

impl Action for EnsureLogGroup {
    fn arguments(&self) -> Vec<ArgSpec> {
        arguments_of::<LogGroupArgs>()
    }

    fn info(&self) -> &'static ActionInfo {
        &ENSURE
    }

    fn plan(&self, target: &Resource, args: &Value) -> std::result::Result<ActionPlan, String> {
        let Resource::LogGroup(group) = target else {
            return Err(format!("expected a log group, given {}", target.kind()));
        };
        let args: LogGroupArgs = typed_args(args)?;
        let retention = match Some(&args.retention_days) {
            Some(Value::Number(n)) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
            Some(Value::String(s)) => s.parse().ok(),
            _ => None,
        }
        .filter(|days| RETENTION_DAYS.contains(days))
        .ok_or_else(|| {
            format!(
                "argument retention_days: expected one of {RETENTION_DAYS:?}, found {}",
                args.retention_days
            )
        })?;
        let key = args.kms_key_arn.clone();
        let mut current = group.clone();
        let mut chain = DraftChain::new("logs", state_of(&current));
        let name = group.name.clone();
        if !current.exists {
            current.exists = true;
            current.arn = Some(KNOWN_AFTER_APPLY.into());
            current.kms_key_id = key.clone();
            chain.push_call(
                ChangeKind::Create,
                format!("create the log group {name}"),
                state_of(&current),
                &LogsCall::CreateLogGroup(CreateInput {
                    log_group_name: name.clone(),
                    kms_key_id: key.clone(),
                }),
            )?;
        }
        if current.retention_days != Some(retention) {
            current.retention_days = Some(retention);
            chain.push_call(
                ChangeKind::Update,
                format!("keep the events of {name} for {retention} days"),
                state_of(&current),
                &LogsCall::PutRetentionPolicy(RetentionInput {
                    log_group_name: name.clone(),
                    retention_in_days: retention,
                }),
            )?;
        }
        if let Some(key) = key
            && current.kms_key_id.as_deref() != Some(key.as_str())
        {
            current.kms_key_id = Some(key.clone());
            chain.push_call(
                ChangeKind::Update,
                format!("encrypt the events of {name} with {key}"),
                state_of(&current),
                &LogsCall::AssociateKmsKey(KeyInput {
                    log_group_name: name.clone(),
                    kms_key_id: key,
                }),
            )?;
        }
        Ok(chain.into_plan(Resource::LogGroup(current)))
    }

    fn calls(&self) -> &'static dyn Calls {
        &LogGroupCalls
    }

    /// A log group the run created is deleted while it has no log stream (nothing was
    /// written to it); on one that existed, the retention goes back (or is removed) and
    /// a key the run associated is disassociated.
    fn inverse(
        &self,
        call: &ApiCall,
        before: &Value,
        _after: &Value,
    ) -> std::result::Result<Inverse, String> {
        let was: LogGroup = crate::actions::recorded(before, "log group")?;
        let name = was.name.clone();
        let (created, summary, undo) = match (
            call.operation.as_str(),
            was.retention_days,
            &was.kms_key_id,
        ) {
            ("CreateLogGroup", _, _) if !was.exists => (
                true,
                format!(
                    "delete the log group {name}, which the run created, if nothing was written to it"
                ),
                LogsCall::DeleteLogGroup(group(&name)),
            ),
            ("CreateLogGroup", _, _) => {
                return Err(format!("log group {name} existed before the run"));
            }
            ("PutRetentionPolicy", None, _) => (
                false,
                format!("keep the events of {name} forever again, as before the run"),
                LogsCall::DeleteRetentionPolicy(group(&name)),
            ),
            ("PutRetentionPolicy", Some(days), _) => (
                false,
                format!("keep the events of {name} for {days} days again"),
                LogsCall::PutRetentionPolicy(RetentionInput {
                    log_group_name: name.clone(),
                    retention_in_days: days,
                }),
            ),
            ("AssociateKmsKey", _, None) => (
                false,
                format!("take the key off {name} again, as before the run"),
                LogsCall::DisassociateKmsKey(group(&name)),
            ),
            ("AssociateKmsKey", _, Some(key)) => (
                false,
                format!("encrypt the events of {name} with {key} again"),
                LogsCall::AssociateKmsKey(KeyInput {
                    log_group_name: name.clone(),
                    kms_key_id: key.clone(),
                }),
            ),
            (other, _, _) => return Err(format!("no inverse for {other}")),
        };
        let undo = api_call("logs", &undo)?;
        Ok(if created {
            Inverse::deleting_created(before, summary, &undo.operation, undo.input)
        } else {
            Inverse::restoring(before, summary, &undo.operation, undo.input)
        })
    }
}
