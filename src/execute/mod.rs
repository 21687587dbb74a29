//! Applying a plan. Steps run in plan order, one stage each (see [`stages`]); within a
//! stage, changes to one resource form a chain kept in plan order and chains run
//! concurrently under a bound. Each change is: journal `started`, read the resource
//! (or reuse the read-back of the change before it), refuse if it no longer matches the
//! change's before (stale plan), call, read back and compare with the intended after,
//! then journal and audit the outcome.
//!
//! A failure stops only what depends on it: the failed resource's chain, the later
//! steps of the same runbook in the same region (a runbook's steps build on each
//! other), and the runbooks that declare `requires:` on it, there. Other runbooks and
//! regions go on. With `--fail-fast` the first failure stops every chain from starting
//! another change instead. What was not attempted is reported and audited as skipped,
//! naming the failure that held it back.

mod bulk;
mod compensate;
pub mod journal;
mod lifecycle;
mod record;
pub mod resume;
pub mod rollback;
pub mod runs;
mod schedule;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::stream::{self, StreamExt};
use serde_json::Value;

use crate::accounts::Session;
use crate::actions;
use crate::audit::{AuditLog, Outcome};
use crate::aws::persist;
use crate::error::Result;
use crate::plan::{Change, Plan};
use journal::Journal;
use schedule::{Halt, Unit, batched, needs, stages};

/// Reads the resource of `change` now, with its account's session, sending the read
/// again while throttled until `deadline`: what resuming and rolling back compare a
/// recorded change with. `Err` says why it could not be read.
pub async fn read_resource(
    sessions: &[Session],
    change: &Change,
    deadline: Instant,
) -> std::result::Result<Value, String> {
    let session = sessions
        .iter()
        .find(|s| s.scope.target.id == change.account_id)
        .ok_or_else(|| format!("account {} was not reached", change.account_id))?;
    let action = actions::find(&change.action)
        .ok_or_else(|| format!("action {} is not in this harden", change.action))?;
    let clients = session.aws.region(&change.region);
    persist::persist(deadline, || {
        action.calls().read(&clients, &change.resource.id)
    })
    .await
    .map_err(|e| e.to_string())
}

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Account-regions applied at once, and resources changed at once in each.
    pub concurrency: usize,
    /// This run's id.
    pub run_id: String,
    /// Set (by the Ctrl-C handler) to stop starting changes; changes in flight finish,
    /// are read back and recorded, the rest are recorded as not attempted.
    pub interrupted: Arc<AtomicBool>,
    /// Stop everything at the first failure, instead of only what depends on it.
    pub fail_fast: bool,
    /// Accounts of the plan that could not be reached now, with why: their changes are
    /// not attempted.
    pub unreachable: BTreeMap<String, String>,
    /// Told of each change ended (made, failed or not attempted).
    pub progress: Arc<dyn crate::progress::Progress>,
    /// The event the run responds to, recorded with each change.
    pub cause: Option<crate::event::EventCause>,
    /// Until when a throttled call is sent again (see [`persist`]); past it, the
    /// throttling is the change's failure.
    pub deadline: std::time::Instant,
}

/// The outcome of each change, in plan order, and what was undone.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    /// Change id and outcome.
    pub outcomes: Vec<(String, Outcome)>,
    /// Resources put back after their chain stopped part-way.
    pub compensations: Vec<Undone>,
    /// For each change not attempted because of a failure: the failed change's id.
    pub held_back_by: BTreeMap<String, String>,
    /// What could not be written to the journal or the audit log; the run stopped
    /// starting changes at the first.
    pub unrecorded: Vec<String>,
}

/// A resource put back (or not) after its chain of changes stopped part-way.
#[derive(Debug, Clone, PartialEq)]
pub struct Undone {
    /// The resource.
    pub resource: String,
    /// Its region.
    pub region: String,
    /// The change that failed or was the first not attempted.
    pub change_id: String,
    /// The operations called to put it back, in order.
    pub operations: Vec<String>,
    /// `None` when read back as it was; otherwise what is wrong.
    pub failure: Option<String>,
}

impl ApplyReport {
    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes.iter().filter(|(_, o)| f(o)).count()
    }
    /// Changes made and verified.
    pub fn succeeded(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Succeeded))
    }
    /// Changes that failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed { .. }))
    }
    /// Changes not attempted.
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped { .. }))
    }

    /// The changes each failed change held back, in plan order of the failures.
    pub fn held_back(&self) -> Vec<(&str, Vec<&str>)> {
        let mut held: Vec<(&str, Vec<&str>)> = Vec::new();
        for (id, outcome) in &self.outcomes {
            if let Outcome::Failed { .. } = outcome {
                held.push((id, Vec::new()));
            }
        }
        for (skipped, cause) in &self.held_back_by {
            if let Some((_, list)) = held.iter_mut().find(|(id, _)| id == cause) {
                list.push(skipped);
            }
        }
        let order: BTreeMap<&str, usize> = self
            .outcomes
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (id.as_str(), i))
            .collect();
        for (_, list) in &mut held {
            list.sort_by_key(|id| order.get(id).copied().unwrap_or(usize::MAX));
        }
        held
    }
}

/// Shared state of one apply.
struct Run<'a> {
    /// Each reached account's session, by account id.
    sessions: BTreeMap<&'a str, &'a Session>,
    unreachable: &'a BTreeMap<String, String>,
    progress: &'a dyn crate::progress::Progress,
    plan: &'a Plan,
    audit: &'a Mutex<AuditLog>,
    journal: &'a Journal,
    run_id: &'a str,
    cause: Option<&'a crate::event::EventCause>,
    deadline: Instant,
    /// Set by a failure under `--fail-fast`, or when a record could not be written:
    /// nothing more starts.
    stop: AtomicBool,
    /// The failure that set `stop`, when a change's.
    stopped_by: Mutex<Option<String>>,
    fail_fast: bool,
    interrupted: &'a AtomicBool,
    /// Resources (account, region, id) a change failed on, with the change: their later
    /// changes are not attempted.
    failed_resources: Mutex<BTreeMap<Place, String>>,
    /// (account, region, runbook) where a change failed: later steps there are not
    /// attempted.
    halts: Mutex<BTreeMap<Place, Halt>>,
    /// Per runbook, every runbook it needs, directly or through others (`requires:`).
    needs: BTreeMap<String, BTreeSet<String>>,
    /// Skipped change id to the failed change that held it back.
    held_back_by: Mutex<BTreeMap<String, String>>,
    /// Resources put back after their chain stopped part-way.
    compensations: Mutex<Vec<Undone>>,
    /// Records that could not be written (see [`ApplyReport::unrecorded`]).
    unrecorded: Mutex<Vec<String>>,
    /// Records held while a page is concluded ([`Run::hold_records`]).
    deferred: Mutex<record::HeldRecords>,
}

/// An account, a region and a resource id or runbook id: where a failure holds work
/// back.
type Place = (String, String, String);

/// Applies `plan` with the sessions of the accounts it covers (each checked to act for
/// its account); the changes of an account without a session are not attempted.
pub async fn apply(
    sessions: &[Session],
    plan: &Plan,
    audit: &Mutex<AuditLog>,
    journal: &Journal,
    options: &ApplyOptions,
) -> Result<ApplyReport> {
    // What only the run knows (its id, tagged on what it creates) goes in first; the
    // journal and audit then record the calls exactly as made.
    let plan = &plan.for_run(&options.run_id);
    let run = Run {
        sessions: sessions
            .iter()
            .map(|s| (s.scope.target.id.as_str(), s))
            .collect(),
        unreachable: &options.unreachable,
        progress: options.progress.as_ref(),
        plan,
        audit,
        journal,
        run_id: &options.run_id,
        cause: options.cause.as_ref(),
        deadline: options.deadline,
        stop: AtomicBool::new(false),
        stopped_by: Mutex::default(),
        fail_fast: options.fail_fast,
        interrupted: &options.interrupted,
        failed_resources: Mutex::default(),
        halts: Mutex::default(),
        needs: needs(plan),
        held_back_by: Mutex::default(),
        compensations: Mutex::default(),
        unrecorded: Mutex::default(),
        deferred: Mutex::default(),
    };
    let mut outcomes: Vec<(usize, Outcome)> = Vec::new();
    options
        .progress
        .start("changes applied", plan.changes.len());
    let concurrency = options.concurrency.max(1);
    for (stage_index, stage) in stages(plan).into_iter().enumerate() {
        // Each account-region has its own EC2 buckets and clients: they go on side by
        // side (up to `concurrency` of them), each changing up to `concurrency`
        // resources at once, so eight account-regions take about as long as one.
        let mut places: Vec<((&str, &str), Vec<Unit>)> = Vec::new();
        for unit in batched(plan, stage) {
            let first = &plan.changes[unit.first()];
            let key = (first.account_id.as_str(), first.region.as_str());
            match places.iter_mut().find(|(k, _)| *k == key) {
                Some((_, units)) => units.push(unit),
                None => places.push((key, vec![unit])),
            }
        }
        let run = &run;
        // The futures are made first, so no stream holds a closure over references: such
        // a future is not provably `Send` for every lifetime, which a spawned caller
        // (`harden watch`) needs (rust-lang/rust issue 100013).
        let per_place: Vec<_> = places
            .into_iter()
            .map(|(_, units)| {
                let work = bulk::chains(plan, units, run.fail_fast).map_err(|units| {
                    units
                        .into_iter()
                        .map(|unit| async move {
                            match unit {
                                Unit::Chain(chain) => run.chain(stage_index, chain).await,
                                Unit::Batch(batch) => run.batch(stage_index, batch).await,
                            }
                        })
                        .collect::<Vec<_>>()
                });
                async move {
                    match work {
                        Ok(chains) => {
                            // One after the other: each page is `concurrency` wide.
                            let paged = run.paged(chains).await;
                            let mut done = Vec::new();
                            for page in paged.pages {
                                done.extend(
                                    run.page(stage_index, page, paged.read_back, concurrency)
                                        .await,
                                );
                            }
                            done
                        }
                        Err(units) => {
                            let done: Vec<Vec<(usize, Outcome)>> = stream::iter(units)
                                .buffer_unordered(concurrency)
                                .collect()
                                .await;
                            done.into_iter().flatten().collect::<Vec<_>>()
                        }
                    }
                }
            })
            .collect();
        let results: Vec<Vec<(usize, Outcome)>> = stream::iter(per_place)
            .buffer_unordered(concurrency)
            .collect()
            .await;
        outcomes.extend(results.into_iter().flatten());
    }
    options.progress.finish();
    outcomes.sort_by_key(|(index, _)| *index);
    Ok(ApplyReport {
        outcomes: outcomes
            .into_iter()
            .map(|(index, outcome)| (plan.changes[index].id.clone(), outcome))
            .collect(),
        compensations: run.compensations.into_inner().unwrap_or_default(),
        unrecorded: run.unrecorded.into_inner().unwrap_or_default(),
        held_back_by: run.held_back_by.into_inner().unwrap_or_default(),
    })
}

fn resource_place(change: &Change) -> Place {
    (
        change.account_id.clone(),
        change.region.clone(),
        format!("{}/{}", change.resource.kind, change.resource.id),
    )
}
