//! The EC2 calls of this concern as typed inputs in AWS's field names, so the plan shows
//! what is sent, and how each is applied and probed.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use aws_sdk_ec2::operation::RequestId;
use aws_sdk_ec2::types::{
    IpPermission, IpRange, Ipv6Range, PrefixListId, SecurityGroupRuleRequest,
    SecurityGroupRuleUpdate, UserIdGroupPair,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::actions::{Applied, Calls, RegionRead, state_of, typed_call};
use crate::aws::{Answer, RegionClients};
use crate::error::{Error, Result};
use crate::plan::{Change, Probe};
use crate::template::KNOWN_AFTER_APPLY;

use super::kind::SecurityGroupRules;
use super::read::{MAX_FILTER_VALUES, list_region_rules, list_rules, read_rules, states_of};
use super::rule::{Peer, Rule, RuleKey};

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
            ..crate::actions::Rights::NONE
        }
    }

    fn check(&self, change: &Change) -> Result<()> {
        typed_call::<GroupCall>(change).map(drop)
    }

    async fn read(&self, clients: &RegionClients, resource_id: &str) -> Result<Value> {
        Ok(state_of(&read_rules(clients, resource_id).await?))
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
        Ok(states_of(rules, resource_ids).collect())
    }

    async fn read_from_region(
        &self,
        clients: &RegionClients,
        resource_ids: &[String],
        requests: usize,
    ) -> Result<Option<RegionRead>> {
        let listed = list_region_rules(clients, requests).await?;
        Ok(listed.map(|(rules, requests)| RegionRead {
            states: Box::new(states_of(rules, resource_ids)),
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

pub(super) fn permission_input(rule: &Rule) -> Value {
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

pub(super) fn rule_request_input(rule: &Rule) -> Value {
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
                .or_failure(operation)?;
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
                .or_failure(operation)?;
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
                .or_failure(operation)?;
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

pub(super) fn refused(operation: &str, request_id: Option<&str>) -> Error {
    Error::Aws(crate::error::AwsFailure {
        operation: operation.to_string(),
        code: "ReturnedFalse".into(),
        message: "the service answered without error but reported the change as not made".into(),
        request_id: request_id.map(str::to_string),
    })
}

async fn probe_call(clients: &RegionClients, change: &Change) -> Probe {
    crate::actions::dry_run_answer(apply_call(clients, change, &change.before, true).await)
}
