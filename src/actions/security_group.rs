//! EC2 security groups: discovery, the egress-restriction and group-closing actions,
//! and the calls they make.
//!
//! Rules are always revoked by security-group rule id, never by re-describing the
//! permission: that is exact, and it is what works on every emulator (moto answers
//! success and removes nothing when an all-traffic IPv6 rule is revoked by
//! IpPermissions). Every change is read back by rule listing afterwards.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use async_trait::async_trait;
use aws_sdk_ec2::operation::RequestId;
use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, PrefixListId, SecurityGroupRuleRequest,
    SecurityGroupRuleUpdate, UserIdGroupPair,
};
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};

use super::{
    Action, ActionInfo, ActionPlan, Applied, ArgSpec, Calls, ChangeDraft, Inverse, RegionRead, arg,
    arguments_of, typed_args, typed_call,
};
use crate::actions::{Resource, ResourceKind};
use crate::aws::{RegionClients, failure};
use crate::error::{Error, Result};
use crate::event::KnownEvent;
use crate::inventory::{Filters, Kind, Narrowing};
use crate::plan::{ApiCall, BlockReason, Change, ChangeKind, Probe};
use crate::template::KNOWN_AFTER_APPLY;

/// The largest page EC2's describe calls accept.
const MAX_PAGE: i32 = 1000;
/// EC2 accepts at most this many values in one filter.
const MAX_FILTER_VALUES: usize = 200;
/// Description given to an allowed rule that names none, so the rule says who made it.
pub const DEFAULT_RULE_DESCRIPTION: &str = "allowed by harden";

/// An entry of an allow-list argument, as runbooks write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedRule {
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `-1`/`all`.
    pub protocol: String,
    /// First port; required for tcp and udp.
    #[serde(default)]
    pub from_port: Option<i32>,
    /// Last port; required for tcp and udp.
    #[serde(default)]
    pub to_port: Option<i32>,
    /// IPv4 destination.
    #[serde(default)]
    pub cidr: Option<String>,
    /// IPv6 destination.
    #[serde(default)]
    pub ipv6_cidr: Option<String>,
    /// Prefix-list destination.
    #[serde(default)]
    pub prefix_list_id: Option<String>,
    /// Rule description.
    #[serde(default)]
    pub description: Option<String>,
}

impl AllowedRule {
    fn to_rule(&self, field: &str) -> std::result::Result<Rule, String> {
        let peers: Vec<Peer> = [
            self.cidr.clone().map(Peer::Cidr),
            self.ipv6_cidr.clone().map(Peer::Ipv6Cidr),
            self.prefix_list_id.clone().map(Peer::PrefixListId),
        ]
        .into_iter()
        .flatten()
        .collect();
        let [peer] = <[Peer; 1]>::try_from(peers).map_err(|found| {
            format!(
                "{field}: expected exactly one of cidr, ipv6_cidr, prefix_list_id, found {}",
                found.len()
            )
        })?;
        let rule = Rule::new(
            None,
            &self.protocol,
            self.from_port,
            self.to_port,
            peer,
            Some(
                self.description
                    .clone()
                    .unwrap_or_else(|| DEFAULT_RULE_DESCRIPTION.into()),
            ),
        );
        if matches!(rule.protocol.as_str(), "tcp" | "udp")
            && (rule.from_port.is_none() || rule.to_port.is_none())
        {
            return Err(format!(
                "{field}: protocol {} needs from_port and to_port",
                rule.protocol
            ));
        }
        Ok(rule)
    }
}

/// Parses an allow-list argument, naming the entry at fault.
pub fn parse_allowed(name: &str, value: &Value) -> std::result::Result<Vec<Rule>, String> {
    let entries: Vec<AllowedRule> = serde_json::from_value(value.clone())
        .map_err(|e| format!("argument {name}: expected a list of rules ({e})"))?;
    let mut seen = BTreeSet::new();
    let mut rules = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let rule = entry.to_rule(&format!("argument {name}[{index}]"))?;
        if seen.insert(rule.key()) {
            rules.push(rule);
        }
    }
    Ok(rules)
}

fn group(target: &Resource) -> std::result::Result<&SecurityGroup, String> {
    match target {
        Resource::SecurityGroup(g) => Ok(g),
        other => Err(format!("expected a security group, given {}", other.kind())),
    }
}

fn state(rules: &SecurityGroupRules) -> Value {
    serde_json::to_value(rules).unwrap_or_default()
}

fn describe_rules(rules: &[Rule]) -> String {
    rules
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Restricts a group's egress to an allow-list.
pub struct RestrictEgress;

static RESTRICT: ActionInfo = ActionInfo {
    name: "ec2:restrict-egress",
    description: "replace egress rules to 0.0.0.0/0 or ::/0 outside an allow-list: authorize missing allowed rules first, rewrite open rules in place where one can become an allowed rule, then revoke the rest by rule id",
    resource_kind: ResourceKind::SecurityGroup,
    outputs: &[],
    waits: false,
};

/// The arguments of `ec2:restrict-egress`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestrictArgs {
    /// Egress rules to the internet that stay allowed: {protocol, from_port, to_port,
    /// cidr | ipv6_cidr | prefix_list_id, description}.
    pub allowed: Vec<serde_json::Map<String, Value>>,
}

/// The arguments of `ec2:close-security-group`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseArgs {
    /// Also close a group network interfaces still use (default false: such a group is
    /// blocked and reported).
    #[serde(default, deserialize_with = "arg::flag")]
    pub close_in_use: Option<bool>,
}

impl Action for RestrictEgress {
    fn arguments(&self) -> Vec<ArgSpec> {
        arguments_of::<RestrictArgs>()
    }

    fn info(&self) -> &'static ActionInfo {
        &RESTRICT
    }

    fn inverse(
        &self,
        call: &ApiCall,
        before: &Value,
        after: &Value,
    ) -> std::result::Result<Inverse, String> {
        inverse(call, before, after)
    }

    fn plan(&self, target: &Resource, args: &Value) -> std::result::Result<ActionPlan, String> {
        let original = group(target)?;
        // The rules' own shape is checked by `parse_allowed`, naming the entry.
        let args: RestrictArgs = typed_args(args)?;
        let allowed = parse_allowed(
            "allowed",
            &Value::Array(args.allowed.into_iter().map(Value::Object).collect()),
        )?;
        let allowed_keys: BTreeSet<RuleKey> = allowed.iter().map(Rule::key).collect();
        let open: Vec<Rule> = original
            .egress
            .iter()
            .filter(|r| r.is_open() && !allowed_keys.contains(&r.key()))
            .cloned()
            .collect();
        if open.is_empty() {
            return Ok(ActionPlan::default());
        }
        let present: BTreeSet<RuleKey> = original.egress.iter().map(Rule::key).collect();
        let mut missing: Vec<Rule> = allowed
            .into_iter()
            .filter(|r| !present.contains(&r.key()))
            .collect();

        // Pair each open rule with a missing allowed rule of the same address family:
        // ModifySecurityGroupRules turns one into the other atomically. EC2 refuses to
        // change a rule's family in place (an IPv4 CIDR rule cannot be given an IPv6
        // CIDR), so an open rule with no allowed rule of its family is revoked and the
        // allowed rules of the other family authorized.
        let mut rewrites: Vec<(Rule, Rule)> = Vec::new();
        let mut revokes: Vec<Rule> = Vec::new();
        for old in open {
            let same_family =
                |r: &Rule| std::mem::discriminant(&r.peer) == std::mem::discriminant(&old.peer);
            let pick = missing.iter().position(same_family);
            match pick {
                Some(index) => {
                    let mut new = missing.remove(index);
                    new.rule_id = old.rule_id.clone();
                    rewrites.push((old, new));
                }
                None => revokes.push(old),
            }
        }

        let group_id = original.id.clone();
        let mut current = original.clone();
        let mut changes = Vec::new();
        // Authorize first, so traffic the allow-list permits never loses its path while
        // open rules are rewritten or revoked.
        if !missing.is_empty() {
            let before = current.rules_state();
            current.egress.extend(missing.iter().cloned());
            sort_rules(&mut current.egress);
            changes.push(ChangeDraft {
                kind: ChangeKind::Create,
                summary: format!("authorize egress {}", describe_rules(&missing)),
                before: state(&before),
                after: state(&current.rules_state()),
                call: ApiCall {
                    service: "ec2".into(),
                    operation: "AuthorizeSecurityGroupEgress".into(),
                    input: json!({
                        "GroupId": group_id,
                        "IpPermissions": missing.iter().map(permission_input).collect::<Vec<_>>(),
                    }),
                },
            });
        }
        if !rewrites.is_empty() {
            let before = current.rules_state();
            for (old, new) in &rewrites {
                current.egress.retain(|r| r.key() != old.key());
                current.egress.push(new.clone());
            }
            sort_rules(&mut current.egress);
            changes.push(ChangeDraft {
                kind: ChangeKind::Update,
                summary: format!(
                    "rewrite egress {}",
                    rewrites
                        .iter()
                        .map(|(old, new)| format!("{old} -> {}", Rule { rule_id: None, ..new.clone() }))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                before: state(&before),
                after: state(&current.rules_state()),
                call: ApiCall {
                    service: "ec2".into(),
                    operation: "ModifySecurityGroupRules".into(),
                    input: json!({
                        "GroupId": group_id,
                        "SecurityGroupRules": rewrites.iter().map(|(old, new)| json!({
                            "SecurityGroupRuleId": old.rule_id.as_deref().unwrap_or(KNOWN_AFTER_APPLY),
                            "SecurityGroupRule": rule_request_input(new),
                        })).collect::<Vec<_>>(),
                    }),
                },
            });
        }
        if !revokes.is_empty() {
            changes.push(revoke_change(&mut current, Direction::Egress, &revokes));
        }
        Ok(ActionPlan {
            changes,
            blocked: None,
            projected: Some(Resource::SecurityGroup(current)),
        })
    }

    fn calls(&self) -> &'static dyn Calls {
        &SecurityGroupCalls
    }
}

/// Removes every rule from a group (a VPC's default group, for EC2.2 / CIS 5.4).
pub struct CloseGroup;

static CLOSE: ActionInfo = ActionInfo {
    name: "ec2:close-security-group",
    description: "revoke every inbound and outbound rule of a security group, by rule id; a group in use by network interfaces is blocked unless close_in_use is true",
    resource_kind: ResourceKind::SecurityGroup,
    outputs: &[],
    waits: false,
};

impl Action for CloseGroup {
    fn arguments(&self) -> Vec<ArgSpec> {
        arguments_of::<CloseArgs>()
    }

    fn info(&self) -> &'static ActionInfo {
        &CLOSE
    }

    fn inverse(
        &self,
        call: &ApiCall,
        before: &Value,
        after: &Value,
    ) -> std::result::Result<Inverse, String> {
        inverse(call, before, after)
    }

    fn plan(&self, target: &Resource, args: &Value) -> std::result::Result<ActionPlan, String> {
        let original = group(target)?;
        let close_in_use = typed_args::<CloseArgs>(args)?.close_in_use.unwrap_or(false);
        if original.ingress.is_empty() && original.egress.is_empty() {
            return Ok(ActionPlan::default());
        }
        if original.interface_count > 0 && !close_in_use {
            let n = original.interface_count;
            return Ok(ActionPlan::blocked(
                BlockReason::InUse,
                format!(
                    "in use by {n} network interface{}; closing it would cut their traffic (set close_in_use: true to close it anyway)",
                    if n == 1 { "" } else { "s" }
                ),
            ));
        }
        let mut current = original.clone();
        let mut changes = Vec::new();
        if !original.ingress.is_empty() {
            changes.push(revoke_change(
                &mut current,
                Direction::Ingress,
                &original.ingress,
            ));
        }
        if !original.egress.is_empty() {
            changes.push(revoke_change(
                &mut current,
                Direction::Egress,
                &original.egress,
            ));
        }
        Ok(ActionPlan {
            changes,
            blocked: None,
            projected: Some(Resource::SecurityGroup(current)),
        })
    }

    fn calls(&self) -> &'static dyn Calls {
        &SecurityGroupCalls
    }
}

/// Reads, applies and probes security-group changes.
pub struct SecurityGroupCalls;

#[async_trait]
impl Calls for SecurityGroupCalls {
    fn rights(&self) -> &'static crate::actions::Rights {
        &crate::actions::Rights {
            reads: &[
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeSecurityGroupRules",
                "ec2:DescribeNetworkInterfaces",
            ],
            changes: &[
                "ec2:AuthorizeSecurityGroupEgress",
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:RevokeSecurityGroupEgress",
                "ec2:RevokeSecurityGroupIngress",
                "ec2:ModifySecurityGroupRules",
            ],
            passes_role_to: &[],
            kms_via_ec2: false,
            includes: &[],
        }
    }

    fn check(&self, change: &Change) -> Result<()> {
        typed_call::<GroupCall>(change).map(drop)
    }

    async fn read(&self, clients: &RegionClients, resource_id: &str) -> Result<Value> {
        Ok(state(&read_rules(clients, resource_id).await?))
    }

    fn read_many_limit(&self) -> usize {
        MAX_FILTER_VALUES
    }

    async fn read_many(
        &self,
        clients: &RegionClients,
        resource_ids: &[String],
    ) -> Result<Vec<Value>> {
        let rules = list_rules(clients, resource_ids).await?;
        Ok(states_of(rules, resource_ids))
    }

    async fn read_from_region(
        &self,
        clients: &RegionClients,
        resource_ids: &[String],
        requests: usize,
    ) -> Result<Option<RegionRead>> {
        let listed = list_region_rules(clients, requests).await?;
        Ok(listed.map(|(rules, requests)| RegionRead {
            states: states_of(rules, resource_ids),
            requests,
        }))
    }

    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        current: &Value,
    ) -> Result<Applied> {
        apply_call(clients, change, current, false).await
    }

    async fn probe(&self, clients: &RegionClients, change: &Change) -> Probe {
        probe_call(clients, change).await
    }
}

/// Undoes a recorded security-group change from the rules read before and after it: a
/// revoke by authorizing the rules it removed again exactly (descriptions included; AWS
/// gives them new ids), an authorization by revoking the rules it added by their ids,
/// a rewrite by rewriting each rule back.
fn inverse(call: &ApiCall, before: &Value, after: &Value) -> std::result::Result<Inverse, String> {
    let parse = |what: &str, v: &Value| {
        serde_json::from_value::<SecurityGroupRules>(v.clone())
            .map_err(|e| format!("the rules recorded {what} it do not parse: {e}"))
    };
    let (was, now) = (parse("before", before)?, parse("after", after)?);
    let group_id = call.input["GroupId"]
        .as_str()
        .ok_or("the recorded call names no GroupId")?
        .to_string();
    let gone = |from: &[Rule], kept: &[Rule]| -> Vec<Rule> {
        let keys: BTreeSet<RuleKey> = kept.iter().map(Rule::key).collect();
        from.iter()
            .filter(|r| !keys.contains(&r.key()))
            .cloned()
            .collect()
    };
    match call.operation.as_str() {
        operation @ ("RevokeSecurityGroupEgress" | "RevokeSecurityGroupIngress") => {
            let egress = operation == "RevokeSecurityGroupEgress";
            let (was_list, now_list) = if egress {
                (&was.egress, &now.egress)
            } else {
                (&was.ingress, &now.ingress)
            };
            let removed = gone(was_list, now_list);
            if removed.is_empty() {
                return Err("the recorded states show no rule removed".into());
            }
            let mut restored = was.clone();
            for rule in restored
                .egress
                .iter_mut()
                .chain(restored.ingress.iter_mut())
            {
                if removed.iter().any(|r| r.rule_id == rule.rule_id) {
                    rule.rule_id = None;
                }
            }
            let (word, authorize) = if egress {
                ("egress", "AuthorizeSecurityGroupEgress")
            } else {
                ("ingress", "AuthorizeSecurityGroupIngress")
            };
            Ok(Inverse {
                kind: ChangeKind::Create,
                summary: format!("authorize {word} {} again", describe_rules(&removed)),
                operation: authorize.into(),
                input: json!({
                    "GroupId": group_id,
                    "IpPermissions": removed.iter().map(permission_input).collect::<Vec<_>>(),
                }),
                after: state(&restored),
                removes_created: false,
            })
        }
        "AuthorizeSecurityGroupEgress" => {
            let added = gone(&now.egress, &was.egress);
            let ids: Vec<&str> = added.iter().filter_map(|r| r.rule_id.as_deref()).collect();
            if added.is_empty() || ids.len() != added.len() {
                return Err("the ids of the rules it authorized were not read back".into());
            }
            Ok(Inverse {
                kind: ChangeKind::Delete,
                summary: format!("revoke egress {}", describe_rules(&added)),
                operation: "RevokeSecurityGroupEgress".into(),
                input: json!({"GroupId": group_id, "SecurityGroupRuleIds": ids}),
                after: state(&was),
                removes_created: false,
            })
        }
        "ModifySecurityGroupRules" => {
            let mut updates = Vec::new();
            for update in call.input["SecurityGroupRules"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let id = update["SecurityGroupRuleId"].as_str().unwrap_or_default();
                let old = was
                    .egress
                    .iter()
                    .chain(&was.ingress)
                    .find(|r| r.rule_id.as_deref() == Some(id))
                    .ok_or_else(|| format!("rule {id} is not in the state recorded before it"))?;
                let mut request = rule_request_input(old);
                // An omitted description is kept by the rewrite; none must be asked for.
                if old.description.is_none() {
                    request["Description"] = json!("");
                }
                updates.push(json!({
                    "SecurityGroupRuleId": id,
                    "SecurityGroupRule": request,
                }));
            }
            if updates.is_empty() {
                return Err("the recorded call rewrites no rule".into());
            }
            Ok(Inverse {
                kind: ChangeKind::Update,
                summary: format!("rewrite {} rule(s) back as they were", updates.len()),
                operation: "ModifySecurityGroupRules".into(),
                input: json!({"GroupId": group_id, "SecurityGroupRules": updates}),
                after: state(&was),
                removes_created: false,
            })
        }
        other => Err(format!("no inverse for {other}")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

fn revoke_change(current: &mut SecurityGroup, direction: Direction, rules: &[Rule]) -> ChangeDraft {
    let before = current.rules_state();
    let keys: BTreeSet<RuleKey> = rules.iter().map(Rule::key).collect();
    let (list, operation, word) = match direction {
        Direction::Ingress => (
            &mut current.ingress,
            "RevokeSecurityGroupIngress",
            "ingress",
        ),
        Direction::Egress => (&mut current.egress, "RevokeSecurityGroupEgress", "egress"),
    };
    list.retain(|r| !keys.contains(&r.key()));
    ChangeDraft {
        kind: ChangeKind::Delete,
        summary: format!("revoke {word} {}", describe_rules(rules)),
        before: state(&before),
        after: state(&current.rules_state()),
        call: ApiCall {
            service: "ec2".into(),
            operation: operation.into(),
            input: json!({
                "GroupId": current.id,
                "SecurityGroupRuleIds": rules
                    .iter()
                    .map(|r| r.rule_id.as_deref().unwrap_or(KNOWN_AFTER_APPLY))
                    .collect::<Vec<_>>(),
            }),
        },
    }
}

// ---- Call inputs, in AWS's own field names so the plan shows what is sent. ----

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PeerInput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cidr_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cidr_ipv6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix_list_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PermissionInput {
    ip_protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from_port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to_port: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ip_ranges: Vec<PeerInput>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ipv6_ranges: Vec<PeerInput>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    prefix_list_ids: Vec<PeerInput>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    user_id_group_pairs: Vec<PeerInput>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RuleRequestInput {
    ip_protocol: String,
    from_port: i32,
    to_port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cidr_ipv4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cidr_ipv6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix_list_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    referenced_group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RuleUpdateInput {
    security_group_rule_id: String,
    security_group_rule: RuleRequestInput,
}

/// Every call of this concern, as a plan stores it (EC2's field names).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "operation", content = "input")]
enum GroupCall {
    AuthorizeSecurityGroupEgress(AuthorizeInput),
    /// Only rollback authorizes ingress: putting back rules a close revoked.
    AuthorizeSecurityGroupIngress(AuthorizeInput),
    ModifySecurityGroupRules(ModifyInput),
    RevokeSecurityGroupEgress(RevokeInput),
    RevokeSecurityGroupIngress(RevokeInput),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct AuthorizeInput {
    group_id: String,
    ip_permissions: Vec<PermissionInput>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ModifyInput {
    group_id: String,
    security_group_rules: Vec<RuleUpdateInput>,
}

/// Rules are revoked by id; an id the plan could not know reads `(known after apply)`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct RevokeInput {
    group_id: String,
    security_group_rule_ids: Vec<String>,
}

fn permission_input(rule: &Rule) -> Value {
    let peer = PeerInput {
        cidr_ip: None,
        cidr_ipv6: None,
        prefix_list_id: None,
        group_id: None,
        description: rule.description.clone(),
    };
    let mut permission = PermissionInput {
        ip_protocol: rule.protocol.clone(),
        from_port: rule.from_port,
        to_port: rule.to_port,
        ip_ranges: Vec::new(),
        ipv6_ranges: Vec::new(),
        prefix_list_ids: Vec::new(),
        user_id_group_pairs: Vec::new(),
    };
    match &rule.peer {
        Peer::Cidr(c) => permission.ip_ranges.push(PeerInput {
            cidr_ip: Some(c.clone()),
            ..peer
        }),
        Peer::Ipv6Cidr(c) => permission.ipv6_ranges.push(PeerInput {
            cidr_ipv6: Some(c.clone()),
            ..peer
        }),
        Peer::PrefixListId(p) => permission.prefix_list_ids.push(PeerInput {
            prefix_list_id: Some(p.clone()),
            ..peer
        }),
        Peer::GroupId(g) => permission.user_id_group_pairs.push(PeerInput {
            group_id: Some(g.clone()),
            ..peer
        }),
    }
    serde_json::to_value(permission).unwrap_or_default()
}

fn rule_request_input(rule: &Rule) -> Value {
    let mut request = RuleRequestInput {
        ip_protocol: rule.protocol.clone(),
        from_port: rule.from_port.unwrap_or(-1),
        to_port: rule.to_port.unwrap_or(-1),
        cidr_ipv4: None,
        cidr_ipv6: None,
        prefix_list_id: None,
        referenced_group_id: None,
        description: rule.description.clone(),
    };
    match &rule.peer {
        Peer::Cidr(c) => request.cidr_ipv4 = Some(c.clone()),
        Peer::Ipv6Cidr(c) => request.cidr_ipv6 = Some(c.clone()),
        Peer::PrefixListId(p) => request.prefix_list_id = Some(p.clone()),
        Peer::GroupId(g) => request.referenced_group_id = Some(g.clone()),
    }
    serde_json::to_value(request).unwrap_or_default()
}

fn sdk_permission(input: &PermissionInput) -> IpPermission {
    IpPermission::builder()
        .ip_protocol(&input.ip_protocol)
        .set_from_port(input.from_port)
        .set_to_port(input.to_port)
        .set_ip_ranges(non_empty(input.ip_ranges.iter().map(|p| {
            IpRange::builder()
                .set_cidr_ip(p.cidr_ip.clone())
                .set_description(p.description.clone())
                .build()
        })))
        .set_ipv6_ranges(non_empty(input.ipv6_ranges.iter().map(|p| {
            Ipv6Range::builder()
                .set_cidr_ipv6(p.cidr_ipv6.clone())
                .set_description(p.description.clone())
                .build()
        })))
        .set_prefix_list_ids(non_empty(input.prefix_list_ids.iter().map(|p| {
            PrefixListId::builder()
                .set_prefix_list_id(p.prefix_list_id.clone())
                .set_description(p.description.clone())
                .build()
        })))
        .set_user_id_group_pairs(non_empty(input.user_id_group_pairs.iter().map(|p| {
            UserIdGroupPair::builder()
                .set_group_id(p.group_id.clone())
                .set_description(p.description.clone())
                .build()
        })))
        .build()
}

fn sdk_rule_update(input: &RuleUpdateInput) -> SecurityGroupRuleUpdate {
    let r = &input.security_group_rule;
    SecurityGroupRuleUpdate::builder()
        .security_group_rule_id(&input.security_group_rule_id)
        .security_group_rule(
            SecurityGroupRuleRequest::builder()
                .ip_protocol(&r.ip_protocol)
                .from_port(r.from_port)
                .to_port(r.to_port)
                .set_cidr_ipv4(r.cidr_ipv4.clone())
                .set_cidr_ipv6(r.cidr_ipv6.clone())
                .set_prefix_list_id(r.prefix_list_id.clone())
                .set_referenced_group_id(r.referenced_group_id.clone())
                .set_description(r.description.clone())
                .build(),
        )
        .build()
}

fn non_empty<T>(items: impl Iterator<Item = T>) -> Option<Vec<T>> {
    let items: Vec<T> = items.collect();
    (!items.is_empty()).then_some(items)
}

/// Rule ids a revoke must send. Ids the plan knew are taken as they are; an id the
/// plan could not know (a rule an earlier change creates) is found in the state just
/// read by the rule's identity.
fn revoke_ids(change: &Change, input: &RevokeInput, current: &Value) -> Result<Vec<String>> {
    let mut ids: Vec<String> = input
        .security_group_rule_ids
        .iter()
        .filter(|id| *id != KNOWN_AFTER_APPLY)
        .cloned()
        .collect();
    if ids.len() == input.security_group_rule_ids.len() {
        return Ok(ids);
    }
    let parse = |v: &Value| -> Result<SecurityGroupRules> {
        serde_json::from_value(v.clone()).map_err(|e| {
            Error::Internal(format!("change {}: state does not parse: {e}", change.id))
        })
    };
    let (before, after, now) = (
        parse(&change.before)?,
        parse(&change.after)?,
        parse(current)?,
    );
    let egress = change.call.operation == "RevokeSecurityGroupEgress";
    let pick = |s: &SecurityGroupRules| {
        if egress {
            s.egress.clone()
        } else {
            s.ingress.clone()
        }
    };
    let kept: BTreeSet<RuleKey> = pick(&after).iter().map(Rule::key).collect();
    let removed: Vec<RuleKey> = pick(&before)
        .iter()
        .filter(|r| r.rule_id.is_none() && !kept.contains(&r.key()))
        .map(Rule::key)
        .collect();
    let by_key: HashMap<RuleKey, String> = pick(&now)
        .into_iter()
        .filter_map(|r| r.rule_id.clone().map(|id| (r.key(), id)))
        .collect();
    for key in removed {
        let id = by_key.get(&key).ok_or_else(|| Error::StalePlan {
            resource: format!("ec2:security-group {}", input.group_id),
            detail: format!("rule {} {:?} {:?} {} is gone", key.0, key.1, key.2, key.3),
        })?;
        ids.push(id.clone());
    }
    Ok(ids)
}

async fn apply_call(
    clients: &RegionClients,
    change: &Change,
    current: &Value,
    dry_run: bool,
) -> Result<Applied> {
    let ec2 = &clients.ec2;
    let operation = change.call.operation.as_str();
    // Egress and ingress revokes differ only in the builder; the checks are the same.
    macro_rules! revoke_by_rule_ids {
        ($request:expr, $input:expr) => {{
            let input = $input;
            let ids = revoke_ids(change, &input, current)?;
            let out = $request
                .group_id(&input.group_id)
                .set_security_group_rule_ids(Some(ids))
                .dry_run(dry_run)
                .send()
                .await
                .map_err(|e| Error::Aws(failure(operation, &e)))?;
            if out.r#return() == Some(false) || !out.unknown_ip_permissions().is_empty() {
                return Err(refused(operation, out.request_id()));
            }
            out.request_id().map(str::to_string)
        }};
    }
    // Egress and ingress authorizations differ only in the builder too.
    macro_rules! authorize {
        ($request:expr, $input:expr) => {{
            let input = $input;
            let out = $request
                .group_id(&input.group_id)
                .set_ip_permissions(Some(
                    input.ip_permissions.iter().map(sdk_permission).collect(),
                ))
                .dry_run(dry_run)
                .send()
                .await
                .map_err(|e| Error::Aws(failure(operation, &e)))?;
            if out.r#return() == Some(false) {
                return Err(refused(operation, out.request_id()));
            }
            out.request_id().map(str::to_string)
        }};
    }
    let request_id = match typed_call::<GroupCall>(change)? {
        GroupCall::AuthorizeSecurityGroupEgress(input) => {
            authorize!(ec2.authorize_security_group_egress(), input)
        }
        GroupCall::AuthorizeSecurityGroupIngress(input) => {
            authorize!(ec2.authorize_security_group_ingress(), input)
        }
        GroupCall::ModifySecurityGroupRules(input) => {
            let out = ec2
                .modify_security_group_rules()
                .group_id(&input.group_id)
                .set_security_group_rules(Some(
                    input
                        .security_group_rules
                        .iter()
                        .map(sdk_rule_update)
                        .collect(),
                ))
                .dry_run(dry_run)
                .send()
                .await
                .map_err(|e| Error::Aws(failure(operation, &e)))?;
            if out.r#return() == Some(false) {
                return Err(refused(operation, out.request_id()));
            }
            out.request_id().map(str::to_string)
        }
        GroupCall::RevokeSecurityGroupEgress(input) => {
            revoke_by_rule_ids!(ec2.revoke_security_group_egress(), input)
        }
        GroupCall::RevokeSecurityGroupIngress(input) => {
            revoke_by_rule_ids!(ec2.revoke_security_group_ingress(), input)
        }
    };
    Ok(Applied {
        request_ids: request_id.into_iter().collect(),
        outputs: serde_json::Map::new(),
    })
}

fn refused(operation: &str, request_id: Option<&str>) -> Error {
    Error::Aws(crate::error::AwsFailure {
        operation: operation.to_string(),
        code: "ReturnedFalse".into(),
        message: "the service answered without error but reported the change as not made".into(),
        request_id: request_id.map(str::to_string),
    })
}

async fn probe_call(clients: &RegionClients, change: &Change) -> Probe {
    super::dry_run_answer(apply_call(clients, change, &change.before, true).await)
}

// ---- Discovery and reads ----

fn sdk_rule(rule: &aws_sdk_ec2::types::SecurityGroupRule) -> Option<Rule> {
    let peer = if let Some(c) = rule.cidr_ipv4() {
        Peer::Cidr(c.to_string())
    } else if let Some(c) = rule.cidr_ipv6() {
        Peer::Ipv6Cidr(c.to_string())
    } else if let Some(p) = rule.prefix_list_id() {
        Peer::PrefixListId(p.to_string())
    } else {
        Peer::GroupId(rule.referenced_group_info()?.group_id()?.to_string())
    };
    Some(Rule::new(
        rule.security_group_rule_id().map(str::to_string),
        rule.ip_protocol().unwrap_or("-1"),
        rule.from_port(),
        rule.to_port(),
        peer,
        // An empty description is none (AWS omits it; moto answers "").
        rule.description()
            .filter(|d| !d.is_empty())
            .map(str::to_string),
    ))
}

fn filter(name: &str, values: Vec<String>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values))
        .build()
}

/// Rules by group id: (ingress, egress).
type RulesByGroup = HashMap<String, (Vec<Rule>, Vec<Rule>)>;

/// Lists rules, filtered to `group_ids` when there are few enough to filter by.
async fn list_rules(clients: &RegionClients, group_ids: &[String]) -> Result<RulesByGroup> {
    let mut request = clients
        .ec2
        .describe_security_group_rules()
        .max_results(MAX_PAGE);
    if group_ids.len() <= MAX_FILTER_VALUES {
        request = request.filters(filter("group-id", group_ids.to_vec()));
    }
    let mut pages = request.into_paginator().send();
    let mut rules = RulesByGroup::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::Aws(failure("DescribeSecurityGroupRules", &e)))?;
        add_rules(&mut rules, page.security_group_rules());
    }
    Ok(rules)
}

/// Lists every rule of the region and the pages that took, unless it takes more than
/// `requests` pages: then `None`, and no request beyond those.
async fn list_region_rules(
    clients: &RegionClients,
    requests: usize,
) -> Result<Option<(RulesByGroup, usize)>> {
    let mut rules = RulesByGroup::new();
    let mut next_token = None;
    for made in 1..=requests {
        let page = clients
            .ec2
            .describe_security_group_rules()
            .max_results(MAX_PAGE)
            .set_next_token(next_token)
            .send()
            .await
            .map_err(|e| Error::Aws(failure("DescribeSecurityGroupRules", &e)))?;
        add_rules(&mut rules, page.security_group_rules());
        next_token = page
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if next_token.is_none() {
            return Ok(Some((rules, made)));
        }
    }
    Ok(None)
}

fn add_rules(rules: &mut RulesByGroup, page: &[aws_sdk_ec2::types::SecurityGroupRule]) {
    for sdk in page {
        let (Some(group_id), Some(rule)) = (sdk.group_id(), sdk_rule(sdk)) else {
            continue;
        };
        let entry = rules.entry(group_id.to_string()).or_default();
        if sdk.is_egress() == Some(true) {
            entry.1.push(rule);
        } else {
            entry.0.push(rule);
        }
    }
}

/// Each group's state from the rules listed: a group without rules has none.
fn states_of(mut rules: RulesByGroup, group_ids: &[String]) -> Vec<Value> {
    group_ids
        .iter()
        .map(|id| {
            let (ingress, egress) = rules.remove(id).unwrap_or_default();
            state(&sorted(ingress, egress))
        })
        .collect()
}

/// Counts the network interfaces using each group.
async fn interface_counts(
    clients: &RegionClients,
    group_ids: &[String],
) -> Result<HashMap<String, usize>> {
    let mut request = clients
        .ec2
        .describe_network_interfaces()
        .max_results(MAX_PAGE);
    if group_ids.len() <= MAX_FILTER_VALUES {
        request = request.filters(filter("group-id", group_ids.to_vec()));
    }
    let mut pages = request.into_paginator().send();
    let mut counts: HashMap<String, usize> = HashMap::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::Aws(failure("DescribeNetworkInterfaces", &e)))?;
        for interface in page.network_interfaces() {
            for g in interface.groups() {
                if let Some(id) = g.group_id() {
                    *counts.entry(id.to_string()).or_default() += 1;
                }
            }
        }
    }
    Ok(counts)
}

/// The destination (egress) or source (ingress) of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Peer {
    /// An IPv4 range.
    Cidr(String),
    /// An IPv6 range.
    Ipv6Cidr(String),
    /// A managed prefix list.
    PrefixListId(String),
    /// Another security group.
    GroupId(String),
}

impl Peer {
    /// True for `0.0.0.0/0` and `::/0`: the whole internet.
    pub fn is_open(&self) -> bool {
        matches!(self, Peer::Cidr(c) if c == "0.0.0.0/0")
            || matches!(self, Peer::Ipv6Cidr(c) if c == "::/0")
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Cidr(c) | Peer::Ipv6Cidr(c) => f.write_str(c),
            Peer::PrefixListId(p) => f.write_str(p),
            Peer::GroupId(g) => write!(f, "group {g}"),
        }
    }
}

/// One security-group rule. Two rules are the same rule when protocol, ports and peer
/// agree ([`Rule::key`]); the description is carried but not part of identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The rule id; `None` for a rule that only exists after apply.
    #[serde(serialize_with = "ser_rule_id", deserialize_with = "de_rule_id")]
    pub rule_id: Option<String>,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `-1` (all) or a protocol number.
    pub protocol: String,
    /// First port (or ICMP type); `None` for all protocols.
    pub from_port: Option<i32>,
    /// Last port (or ICMP code); `None` for all protocols.
    pub to_port: Option<i32>,
    /// Where traffic goes (egress) or comes from (ingress).
    pub peer: Peer,
    /// The rule's description.
    #[serde(default)]
    pub description: Option<String>,
}

/// Identity of a rule: protocol, ports and peer, normalised.
pub type RuleKey = (String, Option<i32>, Option<i32>, Peer);

impl Rule {
    /// Builds a rule, normalising protocol names and the ports of all-protocol rules.
    pub fn new(
        rule_id: Option<String>,
        protocol: &str,
        from_port: Option<i32>,
        to_port: Option<i32>,
        peer: Peer,
        description: Option<String>,
    ) -> Self {
        let protocol = normalize_protocol(protocol);
        let (from_port, to_port) = if protocol == "-1" {
            (None, None)
        } else {
            (from_port, to_port)
        };
        Self {
            rule_id,
            protocol,
            from_port,
            to_port,
            peer,
            description: description.filter(|d| !d.is_empty()),
        }
    }

    /// Identity of the rule.
    pub fn key(&self) -> RuleKey {
        (
            self.protocol.clone(),
            self.from_port,
            self.to_port,
            self.peer.clone(),
        )
    }

    /// True for a rule to or from the whole internet.
    pub fn is_open(&self) -> bool {
        self.peer.is_open()
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = if self.protocol == "-1" {
            "all"
        } else {
            self.protocol.as_str()
        };
        match (self.from_port, self.to_port) {
            (Some(a), Some(b)) if a == b => write!(f, "{protocol} {a} {}", self.peer)?,
            (Some(a), Some(b)) => write!(f, "{protocol} {a}-{b} {}", self.peer)?,
            _ => write!(f, "{protocol} {}", self.peer)?,
        }
        if let Some(id) = &self.rule_id {
            write!(f, " ({id})")?;
        }
        Ok(())
    }
}

/// Lowercase names for the protocols AWS may answer with numbers; `-1` for all.
pub fn normalize_protocol(protocol: &str) -> String {
    match protocol.trim().to_ascii_lowercase().as_str() {
        "6" => "tcp".into(),
        "17" => "udp".into(),
        "1" => "icmp".into(),
        "58" => "icmpv6".into(),
        "all" | "-1" => "-1".into(),
        other => other.into(),
    }
}

fn ser_rule_id<S: Serializer>(id: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(id.as_deref().unwrap_or(KNOWN_AFTER_APPLY))
}

fn de_rule_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let id = String::deserialize(d)?;
    Ok((id != KNOWN_AFTER_APPLY).then_some(id))
}

/// Sorts rules by identity so two reads of the same state compare equal.
pub fn sort_rules(rules: &mut [Rule]) {
    rules.sort_by(|a, b| {
        (a.key(), &a.description, &a.rule_id).cmp(&(b.key(), &b.description, &b.rule_id))
    });
}

/// A security group with its rules and how many network interfaces use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    /// `sg-...`.
    pub id: String,
    /// Group name; a VPC's default group is named `default`.
    pub name: String,
    /// Group description.
    pub description: String,
    /// The VPC, when the group belongs to one.
    pub vpc_id: Option<String>,
    /// Owning account.
    pub owner_id: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Network interfaces that use the group.
    pub interface_count: usize,
    /// Inbound rules, sorted.
    pub ingress: Vec<Rule>,
    /// Outbound rules, sorted.
    pub egress: Vec<Rule>,
}

impl SecurityGroup {
    /// True for the default group of a VPC.
    pub fn is_default(&self) -> bool {
        self.name == "default"
    }

    /// The part of the group changes act on, as recorded in a change's before/after.
    pub fn rules_state(&self) -> SecurityGroupRules {
        SecurityGroupRules {
            ingress: self.ingress.clone(),
            egress: self.egress.clone(),
        }
    }
}

/// The rules of a group: the state a security-group change reads, compares and verifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupRules {
    /// Inbound rules, sorted.
    pub ingress: Vec<Rule>,
    /// Outbound rules, sorted.
    pub egress: Vec<Rule>,
}

impl Kind for SecurityGroup {
    const NAME: &'static str = "ec2:security-group";
    const FILTERS: &'static [&'static str] = &[
        "group-id",
        "group-name",
        "vpc-id",
        "tag-key",
        "description",
        "owner-id",
    ];
    const NARROWING: Narrowing = Narrowing::ById("group-id");
    const UNDONE_BY: &'static [KnownEvent] = &[
        KnownEvent::new("AuthorizeSecurityGroupEgress", "ec2.amazonaws.com"),
        KnownEvent::new("AuthorizeSecurityGroupIngress", "ec2.amazonaws.com"),
        KnownEvent::new("ModifySecurityGroupRules", "ec2.amazonaws.com"),
        KnownEvent::new("CreateSecurityGroup", "ec2.amazonaws.com"),
        KnownEvent::new(
            "UpdateSecurityGroupRuleDescriptionsEgress",
            "ec2.amazonaws.com",
        ),
    ];

    fn sample() -> Self {
        SecurityGroup {
            id: "sg-00000000000000000".into(),
            name: "sample".into(),
            description: "sample".into(),
            vpc_id: Some("vpc-00000000000000000".into()),
            owner_id: "000000000000".into(),
            tags: BTreeMap::new(),
            interface_count: 0,
            ingress: Vec::new(),
            egress: Vec::new(),
        }
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.tags)
    }

    fn template_facts(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![("is_default", self.is_default().into())]
    }

    /// Discovers security groups matching `filters`, with their rules (by rule id) and
    /// how many network interfaces use them: three paginated list calls per region,
    /// whatever the number of groups.
    async fn discover(clients: &RegionClients, filters: &Filters) -> Result<Vec<Self>> {
        let mut request = clients.ec2.describe_security_groups().max_results(MAX_PAGE);
        for (name, values) in filters {
            request = request.filters(filter(name, values.clone()));
        }
        let mut pages = request.into_paginator().send();
        let mut groups = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Error::Aws(failure("DescribeSecurityGroups", &e)))?;
            for g in page.security_groups() {
                let Some(id) = g.group_id() else { continue };
                groups.push(SecurityGroup {
                    id: id.to_string(),
                    name: g.group_name().unwrap_or_default().to_string(),
                    description: g.description().unwrap_or_default().to_string(),
                    vpc_id: g.vpc_id().map(str::to_string),
                    owner_id: g.owner_id().unwrap_or_default().to_string(),
                    tags: super::ec2_tags(g.tags()),
                    interface_count: 0,
                    ingress: Vec::new(),
                    egress: Vec::new(),
                });
            }
        }
        if groups.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
        let (mut rules, counts) =
            tokio::try_join!(list_rules(clients, &ids), interface_counts(clients, &ids))?;
        Ok(groups
            .into_iter()
            .map(|mut g| {
                if let Some((mut ingress, mut egress)) = rules.remove(&g.id) {
                    sort_rules(&mut ingress);
                    sort_rules(&mut egress);
                    g.ingress = ingress;
                    g.egress = egress;
                }
                g.interface_count = counts.get(&g.id).copied().unwrap_or(0);
                g
            })
            .collect())
    }
}

/// Reads one group's rules: the state changes compare and verify.
pub async fn read_rules(clients: &RegionClients, group_id: &str) -> Result<SecurityGroupRules> {
    let mut rules = list_rules(clients, &[group_id.to_string()]).await?;
    let (ingress, egress) = rules.remove(group_id).unwrap_or_default();
    Ok(sorted(ingress, egress))
}

/// A group's rules in the order its state lists them.
fn sorted(mut ingress: Vec<Rule>, mut egress: Vec<Rule>) -> SecurityGroupRules {
    sort_rules(&mut ingress);
    sort_rules(&mut egress);
    SecurityGroupRules { ingress, egress }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

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

    use super::*;

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
        let before = state(&SecurityGroupRules {
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
        let after = state(&SecurityGroupRules {
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
}
