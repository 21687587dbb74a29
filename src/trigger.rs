//! Triggers: the CloudTrail events a runbook declares can undo its work, where each
//! names the resource, and the matching of one event against them. A match narrows
//! planning to the resources the event names ([`Focus`]); the live state read then
//! decides whether anything is to be done: the event is only a hint.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::event::{CloudTrailEvent, KnownEvent};
use crate::runbook::LoadedRunbook;

/// The events a trigger may name: the write calls that can undo what harden holds a
/// resource to, as each kind declares them ([`crate::inventory::Kind::UNDONE_BY`]). A
/// runbook naming another event is refused at validation, so a typo cannot leave an
/// event unwatched.
pub fn known_events() -> Vec<KnownEvent> {
    let mut events: Vec<KnownEvent> = Vec::new();
    for kind in crate::inventory::ResourceKind::ALL {
        for event in kind.undone_by() {
            if !events.contains(event) {
                events.push(*event);
            }
        }
    }
    events
}

/// The known event of this name.
pub fn known_event(name: &str) -> Option<KnownEvent> {
    known_events().into_iter().find(|e| e.name == name)
}

/// Where in an EventBridge event a trigger finds resource ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPath {
    /// The keys after `detail`, e.g. `["requestParameters", "groupId"]`.
    keys: Vec<String>,
}

impl EventPath {
    /// Parses `detail.requestParameters.KEY...` or `detail.responseElements.KEY...`;
    /// the error says what was expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = text.split('.');
        let first = parts.next();
        let second = parts.next();
        let rest: Vec<&str> = parts.collect();
        let valid_key = |k: &&str| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        };
        match (first, second) {
            (Some("detail"), Some(part @ ("requestParameters" | "responseElements")))
                if !rest.is_empty() && rest.iter().all(valid_key) =>
            {
                let mut keys = vec![part.to_string()];
                keys.extend(rest.iter().map(|k| k.to_string()));
                Ok(EventPath { keys })
            }
            _ => Err(format!(
                "resource_id \"{text}\": expected detail.requestParameters.KEY... or detail.responseElements.KEY... (keys of letters, digits, _ and -)"
            )),
        }
    }

    /// Every string the path reaches in a CloudTrail record; a list met on the way is
    /// searched element by element, so `...ipPermissions.items.groupId` finds each.
    pub fn values(&self, record: &Value) -> Vec<String> {
        let mut found = Vec::new();
        collect(record, &self.keys, &mut found);
        found.sort();
        found.dedup();
        found
    }
}

fn collect(value: &Value, keys: &[String], found: &mut Vec<String>) {
    match value {
        Value::Array(items) => items.iter().for_each(|i| collect(i, keys, found)),
        _ => match keys.split_first() {
            None => {
                if let Value::String(s) = value {
                    found.push(s.clone());
                }
            }
            Some((key, rest)) => {
                if let Some(inner) = value.get(key) {
                    collect(inner, rest, found);
                }
            }
        },
    }
}

/// What one event narrows a runbook's discovery to, by `discover` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Narrowed {
    /// Only these resource ids.
    Ids(BTreeSet<String>),
    /// Every resource of the entry in the region.
    Whole,
}

/// The runbooks an event concerns and, for each, the discover entries it narrows.
/// Runbooks absent from it are not planned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Focus {
    /// Runbook id to discover entry to what it is narrowed to.
    pub runbooks: BTreeMap<String, BTreeMap<String, Narrowed>>,
}

impl Focus {
    /// Whether no runbook matches.
    pub fn is_empty(&self) -> bool {
        self.runbooks.is_empty()
    }

    /// What the entry `name` of `runbook` is narrowed to, if the runbook is in focus:
    /// `None` for an entry no matching trigger names.
    pub fn entry(&self, runbook: &str, name: &str) -> Option<&Narrowed> {
        self.runbooks.get(runbook).and_then(|e| e.get(name))
    }

    /// Whether `runbook` is planned at all.
    pub fn includes(&self, runbook: &str) -> bool {
        self.runbooks.contains_key(runbook)
    }
}

/// Which runbooks `event` concerns and what it narrows each to. A trigger whose path
/// finds no id in the event does not match (the event names nothing it can act on).
/// A failed call (`errorCode` set) changed nothing and matches no runbook.
pub fn focus(runbooks: &[LoadedRunbook], event: &CloudTrailEvent) -> Focus {
    let mut focus = Focus::default();
    if event.detail.error_code.is_some() {
        return focus;
    }
    for runbook in runbooks {
        for trigger in &runbook.runbook.triggers {
            if trigger.event.value != event.detail.event_name {
                continue;
            }
            let source_matches = known_event(&trigger.event.value)
                .is_some_and(|k| k.source == event.detail.event_source);
            if !source_matches {
                continue;
            }
            let narrowed = match &trigger.resource_id {
                None => Narrowed::Whole,
                Some(path) => {
                    // Validation checked the path; a bad one cannot reach here.
                    let Ok(path) = EventPath::parse(&path.value) else {
                        continue;
                    };
                    let ids = path.values(&event.record);
                    if ids.is_empty() {
                        continue;
                    }
                    Narrowed::Ids(ids.into_iter().collect())
                }
            };
            let entries = focus.runbooks.entry(runbook.id().to_string()).or_default();
            let merged = match (entries.remove(&trigger.discover.value), narrowed) {
                (Some(Narrowed::Whole), _) | (_, Narrowed::Whole) => Narrowed::Whole,
                (Some(Narrowed::Ids(mut a)), Narrowed::Ids(b)) => {
                    a.extend(b);
                    Narrowed::Ids(a)
                }
                (None, ids) => ids,
            };
            entries.insert(trigger.discover.value.clone(), merged);
        }
    }
    focus
}

/// Every event the runbooks' triggers name, once each, sorted: what the alerting
/// runbook's rule listens for.
pub fn events_of(runbooks: &[LoadedRunbook]) -> Vec<KnownEvent> {
    let names: BTreeSet<&str> = runbooks
        .iter()
        .flat_map(|r| r.runbook.triggers.iter().map(|t| t.event.value.as_str()))
        .collect();
    names.into_iter().filter_map(known_event).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_must_start_in_the_request_or_the_response() {
        assert!(EventPath::parse("detail.requestParameters.groupId").is_ok());
        assert!(EventPath::parse("detail.responseElements.vpc.vpcId").is_ok());
        for bad in [
            "requestParameters.groupId",
            "detail.userIdentity.arn",
            "detail.requestParameters",
            "detail.requestParameters..groupId",
            "detail.requestParameters.group Id",
        ] {
            let message = EventPath::parse(bad).expect_err(bad);
            assert!(
                message.contains("expected detail.requestParameters"),
                "{message}"
            );
        }
    }

    #[test]
    fn paths_search_lists_element_by_element() {
        let record = json!({
            "requestParameters": {
                "groupId": "sg-1",
                "ipPermissions": {"items": [
                    {"groups": {"items": [{"groupId": "sg-2"}]}},
                    {"groups": {"items": [{"groupId": "sg-3"}, {"groupId": "sg-2"}]}}
                ]}
            }
        });
        let direct = EventPath::parse("detail.requestParameters.groupId").expect("valid");
        assert_eq!(direct.values(&record), vec!["sg-1"]);
        let nested =
            EventPath::parse("detail.requestParameters.ipPermissions.items.groups.items.groupId")
                .expect("valid");
        assert_eq!(nested.values(&record), vec!["sg-2", "sg-3"]);
        let missing = EventPath::parse("detail.responseElements.groupId").expect("valid");
        assert!(missing.values(&record).is_empty());
    }

    fn shipped() -> Vec<LoadedRunbook> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
        crate::validate::validate(crate::runbook::load_paths(&[dir]).expect("loads"))
            .expect("the shipped runbooks are valid")
    }

    fn event(name: &str, source: &str, request: Value, response: Value) -> CloudTrailEvent {
        let record = json!({
            "eventName": name, "eventSource": source, "eventTime": "2026-12-01T10:00:00Z",
            "awsRegion": "us-east-1", "eventID": "ev", "recipientAccountId": "111111111111",
            "userIdentity": {"type": "Root"},
            "requestParameters": request, "responseElements": response
        });
        match crate::event::parse(record.to_string().as_bytes(), "t").expect("parses") {
            crate::event::Parsed::CloudTrail(event) => *event,
            other => panic!("not a CloudTrail event: {other:?}"),
        }
    }

    fn ids(list: &[&str]) -> Narrowed {
        Narrowed::Ids(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn an_opened_egress_narrows_both_security_group_runbooks_to_the_group() {
        let runbooks = shipped();
        let opened = event(
            "AuthorizeSecurityGroupEgress",
            "ec2.amazonaws.com",
            json!({"groupId": "sg-1", "ipPermissions": {"items": []}}),
            json!({"_return": true}),
        );
        let found = focus(&runbooks, &opened);
        assert_eq!(
            found.runbooks,
            BTreeMap::from([
                (
                    "close-default-security-groups".to_string(),
                    BTreeMap::from([("default_groups".to_string(), ids(&["sg-1"]))])
                ),
                (
                    "restrict-sg-egress".to_string(),
                    BTreeMap::from([("groups".to_string(), ids(&["sg-1"]))])
                ),
            ])
        );
        let mut failed = opened.clone();
        failed.detail.error_code = Some("UnauthorizedOperation".into());
        assert!(
            focus(&runbooks, &failed).is_empty(),
            "a failed call changed nothing"
        );
        let mut elsewhere = opened;
        elsewhere.detail.event_source = "cloudtrail.amazonaws.com".into();
        assert!(
            focus(&runbooks, &elsewhere).is_empty(),
            "the source must match too"
        );
    }

    #[test]
    fn a_new_vpc_concerns_its_flow_logs_and_every_default_group() {
        let found = focus(
            &shipped(),
            &event(
                "CreateVpc",
                "ec2.amazonaws.com",
                json!({"cidrBlock": "10.0.0.0/16"}),
                json!({"vpc": {"vpcId": "vpc-9"}}),
            ),
        );
        assert_eq!(
            found.entry("enable-vpc-flow-logs", "vpcs"),
            Some(&ids(&["vpc-9"]))
        );
        assert_eq!(
            found.entry("close-default-security-groups", "default_groups"),
            Some(&Narrowed::Whole)
        );
        assert!(!found.includes("restrict-sg-egress"));
    }

    #[test]
    fn every_known_event_is_a_trigger_of_a_shipped_runbook() {
        let shipped: Vec<&str> = events_of(&shipped()).iter().map(|e| e.name).collect();
        let known: Vec<&str> = known_events()
            .iter()
            .map(|e| e.name)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(
            shipped, known,
            "the rule of the alerting runbook alone listens for what the runbooks undo"
        );
    }
}
