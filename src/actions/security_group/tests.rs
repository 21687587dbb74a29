//! Pure tests of the concern: exact plans, inverses and saved calls.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::actions::{Action, ActionPlan, Resource, state_of};
use crate::plan::{ApiCall, BlockReason};
use crate::template::KNOWN_AFTER_APPLY;

use proptest::prelude::*;

use super::calls::{permission_input, rule_request_input};
use super::kind::{SecurityGroup, SecurityGroupRules};
use super::plan::{CloseGroup, RestrictEgress};
use super::rule::{DEFAULT_RULE_DESCRIPTION, Peer, Rule, RuleKey, parse_allowed, sort_rules};

#[test]
fn protocols_and_all_traffic_ports_normalise() {
    let a = Rule::new(
        None,
        "-1",
        Some(-1),
        Some(-1),
        Peer::Cidr("0.0.0.0/0".into()),
        None,
    );
    let b = Rule::new(
        None,
        "all",
        None,
        None,
        Peer::Cidr("0.0.0.0/0".into()),
        None,
    );
    assert_eq!(a.key(), b.key());
    let t = Rule::new(
        None,
        "6",
        Some(443),
        Some(443),
        Peer::Cidr("10.0.0.0/8".into()),
        None,
    );
    assert_eq!(t.protocol, "tcp");
    assert!(!t.is_open());
    assert!(a.is_open());
    assert!(Peer::Ipv6Cidr("::/0".into()).is_open());
}

#[test]
fn unknown_rule_ids_round_trip_as_known_after_apply() {
    let rule = Rule::new(
        None,
        "tcp",
        Some(443),
        Some(443),
        Peer::Cidr("0.0.0.0/0".into()),
        None,
    );
    let json = serde_json::to_value(&rule).expect("serializes");
    assert_eq!(json["rule_id"], KNOWN_AFTER_APPLY);
    let back: Rule = serde_json::from_value(json).expect("deserializes");
    assert_eq!(back, rule);
}

fn rule(id: &str, protocol: &str, ports: Option<(i32, i32)>, peer: Peer) -> Rule {
    Rule::new(
        Some(id.into()),
        protocol,
        ports.map(|p| p.0),
        ports.map(|p| p.1),
        peer,
        None,
    )
}

fn group(egress: Vec<Rule>, interfaces: usize) -> Resource {
    let mut egress = egress;
    sort_rules(&mut egress);
    Resource::SecurityGroup(SecurityGroup {
        id: "sg-1".into(),
        name: "web".into(),
        description: "web".into(),
        vpc_id: Some("vpc-1".into()),
        owner_id: "123456789012".into(),
        tags: BTreeMap::new(),
        interface_count: interfaces,
        ingress: Vec::new(),
        egress,
    })
}

fn https() -> Value {
    json!([{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr": "0.0.0.0/0"}])
}

fn operations(plan: &ActionPlan) -> Vec<&str> {
    plan.changes
        .iter()
        .map(|c| c.call.operation.as_str())
        .collect()
}

#[test]
fn every_change_of_a_restriction_has_an_inverse_that_puts_the_rules_back_exactly() {
    let mut open = rule("sgr-open", "-1", None, Peer::Cidr("0.0.0.0/0".into()));
    open.description = Some("everything".into());
    let v6 = rule("sgr-v6", "-1", None, Peer::Ipv6Cidr("::/0".into()));
    let target = group(vec![open.clone(), v6.clone()], 0);
    let planned = RestrictEgress
        .plan(&target, &json!({"allowed": https()}))
        .expect("plans");
    assert_eq!(
        operations(&planned),
        ["ModifySecurityGroupRules", "RevokeSecurityGroupEgress"]
    );
    // What apply would record: the after of each change, rule ids read back.
    let recorded: Vec<(ApiCall, Value, Value)> = planned
        .changes
        .iter()
        .map(|c| (c.call.clone(), c.before.clone(), c.after.clone()))
        .collect();
    let undo_revoke = RestrictEgress
        .inverse(&recorded[1].0, &recorded[1].1, &recorded[1].2)
        .expect("a revoke has an inverse");
    assert_eq!(undo_revoke.operation, "AuthorizeSecurityGroupEgress");
    assert_eq!(
        undo_revoke.input,
        json!({"GroupId": "sg-1", "IpPermissions": [permission_input(&v6)]})
    );
    let restored: SecurityGroupRules =
        serde_json::from_value(undo_revoke.after.clone()).expect("rules");
    assert!(
        restored
            .egress
            .iter()
            .any(|r| r.key() == v6.key() && r.rule_id.is_none()),
        "the rule comes back under a new id, known after apply"
    );
    let undo_rewrite = RestrictEgress
        .inverse(&recorded[0].0, &recorded[0].1, &recorded[0].2)
        .expect("a rewrite has an inverse");
    assert_eq!(
        undo_rewrite.input,
        json!({"GroupId": "sg-1", "SecurityGroupRules": [{
            "SecurityGroupRuleId": "sgr-open",
            "SecurityGroupRule": rule_request_input(&open)}]}),
        "rewritten back, description included"
    );
    assert_eq!(undo_rewrite.after, recorded[0].1);

    // An authorization is undone by revoking what it added, by id.
    let before = state_of(&SecurityGroupRules {
        ingress: Vec::new(),
        egress: vec![v6.clone()],
    });
    let added = rule(
        "sgr-new",
        "tcp",
        Some((443, 443)),
        Peer::Cidr("0.0.0.0/0".into()),
    );
    let mut egress = vec![v6.clone(), added];
    sort_rules(&mut egress);
    let after = state_of(&SecurityGroupRules {
        ingress: Vec::new(),
        egress,
    });
    let call = ApiCall {
        service: "ec2".into(),
        operation: "AuthorizeSecurityGroupEgress".into(),
        input: json!({"GroupId": "sg-1"}),
    };
    let undo = RestrictEgress
        .inverse(&call, &before, &after)
        .expect("an authorization has an inverse");
    assert_eq!(
        undo.input,
        json!({"GroupId": "sg-1", "SecurityGroupRuleIds": ["sgr-new"]})
    );
    assert_eq!(undo.after, before);
    assert!(
        RestrictEgress.inverse(&call, &before, &before).is_err(),
        "nothing added, nothing to revoke: refused, not guessed"
    );
}

#[test]
fn an_open_rule_becomes_the_allowed_rule_in_place() {
    let target = group(
        vec![
            rule("sgr-open", "-1", None, Peer::Cidr("0.0.0.0/0".into())),
            rule(
                "sgr-db",
                "tcp",
                Some((5432, 5432)),
                Peer::Cidr("10.0.0.0/8".into()),
            ),
        ],
        0,
    );
    let plan = RestrictEgress
        .plan(&target, &json!({"allowed": https()}))
        .expect("plans");
    assert_eq!(operations(&plan), ["ModifySecurityGroupRules"]);
    assert_eq!(
        plan.changes[0].call.input,
        json!({"GroupId": "sg-1", "SecurityGroupRules": [{
            "SecurityGroupRuleId": "sgr-open",
            "SecurityGroupRule": {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
                "CidrIpv4": "0.0.0.0/0", "Description": DEFAULT_RULE_DESCRIPTION}}]})
    );
    let Some(Resource::SecurityGroup(after)) = plan.projected else {
        panic!("projects the group")
    };
    let ids: Vec<_> = after.egress.iter().map(|r| r.rule_id.clone()).collect();
    assert!(ids.contains(&Some("sgr-db".into())), "narrow rule kept");
    assert!(
        ids.contains(&Some("sgr-open".into())),
        "rewritten rule keeps its id"
    );
}

#[test]
fn missing_allowed_rules_are_authorized_before_open_rules_go() {
    let target = group(
        vec![
            rule("sgr-4", "-1", None, Peer::Cidr("0.0.0.0/0".into())),
            rule("sgr-6", "-1", None, Peer::Ipv6Cidr("::/0".into())),
        ],
        0,
    );
    let allowed = json!([
        {"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr": "0.0.0.0/0"},
        {"protocol": "tcp", "from_port": 80, "to_port": 80, "cidr": "0.0.0.0/0"},
        {"protocol": "udp", "from_port": 123, "to_port": 123, "cidr": "10.0.0.0/8"}
    ]);
    let plan = RestrictEgress
        .plan(&target, &json!({"allowed": allowed}))
        .expect("plans");
    // The allowed rules no open rule of their family can become (tcp 80 and udp 123,
    // both IPv4, once tcp 443 takes the open IPv4 rule) are authorized first; the
    // open IPv4 rule is rewritten in place; the open IPv6 rule, which EC2 will not
    // turn into an IPv4 one, is revoked.
    assert_eq!(
        operations(&plan),
        [
            "AuthorizeSecurityGroupEgress",
            "ModifySecurityGroupRules",
            "RevokeSecurityGroupEgress"
        ]
    );
    let rewritten = &plan.changes[1].call.input["SecurityGroupRules"];
    assert_eq!(rewritten.as_array().map(Vec::len), Some(1));
    assert_eq!(rewritten[0]["SecurityGroupRuleId"], "sgr-4");
    assert!(rewritten[0]["SecurityGroupRule"]["CidrIpv6"].is_null());
    assert!(plan.changes[0].summary.contains("udp 123 10.0.0.0/8"));
    assert!(plan.changes[0].summary.contains("tcp 80"));
    assert_eq!(
        plan.changes[2].call.input["SecurityGroupRuleIds"],
        json!(["sgr-6"])
    );
}

#[test]
fn a_compliant_group_has_no_changes() {
    let target = group(
        vec![
            rule(
                "sgr-1",
                "tcp",
                Some((443, 443)),
                Peer::Cidr("0.0.0.0/0".into()),
            ),
            rule("sgr-2", "-1", None, Peer::GroupId("sg-2".into())),
        ],
        0,
    );
    let plan = RestrictEgress
        .plan(&target, &json!({"allowed": https()}))
        .expect("plans");
    assert_eq!(plan, ActionPlan::default());
}

#[test]
fn bad_allow_list_entries_are_named() {
    let target = group(Vec::new(), 0);
    let error = RestrictEgress
        .plan(
            &target,
            &json!({"allowed": [{"protocol": "tcp", "from_port": 1, "to_port": 1}]}),
        )
        .expect_err("no destination");
    assert_eq!(
        error,
        "argument allowed[0]: expected exactly one of cidr, ipv6_cidr, prefix_list_id, found 0"
    );
    let error = RestrictEgress
        .plan(
            &target,
            &json!({"allowed": [{"protocol": "tcp", "cidr": "0.0.0.0/0"}]}),
        )
        .expect_err("no ports");
    assert_eq!(
        error,
        "argument allowed[0]: protocol tcp needs from_port and to_port"
    );
}

#[test]
fn an_in_use_group_is_blocked_unless_forced() {
    let target = group(
        vec![rule("sgr-1", "-1", None, Peer::Cidr("0.0.0.0/0".into()))],
        2,
    );
    let plan = CloseGroup.plan(&target, &json!({})).expect("plans");
    assert_eq!(plan.changes, Vec::new());
    let (reason, detail) = plan.blocked.expect("blocked");
    assert_eq!(reason, BlockReason::InUse);
    assert!(
        detail.starts_with("in use by 2 network interfaces"),
        "{detail}"
    );
    let forced = CloseGroup
        .plan(&target, &json!({"close_in_use": true}))
        .expect("plans");
    assert_eq!(operations(&forced), ["RevokeSecurityGroupEgress"]);
    assert_eq!(
        forced.changes[0].call.input,
        json!({"GroupId": "sg-1", "SecurityGroupRuleIds": ["sgr-1"]})
    );
}

fn any_peer() -> impl Strategy<Value = Peer> {
    prop_oneof![
        Just(Peer::Cidr("0.0.0.0/0".into())),
        Just(Peer::Ipv6Cidr("::/0".into())),
        Just(Peer::Cidr("10.0.0.0/8".into())),
        Just(Peer::PrefixListId("pl-1".into())),
        Just(Peer::GroupId("sg-9".into())),
    ]
}

fn any_rule() -> impl Strategy<Value = (String, Option<(i32, i32)>, Peer)> {
    (
        prop_oneof![
            Just("-1".to_string()),
            Just("tcp".to_string()),
            Just("udp".to_string())
        ],
        prop_oneof![
            Just((443, 443)),
            Just((80, 80)),
            Just((53, 53)),
            Just((0, 65535))
        ],
        any_peer(),
    )
        .prop_map(|(protocol, ports, peer)| {
            let ports = (protocol != "-1").then_some(ports);
            (protocol, ports, peer)
        })
}

proptest! {
    /// Whatever the rules and the allow-list: afterwards no open rule outside the
    /// allow-list remains, every allowed rule exists, narrow rules keep their ids,
    /// and authorizing comes before rewriting, which comes before revoking.
    #[test]
    fn restricting_egress_reaches_the_allow_list(
        existing in proptest::collection::vec(any_rule(), 0..8),
        allowed in proptest::collection::vec(any_rule(), 1..4),
    ) {
        let mut seen = BTreeSet::new();
        let egress: Vec<Rule> = existing
            .iter()
            .enumerate()
            .map(|(i, (p, ports, peer))| rule(&format!("sgr-{i}"), p, *ports, peer.clone()))
            .filter(|r| seen.insert(r.key()))
            .collect();
        let allowed_json: Vec<Value> = allowed
            .iter()
            .map(|(p, ports, peer)| {
                let mut entry = json!({"protocol": p});
                if let Some((from, to)) = ports {
                    entry["from_port"] = json!(from);
                    entry["to_port"] = json!(to);
                }
                match peer {
                    Peer::Cidr(c) => entry["cidr"] = json!(c),
                    Peer::Ipv6Cidr(c) => entry["ipv6_cidr"] = json!(c),
                    Peer::PrefixListId(p) => entry["prefix_list_id"] = json!(p),
                    Peer::GroupId(_) => entry["cidr"] = json!("192.168.0.0/16"),
                }
                entry
            })
            .collect();
        let target = group(egress.clone(), 0);
        let plan = RestrictEgress.plan(&target, &json!({"allowed": allowed_json})).expect("plans");
        let allowed_rules = parse_allowed("allowed", &Value::Array(allowed_json)).expect("parses");
        let allowed_keys: BTreeSet<RuleKey> = allowed_rules.iter().map(Rule::key).collect();
        let had_open = egress.iter().any(|r| r.is_open() && !allowed_keys.contains(&r.key()));
        let Some(Resource::SecurityGroup(after)) = plan.projected.clone() else {
            prop_assert!(!had_open, "an open group must be changed");
            return Ok(());
        };
        prop_assert!(after.egress.iter().all(|r| !r.is_open() || allowed_keys.contains(&r.key())));
        let after_keys: BTreeSet<RuleKey> = after.egress.iter().map(Rule::key).collect();
        prop_assert!(allowed_keys.is_subset(&after_keys));
        for narrow in egress.iter().filter(|r| !r.is_open()) {
            prop_assert!(after.egress.iter().any(|r| r.rule_id == narrow.rule_id && r.key() == narrow.key()));
        }
        let rank = |op: &str| match op {
            "AuthorizeSecurityGroupEgress" => 0,
            "ModifySecurityGroupRules" => 1,
            _ => 2,
        };
        let ranks: Vec<i32> = plan.changes.iter().map(|c| rank(&c.call.operation)).collect();
        prop_assert!(ranks.windows(2).all(|w| w[0] < w[1]));
        // Each change's after is the next change's before.
        for pair in plan.changes.windows(2) {
            prop_assert_eq!(&pair[0].after, &pair[1].before);
        }
    }
}
