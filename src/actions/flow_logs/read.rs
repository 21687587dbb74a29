use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;

use crate::aws::{Answer, RegionClients};
use crate::error::Result;

use super::kind::FlowLog;

pub(super) const MAX_PAGE: i32 = 1000;

/// Flow logs of VPCs, by VPC id: of one VPC, or of every resource in the region.
pub(super) async fn list_flow_logs(
    clients: &RegionClients,
    vpc_id: Option<&str>,
) -> Result<BTreeMap<String, Vec<FlowLog>>> {
    let mut request = clients.ec2.describe_flow_logs().max_results(MAX_PAGE);
    if let Some(id) = vpc_id {
        request = request.filter(Filter::builder().name("resource-id").values(id).build());
    }
    let mut pages = request.into_paginator().send();
    let mut logs: BTreeMap<String, Vec<FlowLog>> = BTreeMap::new();
    while let Some(page) = pages.next().await {
        let page = page.or_failure("DescribeFlowLogs")?;
        for f in page.flow_logs() {
            let Some(resource) = f.resource_id() else {
                continue;
            };
            logs.entry(resource.to_string()).or_default().push(FlowLog {
                id: f.flow_log_id().unwrap_or_default().to_string(),
                traffic_type: f
                    .traffic_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                destination_type: f
                    .log_destination_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                destination: f
                    .log_destination()
                    .or(f.log_group_name())
                    .unwrap_or_default()
                    .to_string(),
                status: f.flow_log_status().unwrap_or_default().to_string(),
            });
        }
    }
    Ok(logs)
}
