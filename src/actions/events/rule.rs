//! `events:ensure-rule`: a rule on the default bus matching "AWS API Call via
//! CloudTrail" events for a set of event names, enabled, with a target. `PutRule`
//! creates or corrects the rule; `PutTargets` adds or corrects harden's target (other
//! targets are left alone). EventBridge has no dry-run.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_eventbridge::operation::RequestId;
use aws_sdk_eventbridge::types::{RuleState, Target};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::actions::{
    Action, ActionInfo, ActionPlan, Applied, ArgSpec, Calls, DraftChain, Inverse, Resource,
    ResourceKind, arguments_of, call_input, state_of, typed_args, typed_call,
};
use crate::aws::{Answer, RegionClients, failure};
use crate::error::{Error, Result};
use crate::event::CLOUDTRAIL_DETAIL_TYPE;
use crate::event::KnownEvent;
use crate::event::bridge_source;
use crate::inventory::{Filters, Kind, Narrowing, named};
use crate::plan::{ApiCall, Change, ChangeKind};
use crate::template::KNOWN_AFTER_APPLY;

/// One CloudTrail event the rule matches.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventArg {
    /// `eventName`.
    pub name: String,
    /// `eventSource`, e.g. `ec2.amazonaws.com`.
    pub source: String,
}

/// The arguments of `events:ensure-rule`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleArgs {
    /// The CloudTrail events to match (templates see the selected runbooks' triggers
    /// as `triggers`).
    pub events: Vec<EventArg>,
    /// Where matching events go: a queue, a topic or another account's event bus.
    pub target_arn: String,
    /// The target's id on the rule.
    #[serde(default = "default_target_id")]
    pub target_id: String,
    /// The rule's description.
    #[serde(default)]
    pub description: Option<String>,
    /// The role EventBridge sends with, where the target needs one (another account's
    /// bus that admits an organization rather than this account); empty: none.
    #[serde(default)]
    pub target_role_arn: Option<String>,
}

fn default_target_id() -> String {
    "harden".into()
}

/// Every call of this concern, as a plan stores it (the service's field names).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
enum RuleCall {
    PutRule(PutRuleInput),
    PutTargets(PutTargetsInput),
    RemoveTargets(RemoveTargetsInput),
    DeleteRule(DeleteRuleInput),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PutRuleInput {
    name: String,
    /// A JSON document, as the API takes it.
    event_pattern: String,
    state: String,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct TargetInput {
    id: String,
    arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    role_arn: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PutTargetsInput {
    rule: String,
    targets: Vec<TargetInput>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct DeleteRuleInput {
    name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RemoveTargetsInput {
    rule: String,
    ids: Vec<String>,
}

/// Creates or corrects the rule and its target.
pub struct EnsureRule;

static ENSURE: ActionInfo = ActionInfo {
    name: "events:ensure-rule",
    description: "hold an EventBridge rule on the default bus to a pattern matching the given CloudTrail events, enabled (PutRule), with its target (PutTargets)",
    resource_kind: ResourceKind::EventRule,
    outputs: &[],
    waits: false,
};

/// The event pattern matching these CloudTrail events: sources, the CloudTrail detail
/// type, and the event sources and names, each sorted and once.
pub fn pattern(events: &[EventArg]) -> Value {
    let sources: BTreeSet<&str> = events.iter().map(|e| e.source.as_str()).collect();
    let names: BTreeSet<&str> = events.iter().map(|e| e.name.as_str()).collect();
    let bridge: BTreeSet<String> = sources.iter().map(|s| bridge_source(s)).collect();
    json!({
        "source": bridge,
        "detail-type": [CLOUDTRAIL_DETAIL_TYPE],
        "detail": {"eventSource": sources, "eventName": names}
    })
}

impl Action for EnsureRule {
    fn arguments(&self) -> Vec<ArgSpec> {
        arguments_of::<RuleArgs>()
    }

    fn info(&self) -> &'static ActionInfo {
        &ENSURE
    }

    fn plan(&self, target: &Resource, args: &Value) -> std::result::Result<ActionPlan, String> {
        let Resource::EventRule(rule) = target else {
            return Err(format!(
                "expected an EventBridge rule, given {}",
                target.kind()
            ));
        };
        let args: RuleArgs = typed_args(args)?;
        if args.events.is_empty() {
            return Err("argument events: expected at least one event".into());
        }
        let wanted_pattern = pattern(&args.events);
        let description = args.description.clone().filter(|d| !d.is_empty());
        let name = rule.name.clone();
        let mut current = rule.clone();
        let mut chain = DraftChain::new("events", state_of(&current));
        let rule_matches = rule.exists
            && rule.enabled
            && rule.event_pattern.as_ref() == Some(&wanted_pattern)
            && (description.is_none() || rule.description == description);
        if !rule_matches {
            let (kind, summary) = if rule.exists {
                (
                    ChangeKind::Update,
                    format!(
                        "match {} CloudTrail event(s) with the rule {name}, enabled",
                        args.events.len()
                    ),
                )
            } else {
                current.arn = Some(KNOWN_AFTER_APPLY.into());
                (
                    ChangeKind::Create,
                    format!(
                        "create the rule {name} matching {} CloudTrail event(s)",
                        args.events.len()
                    ),
                )
            };
            current.exists = true;
            current.enabled = true;
            current.event_pattern = Some(wanted_pattern.clone());
            if description.is_some() {
                current.description = description.clone();
            }
            let input = PutRuleInput {
                name: name.clone(),
                event_pattern: wanted_pattern.to_string(),
                state: "ENABLED".into(),
                description: description.clone(),
            };
            chain.push(
                kind,
                summary,
                state_of(&current),
                "PutRule",
                call_input(input)?,
            );
        }
        if current.targets.get(&args.target_id) != Some(&args.target_arn) {
            current
                .targets
                .insert(args.target_id.clone(), args.target_arn.clone());
            let input = PutTargetsInput {
                rule: name.clone(),
                targets: vec![TargetInput {
                    id: args.target_id.clone(),
                    arn: args.target_arn.clone(),
                    role_arn: args.target_role_arn.clone().filter(|r| !r.is_empty()),
                }],
            };
            chain.push(
                ChangeKind::Update,
                format!("send what {name} matches to {}", args.target_arn),
                state_of(&current),
                "PutTargets",
                call_input(input)?,
            );
        }
        Ok(chain.into_plan(Resource::EventRule(current)))
    }

    fn calls(&self) -> &'static dyn Calls {
        &RuleCalls
    }

    fn passed_role_arg(&self) -> Option<&'static str> {
        Some("target_role_arn")
    }

    /// A rule the run created is deleted (its targets first, as EventBridge asks); one
    /// it corrected gets its pattern, state and description back; a target it added is
    /// removed. A target it redirected is refused: only its ARN was recorded.
    fn inverse(
        &self,
        call: &ApiCall,
        before: &Value,
        _after: &Value,
    ) -> std::result::Result<Inverse, String> {
        let was: EventRule = crate::actions::recorded(before, "rule")?;
        let name = was.name.clone();
        match call.operation.as_str() {
            "PutRule" if !was.exists => Ok(Inverse::deleting_created(
                before,
                format!("delete the rule {name}, which the run created, and its targets"),
                "DeleteRule",
                call_input(DeleteRuleInput { name: name.clone() })?,
            )),
            "PutRule" => {
                let pattern = was.event_pattern.as_ref().ok_or(format!(
                    "the rule {name} had no event pattern before the run (a schedule), which harden does not record"
                ))?;
                let input = PutRuleInput {
                    name: name.clone(),
                    event_pattern: pattern.to_string(),
                    state: if was.enabled { "ENABLED" } else { "DISABLED" }.into(),
                    description: was.description.clone(),
                };
                Ok(Inverse::restoring(
                    before,
                    format!("give the rule {name} its pattern, state and description back"),
                    "PutRule",
                    call_input(input)?,
                ))
            }
            "PutTargets" => {
                let input: PutTargetsInput = serde_json::from_value(call.input.clone())
                    .map_err(|e| format!("its input does not parse: {e}"))?;
                let ids: Vec<String> = input.targets.into_iter().map(|t| t.id).collect();
                if let Some(id) = ids.iter().find(|id| was.targets.contains_key(*id)) {
                    return Err(format!(
                        "target {id} of {name} had another destination before the run; only its ARN was recorded"
                    ));
                }
                Ok(Inverse::restoring(
                    before,
                    format!(
                        "remove the target {} the run added to {name}",
                        ids.join(", ")
                    ),
                    "RemoveTargets",
                    call_input(RemoveTargetsInput { rule: name, ids })?,
                ))
            }
            other => Err(format!("no inverse for {other}")),
        }
    }
}

/// Removes targets from a rule, failing on any EventBridge refuses.
async fn remove_targets(
    clients: &RegionClients,
    rule: &str,
    ids: Vec<String>,
) -> Result<Option<String>> {
    let answer = clients
        .events
        .remove_targets()
        .rule(rule)
        .set_ids(Some(ids))
        .send()
        .await
        .or_failure("RemoveTargets")?;
    if let Some(refused) = answer.failed_entries().first() {
        return Err(Error::Aws(crate::error::AwsFailure {
            operation: "RemoveTargets".into(),
            code: refused.error_code().unwrap_or("FailedEntry").into(),
            message: refused.error_message().unwrap_or_default().into(),
            request_id: answer.request_id().map(str::to_string),
        }));
    }
    Ok(answer.request_id().map(str::to_string))
}

/// Reads and applies rule changes.
pub struct RuleCalls;

#[async_trait]
impl Calls for RuleCalls {
    fn rights(&self) -> &'static crate::actions::Rights {
        &crate::actions::Rights {
            reads: &[
                "events:DescribeRule",
                "events:ListTagsForResource",
                "events:ListTargetsByRule",
            ],
            changes: &[
                "events:PutRule",
                "events:PutTargets",
                "events:RemoveTargets",
                "events:DeleteRule",
            ],
            passes_role_to: &["events.amazonaws.com"],
            ..crate::actions::Rights::NONE
        }
    }

    fn check(&self, change: &Change) -> Result<()> {
        typed_call::<RuleCall>(change).map(drop)
    }

    async fn read(&self, clients: &RegionClients, resource_id: &str) -> Result<Value> {
        Ok(state_of(&read_rule(clients, resource_id).await?))
    }

    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        current: &Value,
    ) -> Result<Applied> {
        let events = &clients.events;
        let operation = change.call.operation.as_str();
        let request_id = match typed_call::<RuleCall>(change)? {
            RuleCall::PutRule(input) => events
                .put_rule()
                .name(input.name)
                .event_pattern(input.event_pattern)
                .state(RuleState::from(input.state.as_str()))
                .set_description(input.description)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            RuleCall::PutTargets(input) => {
                let targets = input
                    .targets
                    .into_iter()
                    .map(|t| {
                        Target::builder()
                            .id(t.id)
                            .arn(t.arn)
                            .set_role_arn(t.role_arn)
                            .build()
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::Internal(format!("a rule target: {e}")))?;
                let answer = events
                    .put_targets()
                    .rule(input.rule)
                    .set_targets(Some(targets))
                    .send()
                    .await
                    .or_failure(operation)?;
                // A refused target is in a successful answer.
                if let Some(refused) = answer.failed_entries().first() {
                    return Err(Error::Aws(crate::error::AwsFailure {
                        operation: operation.into(),
                        code: refused.error_code().unwrap_or("FailedEntry").into(),
                        message: refused.error_message().unwrap_or_default().into(),
                        request_id: answer.request_id().map(str::to_string),
                    }));
                }
                answer.request_id().map(str::to_string)
            }
            RuleCall::RemoveTargets(input) => {
                remove_targets(clients, &input.rule, input.ids).await?
            }
            RuleCall::DeleteRule(input) => {
                // EventBridge deletes a rule only without targets: those read just
                // before, which the stale check held to the run's.
                let targets: Vec<String> = current
                    .get("targets")
                    .and_then(Value::as_object)
                    .map(|t| t.keys().cloned().collect())
                    .unwrap_or_default();
                if !targets.is_empty() {
                    remove_targets(clients, &input.name, targets).await?;
                }
                events
                    .delete_rule()
                    .name(input.name)
                    .send()
                    .await
                    .or_failure(operation)?
                    .request_id()
                    .map(str::to_string)
            }
        };
        Ok(Applied::request(request_id.as_deref()))
    }
}

/// Reads the rule named `name` on the default bus: `exists: false` when there is none.
pub async fn read_rule(clients: &RegionClients, name: &str) -> Result<EventRule> {
    let events = &clients.events;
    let rule = match events.describe_rule().name(name).send().await {
        Ok(rule) => rule,
        Err(e) => {
            let failed = failure("DescribeRule", &e);
            if failed.code == "ResourceNotFoundException" {
                return Ok(EventRule::missing(name));
            }
            return Err(Error::Aws(failed));
        }
    };
    let arn = rule.arn().map(str::to_string);
    let targets = events
        .list_targets_by_rule()
        .rule(name)
        .send()
        .await
        .or_failure("ListTargetsByRule")?;
    let tags = match &arn {
        Some(arn) => events
            .list_tags_for_resource()
            .resource_arn(arn)
            .send()
            .await
            .or_failure("ListTagsForResource")?
            .tags()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect(),
        None => Default::default(),
    };
    Ok(EventRule {
        name: name.to_string(),
        exists: true,
        arn,
        enabled: rule.state() == Some(&RuleState::Enabled),
        event_pattern: rule
            .event_pattern()
            .and_then(|p| serde_json::from_str(p).ok()),
        description: rule.description().map(str::to_string),
        targets: targets
            .targets()
            .iter()
            .map(|t| (t.id().to_string(), t.arn().to_string()))
            .collect(),
        tags,
    })
}

/// An EventBridge rule on the default bus that a runbook names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRule {
    /// Its name, which is also the id.
    pub name: String,
    /// False when no rule has the name.
    pub exists: bool,
    /// Its ARN, once it exists.
    pub arn: Option<String>,
    /// `State` is `ENABLED`.
    pub enabled: bool,
    /// The event pattern (parsed).
    pub event_pattern: Option<serde_json::Value>,
    /// Its description.
    pub description: Option<String>,
    /// Where it sends what matches, by target id.
    pub targets: BTreeMap<String, String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl EventRule {
    /// A rule of this name that does not exist.
    pub fn missing(name: &str) -> Self {
        EventRule {
            name: name.to_string(),
            exists: false,
            arn: None,
            enabled: false,
            event_pattern: None,
            description: None,
            targets: BTreeMap::new(),
            tags: BTreeMap::new(),
        }
    }
}

impl Kind for EventRule {
    const NAME: &'static str = "events:rule";
    const FILTERS: &'static [&'static str] =
        // Looked up by name, not listed: `name` is required.
        &["name"];
    const NARROWING: Narrowing = Narrowing::Named;
    const UNDONE_BY: &'static [KnownEvent] = &[
        KnownEvent::new("DeleteRule", "events.amazonaws.com"),
        KnownEvent::new("DisableRule", "events.amazonaws.com"),
        KnownEvent::new("RemoveTargets", "events.amazonaws.com"),
        KnownEvent::new("PutRule", "events.amazonaws.com"),
    ];

    fn sample() -> Self {
        EventRule::missing("sample")
    }

    fn id(&self) -> &str {
        &self.name
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.tags)
    }

    /// Looks up each rule named.
    async fn discover(clients: &RegionClients, filters: &Filters) -> Result<Vec<Self>> {
        named(filters, "name", |name| read_rule(clients, name)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Value {
        json!({
            "events": [
                {"name": "StopLogging", "source": "cloudtrail.amazonaws.com"},
                {"name": "AuthorizeSecurityGroupEgress", "source": "ec2.amazonaws.com"},
                {"name": "CreateVpc", "source": "ec2.amazonaws.com"}
            ],
            "target_arn": "arn:aws:sqs:us-east-1:111111111111:events"
        })
    }

    #[test]
    fn the_pattern_lists_sources_and_names_once_each_sorted() {
        let args: RuleArgs = typed_args(&args()).expect("typed");
        assert_eq!(
            pattern(&args.events),
            json!({
                "source": ["aws.cloudtrail", "aws.ec2"],
                "detail-type": ["AWS API Call via CloudTrail"],
                "detail": {
                    "eventSource": ["cloudtrail.amazonaws.com", "ec2.amazonaws.com"],
                    "eventName": ["AuthorizeSecurityGroupEgress", "CreateVpc", "StopLogging"]
                }
            })
        );
    }

    #[test]
    fn a_missing_rule_is_created_with_its_target_and_then_converges() {
        let planned = EnsureRule
            .plan(&Resource::EventRule(EventRule::missing("events")), &args())
            .expect("plans");
        let operations: Vec<&str> = planned
            .changes
            .iter()
            .map(|c| c.call.operation.as_str())
            .collect();
        assert_eq!(operations, ["PutRule", "PutTargets"]);
        assert_eq!(planned.changes[0].call.input["State"], "ENABLED");
        assert_eq!(
            planned.changes[1].call.input["Targets"][0]["Arn"],
            "arn:aws:sqs:us-east-1:111111111111:events"
        );
        let Some(Resource::EventRule(mut made)) = planned.projected else {
            panic!("a projected rule");
        };
        made.arn = Some("arn:aws:events:us-east-1:111111111111:rule/events".into());
        let again = EnsureRule
            .plan(&Resource::EventRule(made.clone()), &args())
            .expect("plans");
        assert!(again.changes.is_empty());
        made.enabled = false;
        let disabled = EnsureRule
            .plan(&Resource::EventRule(made), &args())
            .expect("plans");
        let operations: Vec<&str> = disabled
            .changes
            .iter()
            .map(|c| c.call.operation.as_str())
            .collect();
        assert_eq!(operations, ["PutRule"], "the target is kept");
    }
}
