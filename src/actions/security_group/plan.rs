//! The egress-restriction and group-closing actions: pure, exact plans of rule changes.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::actions::{
    Action, ActionInfo, ActionPlan, ArgSpec, Calls, ChangeDraft, Inverse, Resource, ResourceKind,
    arg, arguments_of, state_of, typed_args,
};
use crate::plan::{ApiCall, BlockReason, ChangeKind};
use crate::template::KNOWN_AFTER_APPLY;

use super::calls::{SecurityGroupCalls, permission_input, rule_request_input};
use super::kind::SecurityGroup;
use super::rule::{Rule, RuleKey, describe_rules, parse_allowed, sort_rules};
use super::undo::inverse;

pub(super) fn group(target: &Resource) -> std::result::Result<&SecurityGroup, String> {
    match target {
        Resource::SecurityGroup(g) => Ok(g),
        other => Err(format!("expected a security group, given {}", other.kind())),
    }
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
                before: state_of(&before),
                after: state_of(&current.rules_state()),
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
                before: state_of(&before),
                after: state_of(&current.rules_state()),
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
        before: state_of(&before),
        after: state_of(&current.rules_state()),
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
