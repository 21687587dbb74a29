//! Reading a stage's resources in bulk. Where a concern's API lists many resources in
//! one call ([`actions::Calls::read_many`]: up to 200 security groups per
//! `DescribeSecurityGroupRules`), a stage's chains in one account-region go in pages of
//! up to that many: one read for the page before its calls (each chain's first stale
//! check), the calls `--concurrency` at a time, and one read after them (each chain's
//! last read-back). So a change costs its call and a share of two reads instead of a
//! read, the call and a read-back; on AWS those reads draw on the describe bucket every
//! other tool in the account shares.
//!
//! A stage over most of a region reads it by listing the region instead
//! ([`actions::Calls::read_from_region`], 1000 rules a call), when that takes fewer
//! calls: once before the stage instead of each page's read before, and, when listing
//! the region after each page of up to [`REGION_PAGE`] chains (fewer when EC2 paces the
//! calls: what it lets through in [`PAGE_SECONDS`]) takes fewer calls than
//! reading each page of 200 back by filter, after each such page. The service then
//! scans the region once a read rather than once for each id of a filter.
//!
//! Every change keeps its own stale check, read-back, journal line and audit record.
//! A change whose bulk read-back does not show it made is read again alone before it is
//! called a failure; a chain's changes before its last read between them as before (a
//! later change builds on the earlier one's result); a failed bulk read falls back to
//! reading by filter, and a failed read by filter to reading each resource alone.
//! Under `--fail-fast` nothing is paged: a page's calls go out before any is verified,
//! and fail-fast promises to stop at the first failure.

use futures::future;
use serde_json::Value;

use super::Run;
use super::journal::Phase;
use super::lifecycle::{Seen, Walk, Walked};
use super::schedule::Unit;
use crate::actions::{self, Calls, RegionRead};
use crate::audit::Outcome;
use crate::aws::limiter::Rate;
use crate::aws::{RegionClients, persist};
use crate::plan::{Change, Plan};

/// A page: chains (each a list of change indices) read together.
type Page = Vec<Vec<usize>>;

/// The most chains of a page that reads back by listing the region. Each of its
/// read-backs lists the whole region, so the larger the page the fewer listings. What a
/// page holds does not grow with it (states as planned are markers, records are written
/// in parts), but its changes' records wait for its read-back, and a crash leaves its
/// calls for resume to read back: see [`PAGE_SECONDS`].
pub(super) const REGION_PAGE: usize = 3000;

/// When EC2 paces the calls, a page holds what its bucket lets through in about this
/// long (the burst, then the refill rate): at the default 5 mutations a second, 350
/// chains, so no change's record waits for much more than a minute.
pub(super) const PAGE_SECONDS: f64 = 60.0;

/// How a stage's pages read their resources after their calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadBack {
    /// Each page by filter, [`Calls::read_many_limit`] resources a call.
    ByFilter,
    /// Each page by listing the region, which took `requests` calls before the stage.
    ByRegion {
        /// The list calls the stage's own listing took.
        requests: usize,
    },
}

/// A stage's chains in one account-region as pages, each with the states read for it
/// before the stage (`None`: the page reads its own), and how the pages read back.
pub(super) struct Pages {
    pub(super) pages: Vec<(Page, Option<Vec<Seen>>)>,
    pub(super) read_back: ReadBack,
}

/// A stage's units in one account-region as chains to read in bulk, when they can be:
/// at least two chains, all of one action whose calls read many resources at once, and
/// no `--fail-fast`. Otherwise the units, unchanged.
pub(super) fn chains(
    plan: &Plan,
    units: Vec<Unit>,
    fail_fast: bool,
) -> std::result::Result<Vec<Vec<usize>>, Vec<Unit>> {
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
    Ok(units
        .into_iter()
        .filter_map(|unit| match unit {
            Unit::Chain(chain) => Some(chain),
            Unit::Batch(_) => None,
        })
        .collect())
}

/// The chains of a page reading back by listing the region, calls paced by `rate`
/// (`None`: not paced).
fn paced_page(rate: Option<Rate>) -> usize {
    match rate {
        Some(rate) => {
            let paced = f64::from(rate.burst) + rate.per_second * PAGE_SECONDS;
            // `as` saturates: a rate set absurdly high is no pacing at all.
            (paced as usize).clamp(1, REGION_PAGE)
        }
        None => REGION_PAGE,
    }
}

/// `chains` in pages of `size`, each with its share of `states` (one per chain, in
/// order) when there are some.
fn in_pages(
    chains: Vec<Vec<usize>>,
    size: usize,
    states: Option<Vec<Seen>>,
) -> Vec<(Page, Option<Vec<Seen>>)> {
    let mut states = states.map(Vec::into_iter);
    chains
        .chunks(size.max(1))
        .map(|page| {
            let known = states
                .as_mut()
                .map(|states| states.by_ref().take(page.len()).collect());
            (page.to_vec(), known)
        })
        .collect()
}

impl Run<'_> {
    /// Applies one page of chains: one read before, the chains `concurrency` at a time
    /// with their last calls left unconcluded, one read after, then each concluded.
    ///
    /// `known`: the states of the page's resources, read with the stage's (see
    /// [`Run::paged`]); when `None` the page reads its own.
    pub(super) async fn page(
        &self,
        stage: usize,
        (page, known): (Page, Option<Vec<Seen>>),
        read_back: ReadBack,
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
        let first_ids = self.first_ids(&page);
        let known: Vec<Option<Seen>> = match known {
            Some(states) if states.len() == first_ids.len() => {
                states.into_iter().map(Some).collect()
            }
            _ => self
                .read_many(calls, &clients, &first_ids)
                .await
                .into_iter()
                .map(|state| state.map(Seen::Read))
                .collect(),
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
        let ids: Vec<String> = walked
            .iter()
            .filter_map(|w| w.pending.as_ref())
            .map(|(index, _, _)| self.plan.changes[*index].resource.id.clone())
            .collect();
        // A listing's states are made as each change is concluded, never a page of
        // them at once.
        let mut read_back = match read_back {
            ReadBack::ByRegion { requests } => {
                self.read_back_region(calls, &clients, &ids, requests).await
            }
            ReadBack::ByFilter => Box::new(self.read_many(calls, &clients, &ids).await.into_iter()),
        };
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

    /// A stage's `chains` in pages, and how they read. Listing the region replaces the
    /// pages' reads before their calls when it takes no more calls than those (one a
    /// page of [`Calls::read_many_limit`]); it replaces their reads back too, in pages
    /// of [`REGION_PAGE`], when listing once a page takes fewer calls than reading
    /// back by filter. On AWS a stage over most of a region's groups reads it so in
    /// fewer calls (1000 rules a listing page against 200 groups a filter); the service
    /// scans the region once a read instead of once for each id of a filter.
    pub(super) async fn paged(&self, chains: Vec<Vec<usize>>) -> Pages {
        let lead = chains
            .first()
            .and_then(|chain| chain.first())
            .map(|index| &self.plan.changes[*index]);
        let calls = lead
            .and_then(|lead| actions::find(&lead.action))
            .map(|a| a.calls());
        let limit = calls.map_or(1, |calls| calls.read_many_limit());
        let by_filter = chains.len().div_ceil(limit.max(1));
        let listed = match (lead, calls) {
            (Some(lead), Some(calls)) => {
                let ids = self.first_ids(&chains);
                self.read_region(lead, calls, &ids, by_filter).await
            }
            _ => None,
        };
        let region_page = lead.map_or(REGION_PAGE, |lead| self.region_page(lead));
        match listed {
            Some(RegionRead { states, requests })
                if requests * chains.len().div_ceil(region_page) < by_filter =>
            {
                let states = self.as_listed(&chains, states);
                Pages {
                    pages: in_pages(chains, region_page, Some(states)),
                    read_back: ReadBack::ByRegion { requests },
                }
            }
            listed => {
                let states = listed.map(|read| self.as_listed(&chains, read.states));
                Pages {
                    pages: in_pages(chains, limit, states),
                    read_back: ReadBack::ByFilter,
                }
            }
        }
    }

    /// The chains of a page reading back by listing the region: [`REGION_PAGE`], or,
    /// when EC2 paces `lead`'s calls, what its bucket lets through in [`PAGE_SECONDS`].
    fn region_page(&self, lead: &Change) -> usize {
        let rate = self
            .sessions
            .get(lead.account_id.as_str())
            .and_then(|session| session.aws.ec2_rate(&lead.call.operation));
        paced_page(rate)
    }

    /// Each chain's listed state against its first change's `before`.
    fn as_listed(&self, chains: &[Vec<usize>], states: impl Iterator<Item = Value>) -> Vec<Seen> {
        chains
            .iter()
            .zip(states)
            .map(|(chain, state)| Seen::of(state, &self.plan.changes[chain[0]].before))
            .collect()
    }

    /// The resource id of each chain's first change.
    fn first_ids(&self, chains: &[Vec<usize>]) -> Vec<String> {
        chains
            .iter()
            .map(|chain| self.plan.changes[chain[0]].resource.id.clone())
            .collect()
    }

    /// The states of `ids` (in `lead`'s account-region) from listing the region in at
    /// most `requests` calls; `None` when that takes more, the concern cannot list, or
    /// the listing fails.
    async fn read_region(
        &self,
        lead: &Change,
        calls: &dyn Calls,
        ids: &[String],
        requests: usize,
    ) -> Option<RegionRead> {
        let clients = self.clients(lead)?;
        let read = persist::persist(self.deadline, || {
            calls.read_from_region(&clients, ids, requests)
        })
        .await;
        match read {
            Ok(Some(read)) if read.states.len() == ids.len() => Some(read),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(resources = ids.len(), error = %e, "listing the region failed; reading by filter");
                None
            }
        }
    }

    /// A page's states read back by listing the region, allowing one call more than the
    /// stage's listing took (the page's calls may have grown it); by filter when the
    /// region has grown beyond that or the listing fails.
    async fn read_back_region(
        &self,
        calls: &dyn Calls,
        clients: &RegionClients,
        ids: &[String],
        requests: usize,
    ) -> Box<dyn Iterator<Item = Option<Value>> + Send> {
        if ids.is_empty() {
            return Box::new(std::iter::empty());
        }
        let read = persist::persist(self.deadline, || {
            calls.read_from_region(clients, ids, requests + 1)
        })
        .await;
        let states = match read {
            Ok(Some(read)) if read.states.len() == ids.len() => {
                return Box::new(read.states.map(Some));
            }
            Ok(_) => self.read_many(calls, clients, ids).await,
            Err(e) => {
                tracing::warn!(resources = ids.len(), error = %e, "listing the region failed; reading back by filter");
                self.read_many(calls, clients, ids).await
            }
        };
        Box::new(states.into_iter())
    }

    /// The states of `ids` read in bulk ([`Calls::read_many_limit`] a call), throttling
    /// waited out until the deadline. A failed read answers `None` for each of its ids:
    /// every change then reads alone, as without bulk reads, and its own read reports
    /// what is wrong.
    async fn read_many(
        &self,
        calls: &dyn Calls,
        clients: &RegionClients,
        ids: &[String],
    ) -> Vec<Option<Value>> {
        let mut states = Vec::with_capacity(ids.len());
        for ids in ids.chunks(calls.read_many_limit().max(1)) {
            match persist::persist(self.deadline, || calls.read_many(clients, ids)).await {
                Ok(read) if read.len() == ids.len() => states.extend(read.into_iter().map(Some)),
                Ok(read) => {
                    tracing::warn!(
                        asked = ids.len(),
                        answered = read.len(),
                        "a bulk read answered for a different number of resources; reading each alone"
                    );
                    states.extend(ids.iter().map(|_| None));
                }
                Err(e) => {
                    tracing::warn!(resources = ids.len(), error = %e, "a bulk read failed; reading each alone");
                    states.extend(ids.iter().map(|_| None));
                }
            }
        }
        states
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_page_holds_about_a_minute_of_calls_and_an_unpaced_one_the_most() {
        assert_eq!(paced_page(None), REGION_PAGE);
        let mutating = Rate {
            burst: 50,
            per_second: 5.0,
        };
        assert_eq!(
            paced_page(Some(mutating)),
            350,
            "the burst, then 60 s at 5 a second"
        );
        let unbounded = Rate {
            burst: u32::MAX,
            per_second: f64::INFINITY,
        };
        assert_eq!(paced_page(Some(unbounded)), REGION_PAGE);
        let stalled = Rate {
            burst: 0,
            per_second: 0.0,
        };
        assert_eq!(paced_page(Some(stalled)), 1, "a page always holds a chain");
    }
}
