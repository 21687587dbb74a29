//! Events that say a resource may have changed: a CloudTrail record, or the EventBridge
//! event "AWS API Call via CloudTrail" wrapping one (what the alerting runbook's rule
//! puts on its queue). Parsed into typed fields where harden reads them; the record is
//! kept whole too, because the audit keeps the call exactly as AWS recorded it and a
//! trigger's path may reach any field of it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Problems, SourceLocation};

/// The EventBridge `source` of events from this `eventSource`: `aws.ec2` for
/// `ec2.amazonaws.com`.
pub fn bridge_source(event_source: &str) -> String {
    let service = event_source
        .strip_suffix(".amazonaws.com")
        .unwrap_or(event_source);
    format!("aws.{service}")
}

/// A CloudTrail event harden knows: its `eventName` and the `eventSource` of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownEvent {
    /// `eventName`, e.g. `AuthorizeSecurityGroupEgress`.
    pub name: &'static str,
    /// `eventSource`, e.g. `ec2.amazonaws.com`.
    pub source: &'static str,
}

impl KnownEvent {
    /// The event `name` of the API at `source`.
    pub const fn new(name: &'static str, source: &'static str) -> Self {
        Self { name, source }
    }
}

/// The largest event accepted: EventBridge's and SQS's limit on one event or message.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// EventBridge's detail type of CloudTrail management events.
pub const CLOUDTRAIL_DETAIL_TYPE: &str = "AWS API Call via CloudTrail";

/// The fields of a CloudTrail record harden reads (AWS's "CloudTrail record contents").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CloudTrailRecord {
    /// The API call, e.g. `AuthorizeSecurityGroupEgress`.
    pub event_name: String,
    /// The service, e.g. `ec2.amazonaws.com`.
    pub event_source: String,
    /// When the call was made.
    pub event_time: jiff::Timestamp,
    /// The region the call was made in.
    pub aws_region: String,
    /// CloudTrail's id of the record.
    #[serde(rename = "eventID")]
    pub event_id: String,
    /// The account the call acted in.
    #[serde(default)]
    pub recipient_account_id: Option<String>,
    /// Who made the call.
    pub user_identity: UserIdentity,
    /// Where the call came from.
    #[serde(rename = "sourceIPAddress", default)]
    pub source_ip_address: Option<String>,
    /// The caller's user agent.
    #[serde(default)]
    pub user_agent: Option<String>,
    /// Set when the call failed: then nothing changed.
    #[serde(default)]
    pub error_code: Option<String>,
}

/// `userIdentity` of a CloudTrail record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentity {
    /// `IAMUser`, `AssumedRole`, `Root`, `AWSService`, ...
    #[serde(rename = "type", default)]
    pub identity_type: Option<String>,
    /// The principal's ARN.
    #[serde(default)]
    pub arn: Option<String>,
    /// The principal's account.
    #[serde(default)]
    pub account_id: Option<String>,
    /// The access key used.
    #[serde(default)]
    pub access_key_id: Option<String>,
}

/// A CloudTrail event to respond to.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudTrailEvent {
    /// The EventBridge event id, when it came through EventBridge.
    pub bridge_id: Option<String>,
    /// The account it concerns (`recipientAccountId`, else the envelope's `account`).
    pub account_id: String,
    /// The typed fields.
    pub detail: CloudTrailRecord,
    /// The record exactly as received (EventBridge's `detail`).
    pub record: Value,
}

impl CloudTrailEvent {
    /// The region the call was made in.
    pub fn region(&self) -> &str {
        &self.detail.aws_region
    }

    /// What the audit records of the event: who did what, when, from where, and the
    /// call's parameters exactly as AWS recorded them.
    pub fn cause(&self) -> EventCause {
        let identity = &self.detail.user_identity;
        EventCause {
            event_id: self.detail.event_id.clone(),
            bridge_event_id: self.bridge_id.clone(),
            event_name: self.detail.event_name.clone(),
            event_source: self.detail.event_source.clone(),
            event_time: self.detail.event_time,
            account_id: self.account_id.clone(),
            region: self.detail.aws_region.clone(),
            actor_arn: identity.arn.clone(),
            actor_type: identity.identity_type.clone(),
            access_key_id: identity.access_key_id.clone(),
            source_ip_address: self.detail.source_ip_address.clone(),
            user_agent: self.detail.user_agent.clone(),
            request_parameters: self
                .record
                .get("requestParameters")
                .cloned()
                .unwrap_or(Value::Null),
        }
    }

    /// The event in one line, for logs: `AuthorizeSecurityGroupEgress by ARN in
    /// 111111111111 us-east-1 (event ID)`.
    pub fn summary(&self) -> String {
        format!(
            "{} by {} in {} {} (event {})",
            self.detail.event_name,
            self.detail
                .user_identity
                .arn
                .as_deref()
                .unwrap_or("an unknown principal"),
            self.account_id,
            self.detail.aws_region,
            self.detail.event_id
        )
    }
}

/// The event a change was made in response to, as its audit record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCause {
    /// CloudTrail's event id.
    pub event_id: String,
    /// EventBridge's id of the event that carried it, when it came through EventBridge
    /// (each delivery of one CloudTrail event through one rule has the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge_event_id: Option<String>,
    /// The API call.
    pub event_name: String,
    /// The service.
    pub event_source: String,
    /// When it was made.
    pub event_time: jiff::Timestamp,
    /// The account it acted in.
    pub account_id: String,
    /// The region.
    pub region: String,
    /// Who made it (`userIdentity.arn`).
    pub actor_arn: Option<String>,
    /// `userIdentity.type`.
    pub actor_type: Option<String>,
    /// The access key used.
    pub access_key_id: Option<String>,
    /// Where the call came from.
    pub source_ip_address: Option<String>,
    /// The caller's user agent.
    pub user_agent: Option<String>,
    /// The call's parameters exactly as CloudTrail recorded them (for an
    /// AuthorizeSecurityGroupEgress: the rule that was opened).
    pub request_parameters: Value,
}

impl EventCause {
    /// What the call did, in words: for the security-group calls the rules opened
    /// exactly as recorded, otherwise the call and what it named.
    pub fn what_was_done(&self) -> String {
        let params = &self.request_parameters;
        let group = params["groupId"].as_str().unwrap_or("a security group");
        let direction = match self.event_name.as_str() {
            "AuthorizeSecurityGroupEgress" => Some("outbound"),
            "AuthorizeSecurityGroupIngress" => Some("inbound"),
            _ => None,
        };
        match direction {
            Some(direction) => {
                let rules: Vec<String> = params["ipPermissions"]["items"]
                    .as_array()
                    .map(|items| items.iter().map(describe_permission).collect())
                    .unwrap_or_default();
                if rules.is_empty() {
                    format!("opened {direction} traffic of {group}")
                } else {
                    format!(
                        "opened {direction} traffic of {group}: {}",
                        rules.join("; ")
                    )
                }
            }
            None => {
                let mut shown = params.to_string();
                if shown.len() > 300 {
                    let cut = (0..=300)
                        .rev()
                        .find(|i| shown.is_char_boundary(*i))
                        .unwrap_or(0);
                    shown.truncate(cut);
                    shown.push_str("...");
                }
                format!("called {} with {shown}", self.event_name)
            }
        }
    }

    /// One readable paragraph for people: what was done, by whom, from where, and (in
    /// `outcome`) what harden did about it.
    pub fn notification(&self, outcome: &str) -> String {
        let who = self.actor_arn.as_deref().unwrap_or("an unknown principal");
        let kind = self
            .actor_type
            .as_deref()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default();
        let key = self
            .access_key_id
            .as_deref()
            .map(|k| format!(" with access key {k}"))
            .unwrap_or_default();
        let from = self
            .source_ip_address
            .as_deref()
            .map(|ip| format!(" from {ip}"))
            .unwrap_or_default();
        let agent = self
            .user_agent
            .as_deref()
            .map(|a| format!(" using {a}"))
            .unwrap_or_default();
        format!(
            "At {} {who}{kind}{key}{from}{agent} {} in account {}, {} (CloudTrail event {}). {outcome}",
            self.event_time,
            self.what_was_done(),
            self.account_id,
            self.region,
            self.event_id
        )
    }
}

/// One recorded IP permission as people write it: `all traffic to 0.0.0.0/0`.
fn describe_permission(permission: &Value) -> String {
    let protocol = match permission["ipProtocol"].as_str() {
        Some("-1") | None => "all traffic".to_string(),
        Some(p) => {
            let from = permission["fromPort"].as_i64();
            let to = permission["toPort"].as_i64();
            match (from, to) {
                (Some(f), Some(t)) if f == t => format!("{p} port {f}"),
                (Some(f), Some(t)) => format!("{p} ports {f}-{t}"),
                _ => p.to_string(),
            }
        }
    };
    let mut peers: Vec<String> = Vec::new();
    for (list, key) in [
        ("ipRanges", "cidrIp"),
        ("ipv6Ranges", "cidrIpv6"),
        ("prefixListIds", "prefixListId"),
        ("groups", "groupId"),
    ] {
        if let Some(items) = permission[list]["items"].as_array() {
            peers.extend(
                items
                    .iter()
                    .filter_map(|i| i[key].as_str().map(str::to_string)),
            );
        }
    }
    if peers.is_empty() {
        protocol
    } else {
        format!("{protocol} with {}", peers.join(", "))
    }
}

/// What a message or file held.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A CloudTrail API call.
    CloudTrail(Box<CloudTrailEvent>),
    /// A well-formed EventBridge event of another kind: nothing harden acts on.
    Other {
        /// Its `detail-type`.
        detail_type: String,
        /// Its `source`.
        source: String,
    },
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    detail: Value,
}

/// Parses one event (an EventBridge event or a bare CloudTrail record) from `bytes`;
/// `origin` names where it came from (a file, `<stdin>`, a queue message) in errors,
/// which say what was wrong and where: the line and column, or the field.
pub fn parse(bytes: &[u8], origin: &str) -> Result<Parsed, Error> {
    let fail = |line: usize, column: usize, message: String| {
        let mut problems = Problems::default();
        problems.push(
            Some(SourceLocation {
                file: PathBuf::from(origin),
                line: line as u64,
                column: column as u64,
            }),
            message,
        );
        Error::Invalid(problems)
    };
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(fail(
            0,
            0,
            format!(
                "{} bytes: an event is at most {MAX_EVENT_BYTES} bytes (EventBridge's limit)",
                bytes.len()
            ),
        ));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        fail(
            e.line(),
            e.column(),
            format!("not JSON: {e} (expected an EventBridge event or a CloudTrail record)"),
        )
    })?;
    let object = value.as_object().ok_or_else(|| {
        fail(
            0,
            0,
            "expected a JSON object (an EventBridge event or a CloudTrail record)".into(),
        )
    })?;
    let field_error = |prefix: &str, e: serde_path_to_error::Error<serde_json::Error>| {
        let path = e.path().to_string();
        let field = if path == "." || path.is_empty() {
            prefix.trim_end_matches('.').to_string()
        } else {
            format!("{prefix}{path}")
        };
        fail(0, 0, format!("{field}: {}", e.into_inner()))
    };
    let wrapped = object.contains_key("detail-type");
    let (bridge_id, envelope_account, record) = if wrapped {
        let envelope: Envelope =
            serde_path_to_error::deserialize(&value).map_err(|e| field_error("", e))?;
        if envelope.detail_type != CLOUDTRAIL_DETAIL_TYPE {
            return Ok(Parsed::Other {
                detail_type: envelope.detail_type,
                source: envelope.source,
            });
        }
        (envelope.id, envelope.account, envelope.detail)
    } else if object.contains_key("eventName") {
        (None, None, value)
    } else {
        return Err(fail(
            0,
            0,
            "neither an EventBridge event (no detail-type) nor a CloudTrail record (no eventName)"
                .into(),
        ));
    };
    let prefix = if wrapped { "detail." } else { "" };
    let detail: CloudTrailRecord =
        serde_path_to_error::deserialize(&record).map_err(|e| field_error(prefix, e))?;
    let account_id = detail
        .recipient_account_id
        .clone()
        .or(envelope_account)
        .ok_or_else(|| {
            fail(
                0,
                0,
                format!("{prefix}recipientAccountId: missing, and no account in the envelope"),
            )
        })?;
    if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail(
            0,
            0,
            format!("account \"{account_id}\": expected 12 digits"),
        ));
    }
    Ok(Parsed::CloudTrail(Box::new(CloudTrailEvent {
        bridge_id,
        account_id,
        detail,
        record,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record() -> Value {
        json!({
            "eventVersion": "1.08",
            "userIdentity": {
                "type": "IAMUser",
                "principalId": "AIDAEXAMPLE",
                "arn": "arn:aws:iam::111111111111:user/mallory",
                "accountId": "111111111111",
                "accessKeyId": "AKIAEXAMPLE",
                "userName": "mallory"
            },
            "eventTime": "2026-12-01T10:00:00Z",
            "eventSource": "ec2.amazonaws.com",
            "eventName": "AuthorizeSecurityGroupEgress",
            "awsRegion": "us-east-1",
            "sourceIPAddress": "203.0.113.7",
            "userAgent": "aws-cli/2.15.0",
            "requestParameters": {"groupId": "sg-1", "ipPermissions": {"items": []}},
            "responseElements": {"_return": true},
            "requestID": "req-1",
            "eventID": "ev-1",
            "eventType": "AwsApiCall",
            "recipientAccountId": "111111111111"
        })
    }

    fn parsed(value: &Value) -> Result<Parsed, Error> {
        parse(value.to_string().as_bytes(), "event.json")
    }

    #[test]
    fn bridge_sources_follow_the_event_source() {
        assert_eq!(bridge_source("ec2.amazonaws.com"), "aws.ec2");
        assert_eq!(bridge_source("cloudtrail.amazonaws.com"), "aws.cloudtrail");
    }

    #[test]
    fn a_bare_record_and_its_eventbridge_envelope_read_the_same() {
        let bare = parsed(&record()).expect("a record");
        let wrapped = parsed(&json!({
            "version": "0", "id": "eb-1", "detail-type": CLOUDTRAIL_DETAIL_TYPE,
            "source": "aws.ec2", "account": "111111111111", "time": "2026-12-01T10:00:01Z",
            "region": "us-east-1", "resources": [], "detail": record()
        }))
        .expect("an envelope");
        let (Parsed::CloudTrail(bare), Parsed::CloudTrail(wrapped)) = (bare, wrapped) else {
            panic!("both are CloudTrail events");
        };
        assert_eq!(bare.detail, wrapped.detail);
        assert_eq!(wrapped.bridge_id.as_deref(), Some("eb-1"));
        assert_eq!(wrapped.cause().bridge_event_id.as_deref(), Some("eb-1"));
        let cause = wrapped.cause();
        assert_eq!(
            cause.actor_arn.as_deref(),
            Some("arn:aws:iam::111111111111:user/mallory")
        );
        assert_eq!(cause.source_ip_address.as_deref(), Some("203.0.113.7"));
        assert_eq!(cause.request_parameters["groupId"], "sg-1");
    }

    #[test]
    fn the_notification_says_what_was_opened_by_whom_and_from_where() {
        let mut opened = record();
        opened["requestParameters"] = json!({"groupId": "sg-1", "ipPermissions": {"items": [
            {"ipProtocol": "-1", "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]}},
            {"ipProtocol": "tcp", "fromPort": 22, "toPort": 22, "ipv6Ranges": {"items": [{"cidrIpv6": "::/0"}]}}
        ]}});
        let Parsed::CloudTrail(event) = parsed(&opened).expect("parses") else {
            panic!("a CloudTrail event");
        };
        assert_eq!(
            event.cause().notification("harden replaced it."),
            "At 2026-12-01T10:00:00Z arn:aws:iam::111111111111:user/mallory (IAMUser) with access key AKIAEXAMPLE from 203.0.113.7 using aws-cli/2.15.0 opened outbound traffic of sg-1: all traffic with 0.0.0.0/0; tcp port 22 with ::/0 in account 111111111111, us-east-1 (CloudTrail event ev-1). harden replaced it."
        );
    }

    #[test]
    fn other_eventbridge_events_are_not_errors() {
        let other = parsed(&json!({
            "detail-type": "EC2 Instance State-change Notification",
            "source": "aws.ec2", "detail": {"state": "running"}
        }))
        .expect("well formed");
        assert!(matches!(other, Parsed::Other { .. }));
    }

    #[test]
    fn malformed_events_name_what_is_wrong() {
        let text = |e: Error| e.to_string();
        let cut = parse(br#"{"eventName": "Auth"#, "cut.json").expect_err("truncated");
        assert!(text(cut).starts_with("cut.json:1:"), "line and column");
        let mut no_time = record();
        no_time["eventTime"] = json!("yesterday");
        let message = text(parsed(&no_time).expect_err("bad time"));
        assert!(message.contains("eventTime"), "{message}");
        let mut wrapped =
            json!({"detail-type": CLOUDTRAIL_DETAIL_TYPE, "source": "aws.ec2", "detail": record()});
        wrapped["detail"]["userIdentity"] = json!("someone");
        let message = text(parsed(&wrapped).expect_err("bad identity"));
        assert!(message.contains("detail.userIdentity"), "{message}");
        let mut no_account = record();
        no_account
            .as_object_mut()
            .expect("object")
            .remove("recipientAccountId");
        let message = text(parsed(&no_account).expect_err("no account"));
        assert!(message.contains("recipientAccountId"), "{message}");
        let message = text(parse(b"[1]", "list.json").expect_err("not an object"));
        assert!(message.contains("expected a JSON object"), "{message}");
        let big = vec![b' '; MAX_EVENT_BYTES + 1];
        let message = text(parse(&big, "big.json").expect_err("too big"));
        assert!(message.contains("at most"), "{message}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Truncated, corrupted or re-typed events are refused with a message, never a
        /// panic; what still parses names an account of 12 digits.
        #[test]
        fn mutated_events_never_panic(
            cut in 0usize..2000,
            flips in proptest::collection::vec((0usize..2000, proptest::prelude::any::<u8>()), 0..4),
            field in 0usize..12,
            replacement in proptest::prop_oneof![
                proptest::prelude::Just(Value::Null),
                proptest::prelude::Just(json!(7)),
                proptest::prelude::Just(json!([])),
                proptest::prelude::Just(json!({"items": "x"})),
                proptest::prelude::Just(json!("\u{0}\u{ffff}")),
            ],
        ) {
            let mut event = json!({"detail-type": CLOUDTRAIL_DETAIL_TYPE, "source": "aws.ec2", "detail": record()});
            let keys: Vec<String> = event["detail"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
            if let Some(key) = keys.get(field % keys.len().max(1)) {
                event["detail"][key] = replacement;
            }
            let mut bytes = event.to_string().into_bytes();
            for (at, byte) in flips {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] = byte;
                }
            }
            bytes.truncate(cut.min(bytes.len()));
            match parse(&bytes, "mutated.json") {
                Ok(Parsed::CloudTrail(parsed)) => {
                    proptest::prop_assert_eq!(parsed.account_id.len(), 12);
                    let _ = parsed.cause().notification("done");
                }
                Ok(Parsed::Other { .. }) => {}
                Err(e) => proptest::prop_assert!(e.to_string().starts_with("mutated.json")),
            }
        }
    }
}
