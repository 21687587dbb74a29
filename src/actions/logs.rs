//! CloudWatch Logs log groups the other runbooks write to (VPC flow logs): created when
//! missing, held to a retention and (optionally) a KMS key. Looked up by name.
//! CloudWatch Logs has no dry-run.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_cloudwatchlogs::operation::RequestId;
use serde_json::Value;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    Action, ActionInfo, ActionPlan, Applied, ArgSpec, Calls, DraftChain, Inverse, api_call, arg,
    arguments_of, typed_args, typed_call,
};
use crate::actions::state_of;
use crate::actions::{Resource, ResourceKind};
use crate::aws::{RegionClients, failure};
use crate::error::{Error, Result};
use crate::inventory::{Filters, Kind, Narrowing, named};
use crate::plan::{ApiCall, Change, ChangeKind};
use crate::template::KNOWN_AFTER_APPLY;

/// The retention periods CloudWatch Logs accepts, in days.
const RETENTION_DAYS: &[i32] = &[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// Every call of this concern, as a plan stores it (CloudWatch Logs' field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
enum LogsCall {
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
struct GroupInput {
    log_group_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateInput {
    log_group_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kms_key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RetentionInput {
    log_group_name: String,
    retention_in_days: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct KeyInput {
    log_group_name: String,
    kms_key_id: String,
}

fn group(name: &str) -> GroupInput {
    GroupInput {
        log_group_name: name.to_string(),
    }
}

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
        let was: LogGroup = super::recorded(before, "log group")?;
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
            passes_role_to: &[],
            kms_via_ec2: false,
            includes: &[],
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
        let aws = |e| Error::Aws(e);
        let request_id = match typed_call::<LogsCall>(change)? {
            LogsCall::CreateLogGroup(input) => logs
                .create_log_group()
                .log_group_name(input.log_group_name)
                .set_kms_key_id(input.kms_key_id)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
            LogsCall::PutRetentionPolicy(input) => logs
                .put_retention_policy()
                .log_group_name(input.log_group_name)
                .retention_in_days(input.retention_in_days)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
            LogsCall::AssociateKmsKey(input) => logs
                .associate_kms_key()
                .log_group_name(input.log_group_name)
                .kms_key_id(input.kms_key_id)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
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
                    .map_err(|e| aws(failure("DescribeLogStreams", &e)))?;
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
                    .map_err(|e| aws(failure(operation, &e)))?
                    .request_id()
                    .map(str::to_string)
            }
            LogsCall::DeleteRetentionPolicy(input) => logs
                .delete_retention_policy()
                .log_group_name(input.log_group_name)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
            LogsCall::DisassociateKmsKey(input) => logs
                .disassociate_kms_key()
                .log_group_name(input.log_group_name)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
        };
        Ok(Applied::request(request_id.as_deref()))
    }
}

/// Reads a log group by name (a prefix query, then the exact name); a missing one is
/// `exists: false`.
pub async fn read_log_group(clients: &RegionClients, name: &str) -> Result<LogGroup> {
    let mut pages = clients
        .logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::Aws(failure("DescribeLogGroups", &e)))?;
        if let Some(group) = page
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(name))
        {
            return Ok(LogGroup {
                name: name.to_string(),
                exists: true,
                arn: group
                    .arn()
                    .map(|arn| arn.trim_end_matches(":*").to_string()),
                retention_days: group.retention_in_days(),
                kms_key_id: group.kms_key_id().map(str::to_string),
                tags: BTreeMap::new(),
            });
        }
    }
    Ok(LogGroup::missing(name))
}

/// A CloudWatch Logs log group a runbook names (a log destination): whether it exists
/// and how long it keeps what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogGroup {
    /// Its name, which is also the id.
    pub name: String,
    /// False when no log group has the name.
    pub exists: bool,
    /// Its ARN without the trailing `:*`, once it exists.
    pub arn: Option<String>,
    /// Days events are kept; `None` keeps them forever.
    pub retention_days: Option<i32>,
    /// The KMS key its events are encrypted with.
    pub kms_key_id: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl LogGroup {
    /// A log group no one has created.
    pub fn missing(name: &str) -> Self {
        Self {
            name: name.to_string(),
            exists: false,
            arn: None,
            retention_days: None,
            kms_key_id: None,
            tags: BTreeMap::new(),
        }
    }
}

impl Kind for LogGroup {
    const NAME: &'static str = "logs:log-group";
    const FILTERS: &'static [&'static str] =
        // Looked up by name, not listed: `name` is required.
        &["name"];
    const NARROWING: Narrowing = Narrowing::Named;

    fn sample() -> Self {
        LogGroup::missing("sample")
    }

    fn id(&self) -> &str {
        &self.name
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.tags)
    }

    /// Looks up each log group named.
    async fn discover(clients: &RegionClients, filters: &Filters) -> Result<Vec<Self>> {
        named(filters, "name", |name| read_log_group(clients, name)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
