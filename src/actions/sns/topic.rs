//! `sns:ensure-topic`: a topic encrypted with a KMS key (by default AWS's own
//! `alias/aws/sns`) with an email subscription for each address given. SNS has no
//! dry-run. An email subscription stays pending until its owner confirms it; harden
//! counts a pending one as made (it cannot confirm on the owner's behalf).

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_sns::operation::RequestId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::actions::{
    Action, ActionInfo, ActionPlan, Applied, ArgSpec, Calls, DraftChain, Inverse, Resource,
    ResourceKind, arguments_of, call_input, state_of, typed_args, typed_call,
};
use crate::aws::{Answer, RegionClients};
use crate::error::Result;
use crate::inventory::{Filters, Kind, Narrowing, named};
use crate::plan::{ApiCall, Change, ChangeKind};

/// The arguments of `sns:ensure-topic`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TopicArgs {
    /// The topic's ARN (known before it exists: arn:PARTITION:sns:REGION:ACCOUNT:NAME).
    pub arn: String,
    /// The KMS key it is encrypted with.
    #[serde(default = "default_key")]
    pub kms_key_id: String,
    /// Email addresses to subscribe.
    #[serde(default)]
    pub emails: Vec<String>,
}

fn default_key() -> String {
    "alias/aws/sns".into()
}

/// Every call of this concern, as a plan stores it (the service's field names).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
enum TopicCall {
    CreateTopic(CreateTopicInput),
    SetTopicAttributes(SetTopicAttributesInput),
    Subscribe(SubscribeInput),
    DeleteTopic(DeleteTopicInput),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CreateTopicInput {
    name: String,
    attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SetTopicAttributesInput {
    topic_arn: String,
    attribute_name: String,
    attribute_value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SubscribeInput {
    topic_arn: String,
    protocol: String,
    endpoint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct DeleteTopicInput {
    topic_arn: String,
}

/// Creates or corrects the topic and its email subscriptions.
pub struct EnsureTopic;

static ENSURE: ActionInfo = ActionInfo {
    name: "sns:ensure-topic",
    description: "create the topic when missing (CreateTopic), encrypted with kms_key_id (SetTopicAttributes), and subscribe each of emails (Subscribe; the owner confirms)",
    resource_kind: ResourceKind::Topic,
    outputs: &[],
    waits: false,
};

impl Action for EnsureTopic {
    fn arguments(&self) -> Vec<ArgSpec> {
        arguments_of::<TopicArgs>()
    }

    fn info(&self) -> &'static ActionInfo {
        &ENSURE
    }

    fn plan(&self, target: &Resource, args: &Value) -> std::result::Result<ActionPlan, String> {
        let Resource::Topic(topic) = target else {
            return Err(format!("expected an SNS topic, given {}", target.kind()));
        };
        let args: TopicArgs = typed_args(args)?;
        let name = topic.name.clone();
        let mut current = topic.clone();
        let mut chain = DraftChain::new("sns", state_of(&current));
        if !topic.exists {
            current.exists = true;
            current.arn = Some(args.arn.clone());
            current.kms_key_id = Some(args.kms_key_id.clone());
            chain.push(
                ChangeKind::Create,
                format!(
                    "create the topic {name}, encrypted with {}",
                    args.kms_key_id
                ),
                state_of(&current),
                "CreateTopic",
                call_input(CreateTopicInput {
                    name: name.clone(),
                    attributes: BTreeMap::from([(
                        "KmsMasterKeyId".to_string(),
                        args.kms_key_id.clone(),
                    )]),
                })?,
            );
        } else if topic.kms_key_id.as_deref() != Some(args.kms_key_id.as_str()) {
            current.kms_key_id = Some(args.kms_key_id.clone());
            chain.push(
                ChangeKind::Update,
                format!("encrypt the topic {name} with {}", args.kms_key_id),
                state_of(&current),
                "SetTopicAttributes",
                call_input(SetTopicAttributesInput {
                    topic_arn: args.arn.clone(),
                    attribute_name: "KmsMasterKeyId".into(),
                    attribute_value: args.kms_key_id.clone(),
                })?,
            );
        }
        for email in &args.emails {
            if current.email_subscriptions.contains(email) {
                continue;
            }
            current.email_subscriptions.push(email.clone());
            current.email_subscriptions.sort();
            chain.push(
                ChangeKind::Create,
                format!("subscribe {email} to {name} (they confirm by email)"),
                state_of(&current),
                "Subscribe",
                call_input(SubscribeInput {
                    topic_arn: args.arn.clone(),
                    protocol: "email".into(),
                    endpoint: email.clone(),
                })?,
            );
        }
        Ok(chain.into_plan(Resource::Topic(current)))
    }

    fn calls(&self) -> &'static dyn Calls {
        &TopicCalls
    }

    /// A topic the run created is deleted, and its subscriptions with it; a key the
    /// run gave a topic that existed is set back (or taken off). An email subscription
    /// the run added to a topic that existed is not undone: until the person confirms
    /// it, it has no ARN to unsubscribe (SNS drops an unconfirmed one after three days).
    fn inverse(
        &self,
        call: &ApiCall,
        before: &Value,
        after: &Value,
    ) -> std::result::Result<Inverse, String> {
        let was: Topic = crate::actions::recorded(before, "topic")?;
        let what = format!("topic {}", was.name);
        if call.operation == "SetTopicAttributes" && was.exists {
            let set: SetTopicAttributesInput = serde_json::from_value(call.input.clone())
                .map_err(|e| format!("the SetTopicAttributes recorded does not parse: {e}"))?;
            if set.attribute_name != "KmsMasterKeyId" {
                return Err(format!(
                    "no way back for the topic attribute {}",
                    set.attribute_name
                ));
            }
            let summary = match &was.kms_key_id {
                Some(key) => format!("encrypt the {what} with {key} again"),
                None => format!("take the key off the {what} again, as before the run"),
            };
            return Ok(Inverse::restoring(
                before,
                summary,
                "SetTopicAttributes",
                call_input(SetTopicAttributesInput {
                    topic_arn: set.topic_arn,
                    attribute_name: set.attribute_name,
                    attribute_value: was.kms_key_id.clone().unwrap_or_default(),
                })?,
            ));
        }
        if call.operation == "Subscribe" && was.exists {
            return Err(format!(
                "Subscribe of an address to the {what}, which existed, is not undone: until the person confirms it the subscription has no ARN to unsubscribe (SNS drops it unconfirmed after three days)"
            ));
        }
        let made: Topic = crate::actions::recorded(after, "topic")?;
        let arn = crate::actions::created_id(call, "CreateTopic", was.exists, made.arn, &what)?;
        Ok(Inverse::deleting_created(
            before,
            format!("delete the {what}, which the run created, and its subscriptions"),
            "DeleteTopic",
            call_input(DeleteTopicInput { topic_arn: arn })?,
        ))
    }
}

/// Reads and applies topic changes.
pub struct TopicCalls;

#[async_trait]
impl Calls for TopicCalls {
    fn rights(&self) -> &'static crate::actions::Rights {
        &crate::actions::Rights {
            reads: &[
                "sns:ListTopics",
                "sns:GetTopicAttributes",
                "sns:ListSubscriptionsByTopic",
                "sns:ListTagsForResource",
            ],
            changes: &[
                "sns:CreateTopic",
                "sns:SetTopicAttributes",
                "sns:Subscribe",
                "sns:DeleteTopic",
            ],
            ..crate::actions::Rights::NONE
        }
    }

    fn check(&self, change: &Change) -> Result<()> {
        typed_call::<TopicCall>(change).map(drop)
    }

    async fn read(&self, clients: &RegionClients, resource_id: &str) -> Result<Value> {
        Ok(state_of(&read_topic(clients, resource_id).await?))
    }

    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        _current: &Value,
    ) -> Result<Applied> {
        let sns = &clients.sns;
        let operation = change.call.operation.as_str();
        let request_id = match typed_call::<TopicCall>(change)? {
            TopicCall::CreateTopic(input) => sns
                .create_topic()
                .name(input.name)
                .set_attributes(Some(input.attributes.into_iter().collect()))
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            TopicCall::SetTopicAttributes(input) => sns
                .set_topic_attributes()
                .topic_arn(input.topic_arn)
                .attribute_name(input.attribute_name)
                .attribute_value(input.attribute_value)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            TopicCall::Subscribe(input) => sns
                .subscribe()
                .topic_arn(input.topic_arn)
                .protocol(input.protocol)
                .endpoint(input.endpoint)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            TopicCall::DeleteTopic(input) => sns
                .delete_topic()
                .topic_arn(input.topic_arn)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
        };
        Ok(Applied::request(request_id.as_deref()))
    }
}

/// Reads the topic named `name` (SNS finds topics by ARN only, so the region's topics
/// are listed, 100 a page): `exists: false` when there is none.
pub async fn read_topic(clients: &RegionClients, name: &str) -> Result<Topic> {
    let sns = &clients.sns;
    let suffix = format!(":{name}");
    let mut pages = sns.list_topics().into_paginator().send();
    let mut arn = None;
    while let Some(page) = pages.next().await {
        let page = page.or_failure("ListTopics")?;
        if let Some(found) = page
            .topics()
            .iter()
            .filter_map(|t| t.topic_arn())
            .find(|a| a.ends_with(&suffix))
        {
            arn = Some(found.to_string());
            break;
        }
    }
    let Some(arn) = arn else {
        return Ok(Topic::missing(name));
    };
    let attributes = sns
        .get_topic_attributes()
        .topic_arn(&arn)
        .send()
        .await
        .or_failure("GetTopicAttributes")?;
    let mut emails = Vec::new();
    let mut subscriptions = sns
        .list_subscriptions_by_topic()
        .topic_arn(&arn)
        .into_paginator()
        .send();
    while let Some(page) = subscriptions.next().await {
        let page = page.or_failure("ListSubscriptionsByTopic")?;
        emails.extend(
            page.subscriptions()
                .iter()
                .filter(|s| s.protocol() == Some("email"))
                .filter_map(|s| s.endpoint().map(str::to_string)),
        );
    }
    emails.sort();
    emails.dedup();
    let tags = sns
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .or_failure("ListTagsForResource")?
        .tags()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    Ok(Topic {
        name: name.to_string(),
        exists: true,
        kms_key_id: attributes
            .attributes()
            .and_then(|a| a.get("KmsMasterKeyId"))
            .filter(|k| !k.is_empty())
            .cloned(),
        arn: Some(arn),
        email_subscriptions: emails,
        tags,
    })
}

/// Publishes a notification to `topic_arn`; returns the message id.
pub async fn publish(
    clients: &RegionClients,
    topic_arn: &str,
    subject: &str,
    message: &str,
) -> Result<String> {
    // SNS subjects are at most 100 characters, ASCII, one line.
    let subject: String = subject
        .chars()
        .filter(|c| c.is_ascii() && !c.is_control())
        .take(100)
        .collect();
    let answer = clients
        .sns
        .publish()
        .topic_arn(topic_arn)
        .subject(subject)
        .message(message)
        .send()
        .await
        .or_failure("Publish")?;
    Ok(answer.message_id().unwrap_or_default().to_string())
}

/// An SNS topic a runbook names, for people to be told of events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    /// Its name, which is also the id.
    pub name: String,
    /// False when no topic has the name.
    pub exists: bool,
    /// Its ARN, once it exists.
    pub arn: Option<String>,
    /// The KMS key it is encrypted with.
    pub kms_key_id: Option<String>,
    /// The email addresses subscribed (confirmed or pending).
    pub email_subscriptions: Vec<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Topic {
    /// A topic of this name that does not exist.
    pub fn missing(name: &str) -> Self {
        Topic {
            name: name.to_string(),
            exists: false,
            arn: None,
            kms_key_id: None,
            email_subscriptions: Vec::new(),
            tags: BTreeMap::new(),
        }
    }
}

impl Kind for Topic {
    const NAME: &'static str = "sns:topic";
    const FILTERS: &'static [&'static str] =
        // Looked up by name, not listed: `name` is required.
        &["name"];
    const NARROWING: Narrowing = Narrowing::Named;

    fn sample() -> Self {
        Topic::missing("sample")
    }

    fn id(&self) -> &str {
        &self.name
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.tags)
    }

    /// Looks up each topic named.
    async fn discover(clients: &RegionClients, filters: &Filters) -> Result<Vec<Self>> {
        named(filters, "name", |name| read_topic(clients, name)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_missing_topic_is_created_encrypted_and_subscribed() {
        let planned = EnsureTopic
            .plan(
                &Resource::Topic(Topic::missing("alerts")),
                &json!({
                    "arn": "arn:aws:sns:us-east-1:111111111111:alerts",
                    "emails": ["oncall@example.com"]
                }),
            )
            .expect("plans");
        let operations: Vec<&str> = planned
            .changes
            .iter()
            .map(|c| c.call.operation.as_str())
            .collect();
        assert_eq!(operations, ["CreateTopic", "Subscribe"]);
        assert_eq!(
            planned.changes[0].call.input["Attributes"]["KmsMasterKeyId"],
            "alias/aws/sns"
        );
        let Some(Resource::Topic(made)) = planned.projected else {
            panic!("a projected topic");
        };
        let again = EnsureTopic
            .plan(
                &Resource::Topic(made),
                &json!({
                    "arn": "arn:aws:sns:us-east-1:111111111111:alerts",
                    "emails": ["oncall@example.com"]
                }),
            )
            .expect("plans");
        assert!(again.changes.is_empty());
    }

    #[test]
    fn a_key_given_to_a_topic_that_was_there_is_taken_off_again_and_a_subscription_is_refused() {
        let mut was = Topic::missing("alerts");
        was.exists = true;
        was.arn = Some("arn:aws:sns:us-east-1:111111111111:alerts".into());
        let planned = EnsureTopic
            .plan(
                &Resource::Topic(was),
                &json!({
                    "arn": "arn:aws:sns:us-east-1:111111111111:alerts",
                    "emails": ["oncall@example.com"]
                }),
            )
            .expect("plans");
        let [keyed, subscribed] = planned.changes.as_slice() else {
            panic!("two changes: {:?}", planned.changes)
        };
        let inverse = EnsureTopic
            .inverse(&keyed.call, &keyed.before, &keyed.after)
            .expect("a way back");
        assert_eq!(inverse.operation, "SetTopicAttributes");
        assert_eq!(
            inverse.input,
            json!({
                "TopicArn": "arn:aws:sns:us-east-1:111111111111:alerts",
                "AttributeName": "KmsMasterKeyId",
                "AttributeValue": ""
            })
        );
        assert_eq!(inverse.after, keyed.before);
        let refused = EnsureTopic
            .inverse(&subscribed.call, &subscribed.before, &subscribed.after)
            .expect_err("no way back for a pending subscription");
        assert!(refused.contains("Subscribe"), "{refused}");
    }
}
