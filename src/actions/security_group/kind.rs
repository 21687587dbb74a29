//! The security group as a resource kind: its state, discovery and template facts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aws::{Answer, RegionClients};
use crate::error::Result;
use crate::event::KnownEvent;
use crate::inventory::{Filters, Kind, Narrowing};

use super::read::{MAX_PAGE, filter, interface_counts, list_rules};
use super::rule::{Rule, sort_rules};

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
            let page = page.or_failure("DescribeSecurityGroups")?;
            for g in page.security_groups() {
                let Some(id) = g.group_id() else { continue };
                groups.push(SecurityGroup {
                    id: id.to_string(),
                    name: g.group_name().unwrap_or_default().to_string(),
                    description: g.description().unwrap_or_default().to_string(),
                    vpc_id: g.vpc_id().map(str::to_string),
                    owner_id: g.owner_id().unwrap_or_default().to_string(),
                    tags: crate::actions::ec2_tags(g.tags()),
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
