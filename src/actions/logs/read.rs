use std::collections::BTreeMap;

use crate::aws::{Answer, RegionClients};
use crate::error::Result;

use super::kind::LogGroup;

/// Reads a log group by name (a prefix query, then the exact name); a missing one is
/// `exists: false`.
pub async fn read_log_group(clients: &RegionClients, name: &str) -> Result<LogGroup> {
    let mut pages = clients
        .logs
        .describe_log_groups()
        .log_group_name_prefix(name)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.or_failure("DescribeLogGroups")?;
        if let Some(group) = page
            .log_groups()
            .iter()
            .find(|g| g.log_group_name() == Some(name))
        {
            return Ok(LogGroup {
                name: name.to_string(),
                exists: true,
                arn: group
                    .arn()
                    .map(|arn| arn.trim_end_matches(":*").to_string()),
                retention_days: group.retention_in_days(),
                kms_key_id: group.kms_key_id().map(str::to_string),
                tags: BTreeMap::new(),
            });
        }
    }
    Ok(LogGroup::missing(name))
}
