//! `sqs:ensure-queue`: a queue held to server-side encryption, a visibility timeout and
//! retention, an access policy that admits only the named sources, and a redrive
//! policy to a dead-letter queue. Created with all of it in one `CreateQueue`; an
//! existing queue gets one `SetQueueAttributes` of just what differs. SQS has no
//! dry-run.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_sqs::operation::RequestId;
use aws_sdk_sqs::types::QueueAttributeName;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::actions::{
    Action, ActionInfo, ActionPlan, Applied, ArgSpec, Calls, DraftChain, Inverse, Resource,
    ResourceKind, arguments_of, call_input, state_of, typed_args, typed_call,
};
use crate::aws::{Answer, RegionClients, failure};
use crate::error::{Error, Result};
use crate::event::KnownEvent;
use crate::inventory::{Filters, Kind, Narrowing, named};
use crate::plan::{ApiCall, Change, ChangeKind};
use crate::template::KNOWN_AFTER_APPLY;

/// The arguments of `sqs:ensure-queue`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueArgs {
    /// The queue's ARN (what its policy's `Resource` names).
    pub arn: String,
    /// Seconds a received message stays invisible before it is delivered again.
    pub visibility_timeout_seconds: i64,
    /// Seconds a message is kept (60 to 1209600).
    pub message_retention_seconds: i64,
    /// Encrypt with this KMS key (SSE-KMS); empty: SQS-managed keys (SSE-SQS).
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// The dead-letter queue's ARN; empty: none.
    #[serde(default)]
    pub dead_letter_arn: Option<String>,
    /// Receives after which a message goes to the dead-letter queue.
    #[serde(default = "default_max_receive_count")]
    pub max_receive_count: i64,
    /// ARNs (EventBridge rules) allowed to send to the queue, and nothing else; empty:
    /// the policy is not managed.
    #[serde(default)]
    pub allow_source_arns: Vec<String>,
    /// More ARNs allowed to send, after `allow_source_arns` (a parameter's list, such
    /// as member accounts' rules sending to a central queue).
    #[serde(default)]
    pub more_source_arns: Vec<String>,
}

fn default_max_receive_count() -> i64 {
    5
}

/// `CreateQueue`'s input, as the plan stores it.
/// Every call of this concern, as a plan stores it (the service's field names).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
enum QueueCall {
    CreateQueue(CreateQueueInput),
    SetQueueAttributes(SetQueueAttributesInput),
    DeleteQueue(DeleteQueueInput),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CreateQueueInput {
    queue_name: String,
    attributes: BTreeMap<String, String>,
}

/// `SetQueueAttributes`' input, as the plan stores it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SetQueueAttributesInput {
    queue_url: String,
    attributes: BTreeMap<String, String>,
}

/// `DeleteQueue`'s input.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct DeleteQueueInput {
    queue_url: String,
}

/// How long SQS may take to forget a deleted queue (its documentation says up to 60
/// seconds, during which the queue can still be found).
const QUEUE_DELETION: std::time::Duration = std::time::Duration::from_secs(90);

/// Creates a queue when missing and holds it to the arguments.
pub struct EnsureQueue;

static ENSURE: ActionInfo = ActionInfo {
    name: "sqs:ensure-queue",
    description: "create the queue when missing (CreateQueue) or correct it (SetQueueAttributes): server-side encryption, visibility timeout, retention, an access policy admitting only allow_source_arns, a redrive policy to dead_letter_arn",
    resource_kind: ResourceKind::Queue,
    outputs: &[],
    waits: false,
};

/// The access policy that lets only `sources` (EventBridge rules) send to `queue_arn`.
pub fn send_policy(queue_arn: &str, sources: &[String]) -> Value {
    let source = match sources {
        [one] => json!(one),
        many => json!(many),
    };
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "harden-events-rule",
            "Effect": "Allow",
            "Principal": {"Service": "events.amazonaws.com"},
            "Action": "sqs:SendMessage",
            "Resource": queue_arn,
            "Condition": {"ArnEquals": {"aws:SourceArn": source}}
        }]
    })
}

impl Action for EnsureQueue {
    fn arguments(&self) -> Vec<ArgSpec> {
        arguments_of::<QueueArgs>()
    }

    fn info(&self) -> &'static ActionInfo {
        &ENSURE
    }

    fn plan(&self, target: &Resource, args: &Value) -> std::result::Result<ActionPlan, String> {
        let Resource::Queue(queue) = target else {
            return Err(format!("expected a queue, given {}", target.kind()));
        };
        let args: QueueArgs = typed_args(args)?;
        if !(60..=1_209_600).contains(&args.message_retention_seconds) {
            return Err(format!(
                "argument message_retention_seconds: expected 60 to 1209600, found {}",
                args.message_retention_seconds
            ));
        }
        if !(0..=43_200).contains(&args.visibility_timeout_seconds) {
            return Err(format!(
                "argument visibility_timeout_seconds: expected 0 to 43200, found {}",
                args.visibility_timeout_seconds
            ));
        }
        let key = args.kms_key_id.clone().filter(|k| !k.is_empty());
        let dead_letter = args.dead_letter_arn.clone().filter(|a| !a.is_empty());
        let mut wanted = queue.clone();
        let mut attributes = BTreeMap::new();
        match &key {
            Some(key) if queue.kms_key_id.as_deref() != Some(key) || !queue.exists => {
                attributes.insert("KmsMasterKeyId".to_string(), key.clone());
                wanted.kms_key_id = Some(key.clone());
                wanted.sqs_managed_sse = false;
            }
            None if !queue.sqs_managed_sse || queue.kms_key_id.is_some() || !queue.exists => {
                attributes.insert("SqsManagedSseEnabled".to_string(), "true".to_string());
                wanted.sqs_managed_sse = true;
                wanted.kms_key_id = None;
            }
            _ => {}
        }
        let mut number = |name: &str, field: &mut Option<i64>, value: i64| {
            if *field != Some(value) || !queue.exists {
                attributes.insert(name.to_string(), value.to_string());
                *field = Some(value);
            }
        };
        number(
            "VisibilityTimeout",
            &mut wanted.visibility_timeout_seconds,
            args.visibility_timeout_seconds,
        );
        number(
            "MessageRetentionPeriod",
            &mut wanted.message_retention_seconds,
            args.message_retention_seconds,
        );
        let mut sources = args.allow_source_arns.clone();
        sources.extend(args.more_source_arns.iter().cloned());
        sources.dedup();
        if !sources.is_empty() {
            let policy = send_policy(&args.arn, &sources);
            if queue.policy.as_ref() != Some(&policy) || !queue.exists {
                attributes.insert("Policy".to_string(), policy.to_string());
                wanted.policy = Some(policy);
            }
        }
        if let Some(arn) = dead_letter {
            let redrive = Redrive {
                dead_letter_target_arn: arn,
                max_receive_count: args.max_receive_count,
            };
            if queue.redrive.as_ref() != Some(&redrive) || !queue.exists {
                attributes.insert(
                    "RedrivePolicy".to_string(),
                    json!({
                        "deadLetterTargetArn": redrive.dead_letter_target_arn,
                        "maxReceiveCount": redrive.max_receive_count,
                    })
                    .to_string(),
                );
                wanted.redrive = Some(redrive);
            }
        }
        if attributes.is_empty() {
            return Ok(ActionPlan::default());
        }
        let name = queue.name.clone();
        let mut chain = DraftChain::new("sqs", state_of(queue));
        if queue.exists {
            let changed: Vec<&str> = attributes.keys().map(String::as_str).collect();
            let summary = format!("set {} of the queue {name}", changed.join(", "));
            let input = SetQueueAttributesInput {
                queue_url: queue
                    .url
                    .clone()
                    .unwrap_or_else(|| KNOWN_AFTER_APPLY.into()),
                attributes,
            };
            chain.push(
                ChangeKind::Update,
                summary,
                state_of(&wanted),
                "SetQueueAttributes",
                call_input(input)?,
            );
        } else {
            wanted.exists = true;
            wanted.url = Some(KNOWN_AFTER_APPLY.into());
            wanted.arn = Some(args.arn.clone());
            let input = CreateQueueInput {
                queue_name: name.clone(),
                attributes,
            };
            chain.push(
                ChangeKind::Create,
                format!("create the queue {name}, encrypted"),
                state_of(&wanted),
                "CreateQueue",
                call_input(input)?,
            );
        }
        Ok(chain.into_plan(Resource::Queue(wanted)))
    }

    fn calls(&self) -> &'static dyn Calls {
        &QueueCalls
    }

    /// A queue the run created is deleted while it holds no message; the attributes
    /// the run set on a queue that existed are set back to what they were.
    fn inverse(
        &self,
        call: &ApiCall,
        before: &Value,
        after: &Value,
    ) -> std::result::Result<Inverse, String> {
        let was: Queue = crate::actions::recorded(before, "queue")?;
        let what = format!("queue {}", was.name);
        if call.operation == "SetQueueAttributes" && was.exists {
            let set: SetQueueAttributesInput = serde_json::from_value(call.input.clone())
                .map_err(|e| format!("the SetQueueAttributes recorded does not parse: {e}"))?;
            let attributes = attributes_as_they_were(&was, &set.attributes)?;
            let names: Vec<&str> = attributes.keys().map(String::as_str).collect();
            return Ok(Inverse::restoring(
                before,
                format!("set {} of the {what} back", names.join(", ")),
                "SetQueueAttributes",
                call_input(SetQueueAttributesInput {
                    queue_url: set.queue_url,
                    attributes,
                })?,
            ));
        }
        let made: Queue = crate::actions::recorded(after, "queue")?;
        let url = crate::actions::created_id(call, "CreateQueue", was.exists, made.url, &what)?;
        Ok(Inverse::deleting_created(
            before,
            format!("delete the {what}, which the run created, if it holds no message"),
            "DeleteQueue",
            call_input(DeleteQueueInput { queue_url: url })?,
        ))
    }
}

/// The attributes a `SetQueueAttributes` set (`set`), with the values the queue `was`
/// had, in SQS's terms: an empty `Policy`, `RedrivePolicy` or `KmsMasterKeyId` removes
/// one it did not have.
fn attributes_as_they_were(
    was: &Queue,
    set: &BTreeMap<String, String>,
) -> std::result::Result<BTreeMap<String, String>, String> {
    let mut back = BTreeMap::new();
    for name in set.keys() {
        match name.as_str() {
            "KmsMasterKeyId" | "SqsManagedSseEnabled" => match &was.kms_key_id {
                Some(key) => {
                    back.insert("KmsMasterKeyId".into(), key.clone());
                }
                None => {
                    back.insert(
                        "SqsManagedSseEnabled".into(),
                        was.sqs_managed_sse.to_string(),
                    );
                    if set.contains_key("KmsMasterKeyId") {
                        back.insert("KmsMasterKeyId".into(), String::new());
                    }
                }
            },
            "VisibilityTimeout" | "MessageRetentionPeriod" => {
                let seconds = if name == "VisibilityTimeout" {
                    was.visibility_timeout_seconds
                } else {
                    was.message_retention_seconds
                };
                let seconds = seconds.ok_or(format!(
                    "the queue {}'s {name} before the run was not recorded",
                    was.name
                ))?;
                back.insert(name.clone(), seconds.to_string());
            }
            "Policy" => {
                back.insert(
                    name.clone(),
                    was.policy
                        .as_ref()
                        .map(Value::to_string)
                        .unwrap_or_default(),
                );
            }
            "RedrivePolicy" => {
                back.insert(
                    name.clone(),
                    was.redrive
                        .as_ref()
                        .map(|r| {
                            json!({
                                "deadLetterTargetArn": r.dead_letter_target_arn,
                                "maxReceiveCount": r.max_receive_count,
                            })
                            .to_string()
                        })
                        .unwrap_or_default(),
                );
            }
            other => return Err(format!("no way back for the queue attribute {other}")),
        }
    }
    Ok(back)
}

/// Deletes a queue that holds no message, and waits until SQS no longer finds it.
async fn delete_empty_queue(
    clients: &RegionClients,
    change: &Change,
    input: DeleteQueueInput,
) -> Result<Option<String>> {
    let sqs = &clients.sqs;
    let counts = sqs
        .get_queue_attributes()
        .queue_url(&input.queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .or_failure("GetQueueAttributes")?;
    let held: u64 = counts
        .attributes()
        .into_iter()
        .flatten()
        .filter_map(|(_, count)| count.parse::<u64>().ok())
        .sum();
    if held > 0 {
        return Err(Error::NotEmpty {
            resource: format!("queue {}", change.resource.id),
            what: format!("about {held} message(s)"),
        });
    }
    let request_id = sqs
        .delete_queue()
        .queue_url(&input.queue_url)
        .send()
        .await
        .or_failure("DeleteQueue")?
        .request_id()
        .map(str::to_string);
    let until = tokio::time::Instant::now() + QUEUE_DELETION;
    // Only GetQueueUrl: the read-back after this reads the rest.
    while queue_url(clients, &change.resource.id).await?.is_some() {
        if tokio::time::Instant::now() >= until {
            return Err(Error::Verification {
                resource: change.resource.id.clone(),
                detail: format!(
                    "SQS still finds the queue {}s after deleting it",
                    QUEUE_DELETION.as_secs()
                ),
            });
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
    Ok(request_id)
}

/// Reads and applies queue changes.
pub struct QueueCalls;

fn attribute_map(
    attributes: BTreeMap<String, String>,
) -> std::collections::HashMap<QueueAttributeName, String> {
    attributes
        .into_iter()
        .map(|(k, v)| (QueueAttributeName::from(k.as_str()), v))
        .collect()
}

#[async_trait]
impl Calls for QueueCalls {
    fn rights(&self) -> &'static crate::actions::Rights {
        &crate::actions::Rights {
            reads: &[
                "sqs:GetQueueUrl",
                "sqs:GetQueueAttributes",
                "sqs:ListQueueTags",
            ],
            changes: &[
                "sqs:CreateQueue",
                "sqs:SetQueueAttributes",
                "sqs:DeleteQueue",
            ],
            ..crate::actions::Rights::NONE
        }
    }

    fn check(&self, change: &Change) -> Result<()> {
        typed_call::<QueueCall>(change).map(drop)
    }

    async fn read(&self, clients: &RegionClients, resource_id: &str) -> Result<Value> {
        Ok(state_of(&read_queue(clients, resource_id).await?))
    }

    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        current: &Value,
    ) -> Result<Applied> {
        let sqs = &clients.sqs;
        let operation = change.call.operation.as_str();
        let request_id = match typed_call::<QueueCall>(change)? {
            QueueCall::CreateQueue(input) => sqs
                .create_queue()
                .queue_name(input.queue_name)
                .set_attributes(Some(attribute_map(input.attributes)))
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            QueueCall::SetQueueAttributes(input) => {
                // A queue the plan did not see created has its URL in the state read.
                let url = if input.queue_url == KNOWN_AFTER_APPLY {
                    current["url"].as_str().map(str::to_string).ok_or_else(|| {
                        Error::Verification {
                            resource: change.resource.id.clone(),
                            detail: "the queue has no URL: it does not exist".into(),
                        }
                    })?
                } else {
                    input.queue_url
                };
                sqs.set_queue_attributes()
                    .queue_url(url)
                    .set_attributes(Some(attribute_map(input.attributes)))
                    .send()
                    .await
                    .or_failure(operation)?
                    .request_id()
                    .map(str::to_string)
            }
            QueueCall::DeleteQueue(input) => delete_empty_queue(clients, change, input).await?,
        };
        Ok(Applied::request(request_id.as_deref()))
    }
}

/// The URL of the queue named `name`; `None` when SQS finds none.
async fn queue_url(clients: &RegionClients, name: &str) -> Result<Option<String>> {
    match clients.sqs.get_queue_url().queue_name(name).send().await {
        Ok(answer) => Ok(Some(answer.queue_url().unwrap_or_default().to_string())),
        Err(e) => {
            let failed = failure("GetQueueUrl", &e);
            // The JSON protocol's code, and the query protocol's older one.
            if failed.code == "QueueDoesNotExist"
                || failed.code == "AWS.SimpleQueueService.NonExistentQueue"
            {
                Ok(None)
            } else {
                Err(Error::Aws(failed))
            }
        }
    }
}

/// Reads the queue named `name`: `exists: false` when there is none.
pub async fn read_queue(clients: &RegionClients, name: &str) -> Result<Queue> {
    let sqs = &clients.sqs;
    let Some(url) = queue_url(clients, name).await? else {
        return Ok(Queue::missing(name));
    };
    let (attributes, tags) = tokio::try_join!(
        async {
            sqs.get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::All)
                .send()
                .await
                .or_failure("GetQueueAttributes")
        },
        async {
            sqs.list_queue_tags()
                .queue_url(&url)
                .send()
                .await
                .or_failure("ListQueueTags")
        }
    )?;
    let attributes = attributes.attributes().cloned().unwrap_or_default();
    let get = |name: QueueAttributeName| attributes.get(&name).cloned();
    let number = |name: QueueAttributeName| get(name).and_then(|v| v.parse::<i64>().ok());
    let json =
        |name: QueueAttributeName| get(name).and_then(|v| serde_json::from_str::<Value>(&v).ok());
    let redrive = json(QueueAttributeName::RedrivePolicy).and_then(|r| {
        let count = match &r["maxReceiveCount"] {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }?;
        Some(Redrive {
            dead_letter_target_arn: r["deadLetterTargetArn"].as_str()?.to_string(),
            max_receive_count: count,
        })
    });
    Ok(Queue {
        name: name.to_string(),
        exists: true,
        url: Some(url),
        arn: get(QueueAttributeName::QueueArn),
        sqs_managed_sse: get(QueueAttributeName::SqsManagedSseEnabled).as_deref() == Some("true"),
        kms_key_id: get(QueueAttributeName::KmsMasterKeyId).filter(|k| !k.is_empty()),
        visibility_timeout_seconds: number(QueueAttributeName::VisibilityTimeout),
        message_retention_seconds: number(QueueAttributeName::MessageRetentionPeriod),
        policy: json(QueueAttributeName::Policy),
        redrive,
        tags: tags
            .tags()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
    })
}

/// An SQS queue a runbook names: whether it exists, how it is encrypted, who may send
/// to it and where what it cannot deliver goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queue {
    /// Its name, which is also the id.
    pub name: String,
    /// False when no queue has the name.
    pub exists: bool,
    /// Its URL, once it exists.
    pub url: Option<String>,
    /// Its ARN, once it exists.
    pub arn: Option<String>,
    /// SQS-managed server-side encryption (SSE-SQS) is on.
    pub sqs_managed_sse: bool,
    /// The KMS key of SSE-KMS, when that is used instead.
    pub kms_key_id: Option<String>,
    /// Seconds a received message stays invisible before it is delivered again.
    pub visibility_timeout_seconds: Option<i64>,
    /// Seconds a message is kept.
    pub message_retention_seconds: Option<i64>,
    /// The access policy (parsed), when it has one.
    pub policy: Option<serde_json::Value>,
    /// Where messages received too often go.
    pub redrive: Option<Redrive>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Queue {
    /// A queue of this name that does not exist.
    pub fn missing(name: &str) -> Self {
        Queue {
            name: name.to_string(),
            exists: false,
            url: None,
            arn: None,
            sqs_managed_sse: false,
            kms_key_id: None,
            visibility_timeout_seconds: None,
            message_retention_seconds: None,
            policy: None,
            redrive: None,
            tags: BTreeMap::new(),
        }
    }
}

/// A queue's redrive policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redrive {
    /// The dead-letter queue's ARN.
    pub dead_letter_target_arn: String,
    /// Receives after which a message goes there.
    pub max_receive_count: i64,
}

impl Kind for Queue {
    const NAME: &'static str = "sqs:queue";
    const FILTERS: &'static [&'static str] =
        // Looked up by name, not listed: `name` is required.
        &["name"];
    const NARROWING: Narrowing = Narrowing::Named;
    const UNDONE_BY: &'static [KnownEvent] = &[
        KnownEvent::new("DeleteQueue", "sqs.amazonaws.com"),
        KnownEvent::new("SetQueueAttributes", "sqs.amazonaws.com"),
    ];

    fn sample() -> Self {
        Queue::missing("sample")
    }

    fn id(&self) -> &str {
        &self.name
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.tags)
    }

    /// Looks up each queue named.
    async fn discover(clients: &RegionClients, filters: &Filters) -> Result<Vec<Self>> {
        named(filters, "name", |name| read_queue(clients, name)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> Value {
        json!({
            "arn": "arn:aws:sqs:us-east-1:111111111111:events",
            "visibility_timeout_seconds": 120,
            "message_retention_seconds": 1209600,
            "dead_letter_arn": "arn:aws:sqs:us-east-1:111111111111:events-dlq",
            "allow_source_arns": ["arn:aws:events:us-east-1:111111111111:rule/events"]
        })
    }

    #[test]
    fn a_missing_queue_is_created_with_everything_in_one_call() {
        let planned = EnsureQueue
            .plan(&Resource::Queue(Queue::missing("events")), &args())
            .expect("plans");
        assert_eq!(planned.changes.len(), 1);
        let call = &planned.changes[0].call;
        assert_eq!(call.operation, "CreateQueue");
        let attributes = &call.input["Attributes"];
        assert_eq!(attributes["SqsManagedSseEnabled"], "true");
        assert_eq!(attributes["VisibilityTimeout"], "120");
        assert_eq!(attributes["MessageRetentionPeriod"], "1209600");
        let policy: Value =
            serde_json::from_str(attributes["Policy"].as_str().expect("a string")).expect("JSON");
        assert_eq!(
            policy["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"],
            "arn:aws:events:us-east-1:111111111111:rule/events"
        );
        assert_eq!(
            policy["Statement"][0]["Principal"]["Service"],
            "events.amazonaws.com"
        );
        let redrive: Value =
            serde_json::from_str(attributes["RedrivePolicy"].as_str().expect("a string"))
                .expect("JSON");
        assert_eq!(redrive["maxReceiveCount"], 5);
    }

    #[test]
    fn an_existing_queue_gets_only_what_differs_and_a_compliant_one_nothing() {
        let planned = EnsureQueue
            .plan(&Resource::Queue(Queue::missing("events")), &args())
            .expect("plans");
        let Some(Resource::Queue(mut made)) = planned.projected else {
            panic!("a projected queue");
        };
        made.url = Some("https://sqs.us-east-1.amazonaws.com/111111111111/events".into());
        let again = EnsureQueue
            .plan(&Resource::Queue(made.clone()), &args())
            .expect("plans");
        assert!(again.changes.is_empty(), "converges: {:?}", again.changes);
        made.visibility_timeout_seconds = Some(30);
        made.sqs_managed_sse = false;
        let drifted = EnsureQueue
            .plan(&Resource::Queue(made), &args())
            .expect("plans");
        let call = &drifted.changes[0].call;
        assert_eq!(call.operation, "SetQueueAttributes");
        assert_eq!(
            call.input["QueueUrl"],
            "https://sqs.us-east-1.amazonaws.com/111111111111/events"
        );
        let keys: Vec<&String> = call.input["Attributes"]
            .as_object()
            .expect("a map")
            .keys()
            .collect();
        assert_eq!(keys, ["SqsManagedSseEnabled", "VisibilityTimeout"]);
    }

    #[test]
    fn attributes_set_on_a_queue_that_was_there_are_set_back_exactly() {
        let planned = EnsureQueue
            .plan(&Resource::Queue(Queue::missing("events")), &args())
            .expect("plans");
        let Some(Resource::Queue(mut was)) = planned.projected else {
            panic!("a projected queue");
        };
        was.url = Some("https://sqs.us-east-1.amazonaws.com/111111111111/events".into());
        was.visibility_timeout_seconds = Some(30);
        was.sqs_managed_sse = false;
        was.policy = None;
        was.redrive = None;
        let drifted = EnsureQueue
            .plan(&Resource::Queue(was.clone()), &args())
            .expect("plans");
        let [change] = drifted.changes.as_slice() else {
            panic!("one change: {:?}", drifted.changes)
        };
        let inverse = EnsureQueue
            .inverse(&change.call, &change.before, &change.after)
            .expect("a way back");
        assert_eq!(inverse.operation, "SetQueueAttributes");
        assert!(!inverse.removes_created);
        assert_eq!(inverse.after, change.before);
        assert_eq!(
            inverse.input,
            json!({
                "QueueUrl": "https://sqs.us-east-1.amazonaws.com/111111111111/events",
                "Attributes": {
                    "Policy": "",
                    "RedrivePolicy": "",
                    "SqsManagedSseEnabled": "false",
                    "VisibilityTimeout": "30"
                }
            })
        );
        was.kms_key_id = Some("alias/theirs".into());
        let keyed = EnsureQueue
            .plan(&Resource::Queue(was), &args())
            .expect("plans");
        let inverse = EnsureQueue
            .inverse(
                &keyed.changes[0].call,
                &keyed.changes[0].before,
                &keyed.changes[0].after,
            )
            .expect("a way back");
        assert_eq!(
            inverse.input["Attributes"]["KmsMasterKeyId"],
            "alias/theirs"
        );
    }

    #[test]
    fn unknown_and_mistyped_arguments_are_refused() {
        let mut bad = args();
        bad["visiblity_timeout_seconds"] = json!(5);
        let message = EnsureQueue
            .plan(&Resource::Queue(Queue::missing("q")), &bad)
            .expect_err("unknown argument");
        assert!(message.contains("visiblity_timeout_seconds"), "{message}");
        let mut short = args();
        short["message_retention_seconds"] = json!(10);
        let message = EnsureQueue
            .plan(&Resource::Queue(Queue::missing("q")), &short)
            .expect_err("out of range");
        assert!(message.contains("60 to 1209600"), "{message}");
    }
}
