//! Discovery: read-only list calls that fill the inventory. Each distinct query (kind
//! plus rendered filters) runs once per region per plan, whatever the number of
//! runbooks asking for it; queries run concurrently, and so do regions.

use std::collections::{BTreeMap, HashMap};

use futures::future::{join_all, try_join_all};

use crate::actions::{
    cloudtrail, config, ebs, ebs_instances, ebs_volumes, events, flow_logs, iam, logs, s3,
    security_group, sns, sqs,
};
use crate::aws::RegionClients;
use crate::error::Result;
use crate::inventory::{Resource, ResourceKind};

/// One list query: a resource kind and server-side filters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Query {
    /// What to list.
    pub kind: ResourceKind,
    /// Filter name to accepted values.
    pub filters: BTreeMap<String, Vec<String>>,
}

/// Runs one query.
pub async fn run(clients: &RegionClients, query: &Query) -> Result<Vec<Resource>> {
    let found = match query.kind {
        ResourceKind::SecurityGroup => security_group::discover(clients, &query.filters).await?,
        ResourceKind::EbsEncryptionDefault => ebs::discover(clients).await?,
        ResourceKind::Bucket => {
            named(
                &query.filters,
                "name",
                |n| s3::read_bucket(clients, n),
                Resource::Bucket,
            )
            .await?
        }
        ResourceKind::Vpc => flow_logs::discover(clients, &query.filters).await?,
        ResourceKind::Trails => cloudtrail::discover(clients).await?,
        ResourceKind::ConfigRecorder => config::discover(clients).await?,
        ResourceKind::Role => {
            named(
                &query.filters,
                "name",
                |n| iam::read_role(clients, n),
                Resource::Role,
            )
            .await?
        }
        ResourceKind::ServiceLinkedRole => {
            named(
                &query.filters,
                "service",
                |s| iam::read_service_linked_role(clients, s),
                Resource::ServiceLinkedRole,
            )
            .await?
        }
        ResourceKind::Volume => ebs_volumes::discover(clients, &query.filters).await?,
        ResourceKind::Instance => ebs_instances::discover(clients, &query.filters).await?,
        ResourceKind::LogGroup => {
            named(
                &query.filters,
                "name",
                |n| logs::read_log_group(clients, n),
                Resource::LogGroup,
            )
            .await?
        }
        ResourceKind::Queue => {
            named(
                &query.filters,
                "name",
                |n| sqs::queue::read_queue(clients, n),
                Resource::Queue,
            )
            .await?
        }
        ResourceKind::EventRule => {
            named(
                &query.filters,
                "name",
                |n| events::rule::read_rule(clients, n),
                Resource::EventRule,
            )
            .await?
        }
        ResourceKind::Topic => {
            named(
                &query.filters,
                "name",
                |n| sns::read_topic(clients, n),
                Resource::Topic,
            )
            .await?
        }
    };
    tracing::debug!(region = %clients.region, kind = %query.kind, filters = ?query.filters, found = found.len(), "discovered");
    Ok(found)
}

/// Looks up, concurrently, each value the `key` filter gives: the kinds that are named
/// rather than listed (buckets, roles and log groups by name, service-linked roles by
/// service), where a missing one is a resource with `exists: false`.
async fn named<'a, T, F, Fut>(
    filters: &'a BTreeMap<String, Vec<String>>,
    key: &str,
    read: F,
    resource: fn(T) -> Resource,
) -> Result<Vec<Resource>>
where
    F: Fn(&'a str) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let names = filters.get(key).into_iter().flatten();
    let found = try_join_all(names.map(|n| read(n.as_str()))).await?;
    Ok(found.into_iter().map(resource).collect())
}

/// Runs each distinct query once, concurrently, and answers for each: a query that
/// fails does not hide what the others found (its runbooks are left out of the region's
/// plan; the rest is planned). Throttling is waited out until `deadline`.
pub async fn run_all(
    clients: &RegionClients,
    queries: &[Query],
    deadline: std::time::Instant,
) -> HashMap<Query, Result<Vec<Resource>>> {
    let mut distinct: Vec<&Query> = queries.iter().collect();
    distinct.sort();
    distinct.dedup();
    // A throttled list is sent again until the deadline, like a change's calls.
    let results = join_all(
        distinct
            .iter()
            .map(|q| crate::aws::persist::persist(deadline, || run(clients, q))),
    )
    .await;
    distinct.into_iter().cloned().zip(results).collect()
}
