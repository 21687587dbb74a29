use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;
use serde::{Deserialize, Serialize};

use crate::aws::{Answer, RegionClients};
use crate::error::Result;
use crate::event::KnownEvent;
use crate::inventory::{Filters, Kind, Narrowing};

use super::read::{MAX_PAGE, list_flow_logs};

/// A VPC and its flow logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    /// `vpc-...`.
    pub id: String,
    /// Primary IPv4 range.
    pub cidr_block: String,
    /// The region's default VPC.
    pub is_default: bool,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Flow logs on the VPC, sorted by [`sort_flow_logs`].
    pub flow_logs: Vec<FlowLog>,
}

/// One flow log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowLog {
    /// `fl-...`; `(known after apply)` for one apply creates.
    pub id: String,
    /// `ACCEPT`, `REJECT` or `ALL`.
    pub traffic_type: String,
    /// `s3`, `cloud-watch-logs` or `kinesis-data-firehose`.
    pub destination_type: String,
    /// The destination ARN (or log group name).
    pub destination: String,
    /// `ACTIVE` once created.
    pub status: String,
}

impl FlowLog {
    /// True when it records `traffic_type` (ALL records everything) and is active.
    pub fn covers(&self, traffic_type: &str) -> bool {
        self.status == "ACTIVE" && (self.traffic_type == "ALL" || self.traffic_type == traffic_type)
    }
}

/// Sorts flow logs by what they do before their id, so a planned flow log (id not yet
/// known) sits where the read-back will put it.
pub fn sort_flow_logs(logs: &mut [FlowLog]) {
    logs.sort_by(|a, b| {
        (
            &a.destination,
            &a.traffic_type,
            &a.destination_type,
            &a.status,
            &a.id,
        )
            .cmp(&(
                &b.destination,
                &b.traffic_type,
                &b.destination_type,
                &b.status,
                &b.id,
            ))
    });
}

impl Kind for Vpc {
    const NAME: &'static str = "ec2:vpc";
    const FILTERS: &'static [&'static str] =
        &["vpc-id", "is-default", "tag-key", "owner-id", "cidr"];
    const NARROWING: Narrowing = Narrowing::ById("vpc-id");
    const UNDONE_BY: &'static [KnownEvent] = &[
        KnownEvent::new("DeleteFlowLogs", "ec2.amazonaws.com"),
        KnownEvent::new("CreateVpc", "ec2.amazonaws.com"),
    ];

    fn sample() -> Self {
        Vpc {
            id: "vpc-00000000000000000".into(),
            cidr_block: "10.0.0.0/16".into(),
            is_default: false,
            tags: BTreeMap::new(),
            flow_logs: Vec::new(),
        }
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.tags)
    }

    /// Lists VPCs (server-side filters) and every flow log of the region: two paginated
    /// calls whatever the number of VPCs.
    async fn discover(clients: &RegionClients, filters: &Filters) -> Result<Vec<Self>> {
        let mut request = clients.ec2.describe_vpcs().max_results(MAX_PAGE);
        for (name, values) in filters {
            request = request.filters(
                Filter::builder()
                    .name(name)
                    .set_values(Some(values.clone()))
                    .build(),
            );
        }
        let mut pages = request.into_paginator().send();
        let mut vpcs = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.or_failure("DescribeVpcs")?;
            for v in page.vpcs() {
                let Some(id) = v.vpc_id() else { continue };
                vpcs.push(Vpc {
                    id: id.to_string(),
                    cidr_block: v.cidr_block().unwrap_or_default().to_string(),
                    is_default: v.is_default().unwrap_or(false),
                    tags: crate::actions::ec2_tags(v.tags()),
                    flow_logs: Vec::new(),
                });
            }
        }
        if vpcs.is_empty() {
            return Ok(Vec::new());
        }
        let mut logs = list_flow_logs(clients, None).await?;
        Ok(vpcs
            .into_iter()
            .map(|mut vpc| {
                vpc.flow_logs = logs.remove(&vpc.id).unwrap_or_default();
                sort_flow_logs(&mut vpc.flow_logs);
                vpc
            })
            .collect())
    }
}
