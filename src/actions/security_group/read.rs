//! Reading rules: one group's, many groups' by filter, or a whole region's in pages.

use std::collections::HashMap;

use aws_sdk_ec2::types::Filter;
use serde_json::Value;

use crate::actions::state_of;
use crate::aws::{Answer, RegionClients};
use crate::error::Result;

use super::kind::SecurityGroupRules;
use super::rule::{Peer, Rule, sort_rules};

/// The largest page EC2's describe calls accept.
pub(super) const MAX_PAGE: i32 = 1000;
/// EC2 accepts at most this many values in one filter.
pub(super) const MAX_FILTER_VALUES: usize = 200;

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

pub(super) fn filter(name: &str, values: Vec<String>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values))
        .build()
}

/// Rules by group id: (ingress, egress).
type RulesByGroup = HashMap<String, (Vec<Rule>, Vec<Rule>)>;

/// Lists rules, filtered to `group_ids` when there are few enough to filter by.
pub(super) async fn list_rules(
    clients: &RegionClients,
    group_ids: &[String],
) -> Result<RulesByGroup> {
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
        let page = page.or_failure("DescribeSecurityGroupRules")?;
        add_rules(&mut rules, page.security_group_rules());
    }
    Ok(rules)
}

/// Lists every rule of the region and the pages that took, unless it takes more than
/// `requests` pages: then `None`, and no request beyond those.
pub(super) async fn list_region_rules(
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
            .or_failure("DescribeSecurityGroupRules")?;
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
pub(super) fn states_of(
    mut rules: RulesByGroup,
    group_ids: &[String],
) -> impl ExactSizeIterator<Item = Value> + Send + 'static {
    Vec::from(group_ids).into_iter().map(move |id| {
        let (ingress, egress) = rules.remove(&id).unwrap_or_default();
        state_of(&sorted(ingress, egress))
    })
}

/// Counts the network interfaces using each group.
pub(super) async fn interface_counts(
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
        let page = page.or_failure("DescribeNetworkInterfaces")?;
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

/// Reads one group's rules: the state changes compare and verify.
pub async fn read_rules(clients: &RegionClients, group_id: &str) -> Result<SecurityGroupRules> {
    let mut rules = list_rules(clients, &[group_id.to_string()]).await?;
    let (ingress, egress) = rules.remove(group_id).unwrap_or_default();
    Ok(sorted(ingress, egress))
}

/// A group's rules in the order its state lists them.
pub(super) fn sorted(mut ingress: Vec<Rule>, mut egress: Vec<Rule>) -> SecurityGroupRules {
    sort_rules(&mut ingress);
    sort_rules(&mut egress);
    SecurityGroupRules { ingress, egress }
}
