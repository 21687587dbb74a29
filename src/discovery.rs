//! Discovery: read-only list calls that fill the inventory. Each distinct query (kind
//! plus rendered filters) runs once per region per plan, whatever the number of
//! runbooks asking for it; queries run concurrently, and so do regions. What a query
//! reads is its kind's [`crate::inventory::Kind::discover`].

use std::collections::{BTreeMap, HashMap};

use futures::future::join_all;

use crate::actions::{Resource, ResourceKind};
use crate::aws::RegionClients;
use crate::error::Result;

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
    let found = query.kind.discover(clients, &query.filters).await?;
    tracing::debug!(region = %clients.region, kind = %query.kind, filters = ?query.filters, found = found.len(), "discovered");
    Ok(found)
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
