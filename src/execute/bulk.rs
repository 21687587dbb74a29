//! Reading a stage's resources in bulk. Where a concern's API lists many resources in
//! one call ([`actions::Calls::read_many`]: up to 200 security groups per
//! `DescribeSecurityGroupRules`), a stage's chains in one account-region go in pages of
//! up to that many: one read for the page before its calls (each chain's first stale
//! check), the calls `--concurrency` at a time, and one read after them (each chain's
//! last read-back). So a change costs its call and a share of two reads instead of a
//! read, the call and a read-back; on AWS those reads draw on the describe bucket every
//! other tool in the account shares.
//!
//! Every change keeps its own stale check, read-back, journal line and audit record.
//! A change whose bulk read-back does not show it made is read again alone before it is
//! called a failure; a chain's changes before its last read between them as before (a
//! later change builds on the earlier one's result); a failed bulk read falls back to
//! reading each resource alone. Under `--fail-fast` nothing is paged: a page's calls go
//! out before any is verified, and fail-fast promises to stop at the first failure.

use futures::future;
use serde_json::Value;

use super::Run;
use super::journal::Phase;
use super::lifecycle::{Walk, Walked};
use super::schedule::Unit;
use crate::actions::{self, Calls};
use crate::audit::Outcome;
use crate::aws::{RegionClients, persist};
use crate::plan::Plan;

/// A page: chains (each a list of change indices) read together.
type Page = Vec<Vec<usize>>;

/// A stage's units in one account-region as pages, when they can be read in bulk: at
/// least two chains, all of one action whose calls read many resources at once, and no
/// `--fail-fast`. Otherwise the units, unchanged.
pub(super) fn pages(
    plan: &Plan,
    units: Vec<Unit>,
    fail_fast: bool,
) -> std::result::Result<Vec<Page>, Vec<Unit>> {
    let action = units
        .first()
        .map(|u| plan.changes[u.first()].action.as_str());
    let limit = action
        .and_then(actions::find)
        .map_or(1, |a| a.calls().read_many_limit());
    let pageable = |unit: &Unit| {
        matches!(unit, Unit::Chain(_)) && Some(plan.changes[unit.first()].action.as_str()) == action
    };
    if fail_fast || limit <= 1 || units.len() < 2 || !units.iter().all(pageable) {
        return Err(units);
    }
    let chains: Vec<Vec<usize>> = units
        .into_iter()
        .filter_map(|unit| match unit {
            Unit::Chain(chain) => Some(chain),
            Unit::Batch(_) => None,
        })
        .collect();
    Ok(chains.chunks(limit).map(<[_]>::to_vec).collect())
}

impl Run<'_> {
    /// Applies one page of chains: one read before, the chains `concurrency` at a time
    /// with their last calls left unconcluded, one read after, then each concluded.
    ///
    /// `known`: the states of the page's resources, read with the stage's (see
    /// [`Run::read_stage`]); when `None` the page reads its own.
    pub(super) async fn page(
        &self,
        stage: usize,
        page: Page,
        known: Option<Vec<Value>>,
        concurrency: usize,
    ) -> Vec<(usize, Outcome)> {
        let lead = page
            .first()
            .and_then(|chain| chain.first())
            .map(|index| &self.plan.changes[*index]);
        let found =
            lead.and_then(|lead| Some((lead, actions::find(&lead.action)?, self.clients(lead)?)));
        let Some((lead, action, clients)) = found else {
            // No clients or no action: each chain reports it as its own failure.
            let mut outcomes = Vec::new();
            for chain in page {
                outcomes.extend(self.chain(stage, chain).await);
            }
            return outcomes;
        };
        let calls = action.calls();
        let (account, region) = (lead.account_id.as_str(), lead.region.as_str());
        let first_ids: Vec<String> = page
            .iter()
            .map(|chain| self.plan.changes[chain[0]].resource.id.clone())
            .collect();
        let known = match known {
            Some(states) if states.len() == first_ids.len() => {
                states.into_iter().map(Some).collect()
            }
            _ => self.read_many(calls, &clients, &first_ids).await,
        };
        // The chains go `concurrency` at a time, each window's first `started` lines in
        // one sync just before its calls: `started` says a call may be under way, so
        // it is written for no more calls than are made at once (resume reads back
        // what it finds). When that cannot be written, each chain journals its own
        // and fails on it.
        let mut known = known.into_iter();
        let mut walked: Vec<Walked> = Vec::with_capacity(page.len());
        for window in page.chunks(concurrency.max(1)) {
            let started: Vec<_> = window
                .iter()
                .map(|chain| (self.plan.changes[chain[0]].id.clone(), Phase::Started, None))
                .collect();
            let how = Walk::Paged {
                started_journaled: self.journal.record_all(started).is_ok(),
            };
            let walks = window
                .iter()
                .zip(known.by_ref())
                .map(|(chain, known)| self.walk(stage, chain, known, how));
            walked.extend(future::join_all(walks).await);
        }
        let called_ids: Vec<String> = walked
            .iter()
            .filter_map(|w| w.pending.as_ref())
            .map(|(index, _, _)| self.plan.changes[*index].resource.id.clone())
            .collect();
        let mut read_back = self
            .read_many(calls, &clients, &called_ids)
            .await
            .into_iter();
        self.hold_records(account, region);
        let mut ended = Vec::with_capacity(page.len());
        for (chain, mut walked) in page.iter().zip(walked) {
            if let Some((index, ready, result)) = walked.pending.take() {
                let change = &self.plan.changes[index];
                let state = read_back.next().flatten();
                let (outcome, _) = self.conclude(change, ready, result, state).await;
                self.note_failure(stage, change, &outcome);
                walked.outcomes.push((index, outcome));
            }
            ended.push((chain, walked));
        }
        self.write_held(account, region);
        // Putting back a chain that stopped part-way calls AWS: only once every
        // record of the page is written.
        let mut outcomes = Vec::new();
        for (chain, walked) in ended {
            outcomes.extend(self.end_chain(chain, walked.outcomes, walked.called).await);
        }
        outcomes
    }

    /// The states of all the pages' resources, when listing the whole region takes no
    /// more calls than reading each page by filter (one call a page): on AWS a stage
    /// over most of a region's groups reads it in fewer calls (1000 rules a page
    /// against 200 groups a filter), and the service scans the region once instead of
    /// once a page. Each page's states, in order; `None` (each page reads its own) when
    /// the region is larger, the concern cannot list it, or the read fails.
    pub(super) async fn read_stage(&self, pages: &[Page]) -> Option<Vec<Vec<Value>>> {
        let lead = &self.plan.changes[*pages.first()?.first()?.first()?];
        let calls = actions::find(&lead.action)?.calls();
        let clients = self.clients(lead)?;
        let ids: Vec<String> = pages
            .iter()
            .flatten()
            .map(|chain| self.plan.changes[chain[0]].resource.id.clone())
            .collect();
        let read = persist::persist(self.deadline, || {
            calls.read_from_region(&clients, &ids, pages.len())
        })
        .await;
        let mut states = match read {
            Ok(Some(states)) if states.len() == ids.len() => states.into_iter(),
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(resources = ids.len(), error = %e, "reading the region failed; reading page by page");
                return None;
            }
        };
        Some(
            pages
                .iter()
                .map(|page| states.by_ref().take(page.len()).collect())
                .collect(),
        )
    }

    /// The states of `ids` read in bulk, throttling waited out until the deadline. A
    /// failed read answers `None` for each: every change then reads alone, as without
    /// bulk reads, and its own read reports what is wrong.
    async fn read_many(
        &self,
        calls: &dyn Calls,
        clients: &RegionClients,
        ids: &[String],
    ) -> Vec<Option<Value>> {
        if ids.is_empty() {
            return Vec::new();
        }
        match persist::persist(self.deadline, || calls.read_many(clients, ids)).await {
            Ok(states) if states.len() == ids.len() => states.into_iter().map(Some).collect(),
            Ok(states) => {
                tracing::warn!(
                    asked = ids.len(),
                    answered = states.len(),
                    "a bulk read answered for a different number of resources; reading each alone"
                );
                vec![None; ids.len()]
            }
            Err(e) => {
                tracing::warn!(resources = ids.len(), error = %e, "a bulk read failed; reading each alone");
                vec![None; ids.len()]
            }
        }
    }
}
