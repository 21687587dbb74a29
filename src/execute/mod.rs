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
pub mod journal;
pub mod resume;
pub mod rollback;
pub mod runs;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::stream::{self, StreamExt};
use serde_json::Value;

use crate::accounts::Session;
use crate::actions;
use crate::audit::{AuditLog, ChangeRecord, CompensationRecord, Entry, Outcome};
use crate::aws::persist;
use crate::error::{Error, Result};
use crate::plan::{Change, Plan, state_matches};
use crate::runbook::model::OnFailure;
use journal::{Journal, Phase};

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

/// Where a failed change stops work: the later steps of its runbook in its region.
#[derive(Debug, Clone)]
struct Halt {
    /// The stage the failure happened in; only later stages are held back.
    stage: usize,
    /// The failed change.
    change_id: String,
}

/// A change ready for its call: its calls, clients, the state just read (which matched
/// its before) and when it started.
struct Ready {
    calls: &'static dyn actions::Calls,
    clients: crate::aws::RegionClients,
    current: Value,
    started: Instant,
}

/// What [`Run::walk`] did with a chain.
#[derive(Default)]
struct Walked {
    /// The changes concluded, in order.
    outcomes: Vec<(usize, Outcome)>,
    /// Whether a call was made: only then may the resource differ from the first
    /// change's before, and need putting back if the chain stops part-way.
    called: bool,
    /// The last change, called and not yet concluded (`defer_last`): its index, what
    /// it was made on, and the call's result.
    pending: Option<(usize, Ready, Result<actions::Applied>)>,
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
                let work = bulk::pages(plan, units, run.fail_fast).map_err(|units| {
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
                        Ok(pages) => {
                            // One after the other: each page is `concurrency` wide.
                            let mut done = Vec::new();
                            for page in pages {
                                done.extend(run.page(stage_index, page, concurrency).await);
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

/// Per runbook, the runbooks it needs through `requires:`, followed transitively: a
/// runbook held back somewhere holds back those needing it there.
fn needs(plan: &Plan) -> BTreeMap<String, BTreeSet<String>> {
    let direct: BTreeMap<&str, &[String]> = plan
        .runbooks
        .iter()
        .map(|r| (r.id.as_str(), r.requires.as_slice()))
        .collect();
    let mut all = BTreeMap::new();
    for runbook in &plan.runbooks {
        let mut found: BTreeSet<String> = BTreeSet::new();
        let mut todo: Vec<&str> = direct
            .get(runbook.id.as_str())
            .map_or(Vec::new(), |d| d.iter().map(String::as_str).collect());
        while let Some(next) = todo.pop() {
            if found.insert(next.to_string()) {
                todo.extend(
                    direct
                        .get(next)
                        .into_iter()
                        .flat_map(|d| d.iter().map(String::as_str)),
                );
            }
        }
        all.insert(runbook.id.clone(), found);
    }
    all
}

/// What one of the `--concurrency` slots works on.
#[derive(Debug, PartialEq)]
enum Unit {
    /// Changes to one resource, in order.
    Chain(Vec<usize>),
    /// Single changes to different resources sent as one call.
    Batch(Vec<usize>),
}

impl Unit {
    /// Its first change (all of a unit's are of one account and region).
    fn first(&self) -> usize {
        match self {
            Unit::Chain(changes) | Unit::Batch(changes) => changes.first().copied().unwrap_or(0),
        }
    }
}

/// Groups a stage's single-change chains whose calls may go out as one (same region,
/// action and batch key) into batches of at most the action's `max_batch`.
fn batched(plan: &Plan, stage: Vec<Vec<usize>>) -> Vec<Unit> {
    let mut units = Vec::new();
    // (account, region, action, the concern's batch key) to the changes it groups.
    type Key = (String, String, String, Value);
    let mut groups: Vec<(Key, Vec<usize>)> = Vec::new();
    for chain in stage {
        let key = match chain.as_slice() {
            [index] => {
                let change = &plan.changes[*index];
                actions::find(&change.action)
                    .map(|a| a.calls())
                    .filter(|calls| calls.max_batch() > 1)
                    .and_then(|calls| calls.batch_key(change))
                    .map(|key| {
                        (
                            change.account_id.clone(),
                            change.region.clone(),
                            change.action.clone(),
                            key,
                        )
                    })
            }
            _ => None,
        };
        match key {
            Some(key) => match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.extend(chain),
                None => groups.push((key, chain)),
            },
            None => units.push(Unit::Chain(chain)),
        }
    }
    for ((_, _, action, _), members) in groups {
        let max = actions::find(&action).map_or(1, |a| a.calls().max_batch().max(1));
        for part in members.chunks(max) {
            units.push(Unit::Batch(part.to_vec()));
        }
    }
    units
}

/// Splits the plan into stages, one per step (runbook and step, in the order the plan
/// lists runbooks and each runbook its steps, all regions together), and each stage
/// into chains, one per resource, in plan order.
///
/// A stage starts only when the one before it has ended. That is how a step may rely on
/// what an earlier step did to *another* resource (the bucket a trail writes to exists
/// before the trail is created) without a chain ever waiting on another while holding
/// one of the `--concurrency` slots. Stages follow the runbooks' declared order, not
/// the order changes first appear in: a step that has changes only in a later region
/// still runs before the next runbook's steps.
fn stages(plan: &Plan) -> Vec<Vec<Vec<usize>>> {
    let rank = |runbook: &str, step: &str| {
        let r = plan.runbooks.iter().position(|p| p.id == runbook);
        let s = r.and_then(|r| plan.runbooks[r].steps.iter().position(|id| id == step));
        (r.unwrap_or(usize::MAX), s.unwrap_or(usize::MAX))
    };
    let mut keys: Vec<((usize, usize), &str, &str)> = Vec::new();
    for change in &plan.changes {
        let key = (
            rank(&change.runbook, &change.step),
            change.runbook.as_str(),
            change.step.as_str(),
        );
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    // Stable: steps a plan does not list (older plans) keep their first appearance.
    keys.sort_by_key(|(rank, _, _)| *rank);
    let stage_of: BTreeMap<(&str, &str), usize> = keys
        .iter()
        .enumerate()
        .map(|(i, (_, runbook, step))| ((*runbook, *step), i))
        .collect();
    let mut stages: Vec<Vec<Vec<usize>>> = vec![Vec::new(); keys.len()];
    let mut chain_of: BTreeMap<(usize, &str, &str, crate::inventory::ResourceKind, &str), usize> =
        BTreeMap::new();
    for (index, change) in plan.changes.iter().enumerate() {
        let stage = stage_of[&(change.runbook.as_str(), change.step.as_str())];
        let key = (
            stage,
            change.account_id.as_str(),
            change.region.as_str(),
            change.resource.kind,
            change.resource.id.as_str(),
        );
        let chain = *chain_of.entry(key).or_insert_with(|| {
            stages[stage].push(Vec::new());
            stages[stage].len() - 1
        });
        stages[stage][chain].push(index);
    }
    stages
}

impl Run<'_> {
    /// The failed change that held back this change's resource in an earlier stage.
    fn resource_failed(&self, index: usize) -> Option<String> {
        let change = &self.plan.changes[index];
        self.failed_resources
            .lock()
            .ok()
            .and_then(|failed| failed.get(&resource_place(change)).cloned())
    }

    /// Clients of the change's account in its region, when the account was reached.
    fn clients(&self, change: &Change) -> Option<crate::aws::RegionClients> {
        self.sessions
            .get(change.account_id.as_str())
            .map(|s| s.aws.region(&change.region))
    }

    /// The failure holding back `runbook`'s changes of stage `stage` in `region`: its
    /// own in an earlier step, or one of a runbook it requires.
    fn halted(&self, change: &Change, stage: usize) -> Option<(String, Halt)> {
        let halts = self.halts.lock().ok()?;
        let at = |runbook: &str| {
            (
                change.account_id.clone(),
                change.region.clone(),
                runbook.to_string(),
            )
        };
        let own = halts
            .get(&at(&change.runbook))
            .filter(|h| h.stage < stage)
            .map(|h| (change.runbook.clone(), h.clone()));
        own.or_else(|| {
            self.needs
                .get(&change.runbook)?
                .iter()
                .find_map(|needed| halts.get(&at(needed)).map(|h| (needed.clone(), h.clone())))
        })
    }

    /// Why the change at `index` (in stage `stage`) is not to be attempted, if it is
    /// not, and the failed change that held it back.
    fn skip_reason(
        &self,
        index: usize,
        stage: usize,
        chain_failed: Option<&str>,
    ) -> Option<Outcome> {
        let change = &self.plan.changes[index];
        let (reason, cause) = if let Some(why) = self.unreachable.get(&change.account_id) {
            (
                format!(
                    "not attempted: account {} could not be reached: {why}",
                    change.account_id
                ),
                None,
            )
        } else if let Some(cause) = chain_failed
            .map(str::to_string)
            .or_else(|| self.resource_failed(index))
        {
            (
                format!("not attempted: an earlier change to this resource failed ({cause})"),
                Some(cause),
            )
        } else if self.interrupted.load(Ordering::SeqCst) {
            ("not attempted: apply was interrupted".to_string(), None)
        } else if self.stop.load(Ordering::SeqCst) {
            let cause = self.stopped_by.lock().ok().and_then(|c| c.clone());
            let reason = match &cause {
                Some(id) => format!("not attempted: apply stopped after {id} failed (--fail-fast)"),
                None => "not attempted: apply stopped after a failure".to_string(),
            };
            (reason, cause)
        } else if let Some((runbook, halt)) = self.halted(change, stage) {
            let reason = if runbook == change.runbook {
                format!(
                    "not attempted: {} failed in {}, and the later steps of runbook {runbook} build on it",
                    halt.change_id, change.region
                )
            } else {
                format!(
                    "not attempted: runbook {} requires {runbook}, whose change {} failed in {}",
                    change.runbook, halt.change_id, change.region
                )
            };
            (reason, Some(halt.change_id))
        } else {
            return None;
        };
        if let (Some(cause), Ok(mut held)) = (cause, self.held_back_by.lock()) {
            held.insert(change.id.clone(), cause);
        }
        Some(Outcome::Skipped { reason })
    }

    /// Remembers a failed change's resource and, unless its step says `on_failure:
    /// continue`, holds back the later steps of its runbook in its region (everything,
    /// with `--fail-fast`).
    fn note_failure(&self, stage: usize, change: &Change, outcome: &Outcome) {
        if let Outcome::Failed { .. } = outcome {
            if let Ok(mut failed) = self.failed_resources.lock() {
                failed
                    .entry(resource_place(change))
                    .or_insert_with(|| change.id.clone());
            }
            if change.on_failure == OnFailure::Continue {
                return;
            }
            if self.fail_fast {
                if let Ok(mut by) = self.stopped_by.lock() {
                    by.get_or_insert_with(|| change.id.clone());
                }
                self.stop.store(true, Ordering::SeqCst);
            } else if let Ok(mut halts) = self.halts.lock() {
                halts
                    .entry((
                        change.account_id.clone(),
                        change.region.clone(),
                        change.runbook.clone(),
                    ))
                    .or_insert_with(|| Halt {
                        stage,
                        change_id: change.id.clone(),
                    });
            }
        }
    }

    async fn chain(&self, stage: usize, chain: Vec<usize>) -> Vec<(usize, Outcome)> {
        let progress = self.walk(stage, &chain, None, false).await;
        self.end_chain(&chain, progress.outcomes, progress.called)
            .await
    }

    /// Makes a chain's changes in order, up to its first failure (the rest are
    /// skipped). `known`: its resource's state, read just before (in bulk), so the
    /// first change needs no read of its own. `defer_last`: its last change's call is
    /// made but not concluded; it is left in [`Walked::pending`] for the read-back in
    /// bulk (see [`bulk`]).
    async fn walk(
        &self,
        stage: usize,
        chain: &[usize],
        known: Option<Value>,
        defer_last: bool,
    ) -> Walked {
        let mut walked = Walked::default();
        let mut last_read = known;
        // The change of this chain that failed, if one did.
        let mut chain_failed: Option<String> = None;
        for (position, &index) in chain.iter().enumerate() {
            let change = &self.plan.changes[index];
            if let Some(outcome) = self.skip_reason(index, stage, chain_failed.as_deref()) {
                self.finish(change, Ending::skipped(&outcome));
                walked.outcomes.push((index, outcome));
                continue;
            }
            if defer_last && position + 1 == chain.len() {
                match self.prepare(change, last_read.take()).await {
                    Ok(ready) => {
                        let result = persist::persist(self.deadline, || {
                            ready.calls.apply(&ready.clients, change, &ready.current)
                        })
                        .await;
                        walked.called = true;
                        walked.pending = Some((index, ready, result));
                    }
                    Err((outcome, _)) => {
                        self.note_failure(stage, change, &outcome);
                        walked.outcomes.push((index, outcome));
                    }
                }
                continue;
            }
            let (outcome, after, made) = self.one(change, last_read.take()).await;
            walked.called |= made;
            self.note_failure(stage, change, &outcome);
            if let Outcome::Failed { .. } = outcome {
                chain_failed = Some(change.id.clone());
            } else {
                last_read = after;
            }
            walked.outcomes.push((index, outcome));
        }
        walked
    }

    /// After a chain's changes: puts its resource back when a call was made and the
    /// chain did not finish (see [`Run::compensate`]).
    async fn end_chain(
        &self,
        chain: &[usize],
        outcomes: Vec<(usize, Outcome)>,
        called: bool,
    ) -> Vec<(usize, Outcome)> {
        let unfinished = outcomes
            .iter()
            .find(|(_, o)| !matches!(o, Outcome::Succeeded));
        if called && let (Some((stopped_at, outcome)), Some(first)) = (unfinished, chain.first()) {
            self.compensate(
                &self.plan.changes[*first],
                &self.plan.changes[*stopped_at],
                outcome,
            )
            .await;
        }
        outcomes
    }

    /// Puts a chain's resource back as its first change found it, where its concern
    /// knows how (see [`actions::Calls::compensate`]); journals and audits what it did.
    async fn compensate(&self, first: &Change, stopped_at: &Change, outcome: &Outcome) {
        let Some(action) = actions::find(&first.action) else {
            return;
        };
        let cause = match outcome {
            Outcome::Failed { code, .. } => format!("{} failed: {code}", stopped_at.id),
            Outcome::Skipped { reason } => format!("{} {reason}", stopped_at.id),
            Outcome::Succeeded => return,
        };
        let Some(clients) = self.clients(first) else {
            return;
        };
        let Some(done) = action
            .calls()
            .compensate(&clients, &first.resource.id, &first.before, &cause)
            .await
        else {
            return;
        };
        tracing::warn!(resource = %first.resource, calls = done.calls.len(), failure = ?done.failure, "put back after an unfinished chain");
        let (phase, outcome) = match &done.failure {
            None => (Phase::Compensated, Outcome::Succeeded),
            Some(message) => (
                Phase::CompensationFailed,
                Outcome::Failed {
                    code: "CompensationFailed".into(),
                    message: message.clone(),
                },
            ),
        };
        let record = CompensationRecord {
            change_id: stopped_at.id.clone(),
            cause: cause.clone(),
            runbook: first.runbook.clone(),
            region: first.region.clone(),
            step: first.step.clone(),
            resource: first.resource.clone(),
            calls: done.calls.clone(),
            before: done.before,
            after: done.after,
            outcome,
            request_ids: done.request_ids,
        };
        let journaled =
            self.journal
                .record(&stopped_at.id, phase, done.failure.clone().or(Some(cause)));
        let audited = self.append(&first.account_id, Entry::Compensation(Box::new(record)));
        if let Err(e) = journaled.and(audited) {
            self.unrecorded(format!("putting back {}: {e}", first.resource));
        }
        if let Ok(mut undone) = self.compensations.lock() {
            undone.push(Undone {
                resource: first.resource.id.clone(),
                region: first.region.clone(),
                change_id: stopped_at.id.clone(),
                operations: done.calls.into_iter().map(|c| c.operation).collect(),
                failure: done.failure,
            });
        }
    }

    /// Appends one record about `account` to the audit log, naming who harden acted as
    /// there.
    fn append(&self, account: &str, entry: Entry) -> Result<()> {
        let principal = self
            .sessions
            .get(account)
            .map_or_else(String::new, |s| s.scope.identity.arn.clone());
        crate::audit::lock(self.audit)
            .and_then(|mut log| log.append(self.run_id, account, &principal, entry))
            .map(drop)
    }

    /// Reads a change's resource, throttling waited out until the deadline.
    async fn read(
        &self,
        calls: &dyn actions::Calls,
        clients: &crate::aws::RegionClients,
        change: &Change,
    ) -> Result<Value> {
        persist::persist(self.deadline, || calls.read(clients, &change.resource.id)).await
    }

    /// Makes one change; returns its outcome, the state read back, and whether its call
    /// was made (it passed the stale check).
    async fn one(&self, change: &Change, known: Option<Value>) -> (Outcome, Option<Value>, bool) {
        let ready = match self.prepare(change, known).await {
            Ok(ready) => ready,
            Err((outcome, after)) => return (outcome, after, false),
        };
        let result = persist::persist(self.deadline, || {
            ready.calls.apply(&ready.clients, change, &ready.current)
        })
        .await;
        let (outcome, after) = self.conclude(change, ready, result, None).await;
        (outcome, after, true)
    }

    /// Journals `started`, finds the action, reads the resource (unless the chain's
    /// previous change just did) and refuses a stale change. Every refusal is recorded.
    async fn prepare(
        &self,
        change: &Change,
        known: Option<Value>,
    ) -> std::result::Result<Ready, (Outcome, Option<Value>)> {
        let started = Instant::now();
        tracing::info!(change = %change.id, operation = %change.call.operation, "applying");
        if let Err(e) = self.journal.record(&change.id, Phase::Started, None) {
            return Err(self.fail(
                change,
                Value::Null,
                Value::Null,
                "JournalError",
                e.to_string(),
                Vec::new(),
                started,
            ));
        }
        let Some(action) = actions::find(&change.action) else {
            return Err(self.fail(
                change,
                Value::Null,
                Value::Null,
                "UnknownAction",
                format!("action {} is not in this harden", change.action),
                Vec::new(),
                started,
            ));
        };
        let calls = action.calls();
        let Some(clients) = self.clients(change) else {
            return Err(self.fail(
                change,
                Value::Null,
                Value::Null,
                "AccountUnreachable",
                format!("account {} was not reached", change.account_id),
                Vec::new(),
                started,
            ));
        };
        let current = match known {
            Some(state) => state,
            None => match self.read(calls, &clients, change).await {
                Ok(state) => state,
                Err(e) => {
                    return Err(self.fail_with(
                        change,
                        Value::Null,
                        Value::Null,
                        &e,
                        Vec::new(),
                        started,
                    ));
                }
            },
        };
        if let Err(detail) = state_matches(&change.before, &current) {
            let error = Error::StalePlan {
                resource: change.resource.to_string(),
                detail,
            };
            return Err(self.fail_with(change, current, Value::Null, &error, Vec::new(), started));
        }
        Ok(Ready {
            calls,
            clients,
            current,
            started,
        })
    }

    /// After the call: read back, compare with the intended after, record the outcome.
    /// `read_back`: the state read in bulk after the call; one that does not show the
    /// change made is read again alone before the change is called a failure (the bulk
    /// read may have come before the service settled).
    async fn conclude(
        &self,
        change: &Change,
        ready: Ready,
        result: Result<actions::Applied>,
        read_back: Option<Value>,
    ) -> (Outcome, Option<Value>) {
        let Ready {
            calls,
            clients,
            current,
            started,
        } = ready;
        let applied = match result {
            Ok(applied) => applied,
            Err(e) => {
                // The call failed; read what is there now so the record tells the truth.
                let after = self
                    .read(calls, &clients, change)
                    .await
                    .unwrap_or(Value::Null);
                if let Some(outcome) = self.made_despite(change, &current, &after, &e, started) {
                    return (outcome, Some(after));
                }
                return self.fail_with(change, current, after, &e, Vec::new(), started);
            }
        };
        let read_back = read_back.filter(|state| state_matches(&change.after, state).is_ok());
        let after = match read_back {
            Some(state) => Ok(state),
            None => self.read(calls, &clients, change).await,
        };
        let after = match after {
            Ok(state) => state,
            Err(e) => {
                return self.fail_with(
                    change,
                    current,
                    Value::Null,
                    &e,
                    applied.request_ids,
                    started,
                );
            }
        };
        if let Err(detail) = state_matches(&change.after, &after) {
            let error = Error::Verification {
                resource: change.resource.to_string(),
                detail,
            };
            return self.fail_with(change, current, after, &error, applied.request_ids, started);
        }
        let outcome = Outcome::Succeeded;
        self.finish(
            change,
            Ending {
                before: current,
                after: after.clone(),
                outcome: &outcome,
                request_ids: applied.request_ids,
                duration_ms: elapsed(started),
                recovered: None,
            },
        );
        (outcome, Some(after))
    }

    /// Whether a call that answered `error` made its change all the same, recorded as
    /// a success saying so. An answer lost on the way back makes the SDK send the call
    /// again, and the repeat is refused (a rule already gone, a trail that already
    /// exists); or the service erred after acting. The state, not the answer, decides:
    /// the resource is as intended now, and was not before the call (otherwise the
    /// read-back could not tell whether the call did anything).
    fn made_despite(
        &self,
        change: &Change,
        before: &Value,
        after: &Value,
        error: &Error,
        started: Instant,
    ) -> Option<Outcome> {
        let made = !after.is_null()
            && state_matches(&change.after, after).is_ok()
            && state_matches(&change.after, before).is_err();
        if !made {
            return None;
        }
        let outcome = Outcome::Succeeded;
        let request_ids = match error {
            Error::Aws(failure) => failure.request_id.iter().cloned().collect(),
            _ => Vec::new(),
        };
        self.finish(
            change,
            Ending {
                before: before.clone(),
                after: after.clone(),
                outcome: &outcome,
                request_ids,
                duration_ms: elapsed(started),
                recovered: Some(format!(
                    "the call answered an error ({error}) but the read-back shows the change made: a lost answer retried, or an error after the change"
                )),
            },
        );
        Some(outcome)
    }

    /// Makes several single-change chains' changes as one call (see
    /// [`actions::Calls::apply_batch`]); each change keeps its own stale check, read-back
    /// and record.
    async fn batch(&self, stage: usize, batch: Vec<usize>) -> Vec<(usize, Outcome)> {
        let mut outcomes = Vec::new();
        let mut ready = Vec::new();
        for index in batch {
            let change = &self.plan.changes[index];
            if let Some(outcome) = self.skip_reason(index, stage, None) {
                self.finish(change, Ending::skipped(&outcome));
                outcomes.push((index, outcome));
                continue;
            }
            match self.prepare(change, None).await {
                Ok(r) => ready.push((index, r)),
                Err((outcome, _)) => {
                    self.note_failure(stage, change, &outcome);
                    outcomes.push((index, outcome));
                }
            }
        }
        let Some((_, lead)) = ready.first() else {
            return outcomes;
        };
        let (calls, clients) = (lead.calls, lead.clients.clone());
        let changes: Vec<&Change> = ready.iter().map(|(i, _)| &self.plan.changes[*i]).collect();
        let states: Vec<&Value> = ready.iter().map(|(_, r)| &r.current).collect();
        tracing::info!(operation = %changes[0].call.operation, changes = changes.len(), "applying as one call");
        let mut results = persist::persist_all(self.deadline, || {
            calls.apply_batch(&clients, &changes, &states)
        })
        .await;
        results.resize_with(changes.len(), || {
            Err(Error::Internal(
                "the batched call answered for fewer changes".into(),
            ))
        });
        for ((index, r), result) in ready.into_iter().zip(results) {
            let change = &self.plan.changes[index];
            let (outcome, _) = self.conclude(change, r, result, None).await;
            self.note_failure(stage, change, &outcome);
            outcomes.push((index, outcome));
        }
        outcomes
    }

    #[allow(clippy::too_many_arguments)]
    fn fail_with(
        &self,
        change: &Change,
        before: Value,
        after: Value,
        error: &Error,
        mut request_ids: Vec<String>,
        started: Instant,
    ) -> (Outcome, Option<Value>) {
        let code = match error {
            Error::Aws(failure) => {
                request_ids.extend(failure.request_id.clone());
                failure.code.clone()
            }
            Error::StalePlan { .. } => "StalePlan".to_string(),
            Error::Verification { .. } => "VerificationFailed".to_string(),
            _ => "Error".to_string(),
        };
        self.fail(
            change,
            before,
            after,
            &code,
            error.to_string(),
            request_ids,
            started,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn fail(
        &self,
        change: &Change,
        before: Value,
        after: Value,
        code: &str,
        message: String,
        request_ids: Vec<String>,
        started: Instant,
    ) -> (Outcome, Option<Value>) {
        let outcome = Outcome::Failed {
            code: code.to_string(),
            message,
        };
        self.finish(
            change,
            Ending {
                before,
                after,
                outcome: &outcome,
                request_ids,
                duration_ms: elapsed(started),
                recovered: None,
            },
        );
        (outcome, None)
    }

    /// Journals and audits a change's end. A failure to write either is reported on
    /// stderr and stops the apply: an unrecorded change must not be followed by more.
    fn finish(&self, change: &Change, ending: Ending<'_>) {
        let Ending {
            before,
            after,
            outcome,
            request_ids,
            duration_ms,
            recovered,
        } = ending;
        let (phase, detail) = match outcome {
            Outcome::Succeeded => (Phase::Succeeded, recovered.clone()),
            Outcome::Failed { code, message } => {
                (Phase::Failed, Some(format!("{code}: {message}")))
            }
            Outcome::Skipped { reason } => (Phase::Skipped, Some(reason.clone())),
        };
        let record = ChangeRecord {
            before,
            after,
            request_ids,
            duration_ms,
            cause: self.cause.cloned(),
            recovered,
            ..ChangeRecord::of(self.plan, change, outcome.clone())
        };
        self.progress.advance();
        let journaled = self.journal.record(&change.id, phase, detail);
        let audited = self.append(&change.account_id, Entry::Change(Box::new(record)));
        if let Err(e) = journaled.and(audited) {
            self.unrecorded(format!("change {}: {e}", change.id));
        }
    }

    /// A record that could not be written: kept for the report, and nothing more is
    /// started (a run that cannot record what it does must not go on doing it).
    fn unrecorded(&self, what: String) {
        if let Ok(mut unrecorded) = self.unrecorded.lock() {
            unrecorded.push(what);
        }
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Where a change's resource is: its account, region, and kind and id (a queue and a
/// rule may share a name).
/// How a change ended, as its journal line and audit record say.
struct Ending<'a> {
    before: Value,
    after: Value,
    outcome: &'a Outcome,
    request_ids: Vec<String>,
    duration_ms: u64,
    /// Why a call that answered an error is a success (see `conclude`).
    recovered: Option<String>,
}

impl<'a> Ending<'a> {
    /// A change not attempted: nothing read, nothing called.
    fn skipped(outcome: &'a Outcome) -> Self {
        Self {
            before: Value::Null,
            after: Value::Null,
            outcome,
            request_ids: Vec::new(),
            duration_ms: 0,
            recovered: None,
        }
    }
}

fn resource_place(change: &Change) -> Place {
    (
        change.account_id.clone(),
        change.region.clone(),
        format!("{}/{}", change.resource.kind, change.resource.id),
    )
}

fn elapsed(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    //! Apply paths the emulators cannot show, with mocked EC2 responses: a call that
    //! answers success but changes nothing, throttling, a refused call, a stale plan.

    use aws_sdk_ec2::Client;
    use aws_sdk_ec2::operation::describe_security_group_rules::DescribeSecurityGroupRulesOutput;
    use aws_sdk_ec2::operation::revoke_security_group_egress::RevokeSecurityGroupEgressOutput;
    use aws_sdk_ec2::types::SecurityGroupRule;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use serde_json::json;

    use super::*;
    use crate::inventory::ResourceKind;
    use crate::plan::{ApiCall, ChangeKind, PlannedRunbook, ResourceRef};

    fn open_rule(group: &str, id: &str) -> SecurityGroupRule {
        SecurityGroupRule::builder()
            .security_group_rule_id(id)
            .group_id(group)
            .is_egress(true)
            .ip_protocol("-1")
            .from_port(-1)
            .to_port(-1)
            .cidr_ipv4("0.0.0.0/0")
            .build()
    }

    fn rule_state(id: Option<&str>) -> Value {
        match id {
            Some(id) => json!({"ingress": [], "egress": [{
                "rule_id": id, "protocol": "-1", "from_port": null, "to_port": null,
                "peer": {"cidr": "0.0.0.0/0"}, "description": null}]}),
            None => json!({"ingress": [], "egress": []}),
        }
    }

    fn revoke(group: &str, rule: &str) -> Change {
        Change {
            id: format!("t/us-east-1/close/{group}#1"),
            runbook: "t".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            step: "close".into(),
            action: "ec2:close-security-group".into(),
            resource: ResourceRef {
                kind: ResourceKind::SecurityGroup,
                id: group.into(),
                tags: Default::default(),
            },
            kind: ChangeKind::Delete,
            summary: "revoke".into(),
            before: rule_state(Some(rule)),
            after: rule_state(None),
            call: ApiCall {
                service: "ec2".into(),
                operation: "RevokeSecurityGroupEgress".into(),
                input: json!({"GroupId": group, "SecurityGroupRuleIds": [rule]}),
            },
            on_failure: OnFailure::Stop,
            wait_timeout_seconds: None,
            probe: None,
        }
    }

    fn plan_of(changes: Vec<Change>) -> Plan {
        Plan {
            format_version: crate::plan::PLAN_FORMAT_VERSION,
            harden_version: "test".into(),
            created_at: jiff::Timestamp::UNIX_EPOCH,
            principal: "arn:aws:iam::123456789012:user/t".into(),
            accounts: vec![crate::plan::PlannedAccount {
                target: crate::accounts::Target {
                    id: "123456789012".into(),
                    name: None,
                    regions: vec!["us-east-1".into()],
                    role: None,
                    external_id: None,
                    tags: Default::default(),
                },
                principal: "arn:aws:iam::123456789012:user/t".into(),
            }],
            unreachable: Vec::new(),
            runbooks: vec![PlannedRunbook {
                id: "t".into(),
                title: "t".into(),
                path: "t.yaml".into(),
                digest: "d".into(),
                controls: Vec::new(),
                steps: vec!["close".into()],
                requires: Vec::new(),
                parameters: Default::default(),
                given_parameters: Vec::new(),
                compliant: Default::default(),
            }],
            changes,
            blocked: Vec::new(),
            not_planned: Vec::new(),
            unprobed_services: Vec::new(),
        }
    }

    /// A revoke the service answers with success (whatever it then did).
    fn revoke_succeeds() -> aws_smithy_mocks::Rule {
        mock!(Client::revoke_security_group_egress).then_output(|| {
            RevokeSecurityGroupEgressOutput::builder()
                .r#return(true)
                .build()
        })
    }

    fn rules_output(rules: Vec<SecurityGroupRule>) -> DescribeSecurityGroupRulesOutput {
        DescribeSecurityGroupRulesOutput::builder()
            .set_security_group_rules(Some(rules))
            .build()
    }

    struct Outcomes {
        report: ApplyReport,
        records: Vec<crate::audit::Record>,
    }

    async fn run(client: Client, plan: &Plan) -> Outcomes {
        run_with(client, plan, false, false).await
    }

    async fn run_with(client: Client, plan: &Plan, interrupted: bool, fail_fast: bool) -> Outcomes {
        run_prepared(client, plan, interrupted, fail_fast, |_| {}).await
    }

    /// As [`run_with`], with `prepare` given the state directory before the run's
    /// journal is created.
    async fn run_prepared(
        client: Client,
        plan: &Plan,
        interrupted: bool,
        fail_fast: bool,
        prepare: impl FnOnce(&std::path::Path),
    ) -> Outcomes {
        let dir = tempfile::tempdir().expect("tempdir");
        prepare(dir.path());
        let session = Session {
            scope: crate::accounts::Scope::own(
                crate::aws::CallerIdentity {
                    account_id: "123456789012".into(),
                    arn: "arn:aws:iam::123456789012:user/t".into(),
                    partition: "aws".into(),
                },
                plan.regions(),
            ),
            aws: crate::aws::Aws::with_ec2_client(client),
        };
        let audit = Mutex::new(AuditLog::open(dir.path()).expect("audit"));
        let journal = Journal::create(dir.path(), "run-1", plan).expect("journal");
        let report = apply(
            &[session],
            plan,
            &audit,
            &journal,
            &ApplyOptions {
                concurrency: 1,
                run_id: "run-1".into(),
                interrupted: Arc::new(AtomicBool::new(interrupted)),
                fail_fast,
                unreachable: BTreeMap::new(),
                progress: Arc::new(crate::progress::Silent),
                cause: None,
                deadline: Instant::now() + std::time::Duration::from_secs(60),
            },
        )
        .await
        .expect("apply runs");
        crate::audit::verify(dir.path()).expect("the audit chain verifies");
        Outcomes {
            report,
            records: crate::audit::read(dir.path()).expect("records"),
        }
    }

    fn change_records(records: &[crate::audit::Record]) -> Vec<&ChangeRecord> {
        records
            .iter()
            .filter_map(|r| match &r.entry {
                Entry::Change(c) => Some(c.as_ref()),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_call_that_answers_success_but_changes_nothing_is_a_failure() {
        // Reads before and after both show the rule: the revoke "succeeded" in name only.
        let describe = mock!(Client::describe_security_group_rules)
            .then_output(|| rules_output(vec![open_rule("sg-1", "sgr-1")]));
        let revoke_call = revoke_succeeds();
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &revoke_call]);
        let plan = plan_of(vec![revoke("sg-1", "sgr-1"), revoke("sg-2", "sgr-2")]);
        let out = run_with(client, &plan, false, true).await;

        assert!(
            matches!(&out.report.outcomes[0].1, Outcome::Failed { code, .. } if code == "VerificationFailed")
        );
        assert!(
            matches!(&out.report.outcomes[1].1, Outcome::Skipped { reason } if reason.contains("--fail-fast")),
            "with --fail-fast, apply stops at the first failure"
        );
        let records = change_records(&out.records);
        assert_eq!(records.len(), 2);
        assert!(
            matches!(&records[0].outcome, Outcome::Failed { code, .. } if code == "VerificationFailed")
        );
        assert!(
            records[0].after.to_string().contains("sgr-1"),
            "the record shows what was read back"
        );
        assert_eq!(revoke_call.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_refused_repeat_of_a_change_already_made_is_a_success_saying_so() {
        // The revoke's first answer was lost and the SDK's repeat is refused: the rule
        // is already gone. The read-back, not the answer, decides.
        let before = mock!(Client::describe_security_group_rules)
            .then_output(|| rules_output(vec![open_rule("sg-1", "sgr-1")]));
        let gone = mock!(Client::revoke_security_group_egress).then_http_response(|| {
            let mut response = HttpResponse::new(
                StatusCode::try_from(400).expect("status"),
                SdkBody::from(
                    "<Response><Errors><Error><Code>InvalidPermission.NotFound</Code><Message>The specified rule does not exist in this security group.</Message></Error></Errors><RequestID>req-9</RequestID></Response>",
                ),
            );
            response.headers_mut().insert("x-amzn-requestid", "req-9");
            response
        });
        let after =
            mock!(Client::describe_security_group_rules).then_output(|| rules_output(Vec::new()));
        let client = mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&before, &gone, &after]);
        let out = run(client, &plan_of(vec![revoke("sg-1", "sgr-1")])).await;
        assert_eq!(out.report.outcomes[0].1, Outcome::Succeeded);
        let records = change_records(&out.records);
        assert_eq!(records[0].outcome, Outcome::Succeeded);
        assert_eq!(records[0].request_ids, ["req-9"]);
        assert!(
            records[0]
                .recovered
                .as_deref()
                .is_some_and(|r| r.contains("InvalidPermission.NotFound")),
            "{:?}",
            records[0].recovered
        );
    }

    #[tokio::test]
    async fn a_refused_call_that_leaves_the_state_as_before_is_a_failure() {
        let describe = mock!(Client::describe_security_group_rules)
            .then_output(|| rules_output(vec![open_rule("sg-1", "sgr-1")]));
        let refused = mock!(Client::revoke_security_group_egress).then_http_response(|| {
            HttpResponse::new(
                StatusCode::try_from(500).expect("status"),
                SdkBody::from(
                    "<Response><Errors><Error><Code>InternalError</Code><Message>An internal error has occurred.</Message></Error></Errors><RequestID>req-5</RequestID></Response>",
                ),
            )
        });
        let client = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&describe, &refused],
            |conf| conf.retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled())
        );
        let out = run(client, &plan_of(vec![revoke("sg-1", "sgr-1")])).await;
        assert!(
            matches!(&out.report.outcomes[0].1, Outcome::Failed { code, .. } if code == "InternalError"),
            "{:?}",
            out.report.outcomes[0].1
        );
        assert_eq!(change_records(&out.records)[0].recovered, None);
    }

    #[tokio::test]
    async fn throttling_is_absorbed_by_retries() {
        let throttled = || {
            HttpResponse::new(
                StatusCode::try_from(503).expect("status"),
                SdkBody::from(
                    "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>r-1</RequestID></Response>",
                ),
            )
        };
        let before = mock!(Client::describe_security_group_rules)
            .sequence()
            .http_response(throttled)
            .times(2)
            .output(|| rules_output(vec![open_rule("sg-1", "sgr-1")]))
            .build();
        let revoke_call = revoke_succeeds();
        let after =
            mock!(Client::describe_security_group_rules).then_output(|| rules_output(Vec::new()));
        let client = mock_client!(
            aws_sdk_ec2,
            RuleMode::Sequential,
            [&before, &revoke_call, &after],
            |conf| conf.retry_config(
                aws_sdk_ec2::config::retry::RetryConfig::standard().with_max_attempts(4)
            )
        );
        let out = run(client, &plan_of(vec![revoke("sg-1", "sgr-1")])).await;
        assert_eq!(out.report.outcomes[0].1, Outcome::Succeeded);
        assert_eq!(
            before.num_calls(),
            3,
            "two throttled attempts, then the answer"
        );
    }

    #[tokio::test]
    async fn a_refused_call_fails_with_the_service_code_and_request_id() {
        let describe = mock!(Client::describe_security_group_rules)
            .then_output(|| rules_output(vec![open_rule("sg-1", "sgr-1")]));
        let refused = mock!(Client::revoke_security_group_egress).then_http_response(|| {
            // EC2 names the request in the x-amzn-requestid header as well as the body.
            let mut response = HttpResponse::new(
                StatusCode::try_from(403).expect("status"),
                SdkBody::from(
                    "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>req-42</RequestID></Response>",
                ),
            );
            response.headers_mut().insert("x-amzn-requestid", "req-42");
            response
        });
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &refused]);
        let out = run(client, &plan_of(vec![revoke("sg-1", "sgr-1")])).await;
        let records = change_records(&out.records);
        assert!(
            matches!(&records[0].outcome, Outcome::Failed { code, message } if code == "UnauthorizedOperation" && message.contains("not authorized"))
        );
        assert_eq!(records[0].request_ids, vec!["req-42".to_string()]);
    }

    #[tokio::test]
    async fn a_stale_change_is_refused_without_calling() {
        // Since the plan, someone replaced the rule: its id differs.
        let describe = mock!(Client::describe_security_group_rules)
            .then_output(|| rules_output(vec![open_rule("sg-1", "sgr-9")]));
        let revoke_call = revoke_succeeds();
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &revoke_call]);
        let out = run(client, &plan_of(vec![revoke("sg-1", "sgr-1")])).await;
        assert!(
            matches!(&out.report.outcomes[0].1, Outcome::Failed { code, message } if code == "StalePlan" && message.contains("sg-1"))
        );
        assert_eq!(
            revoke_call.num_calls(),
            0,
            "nothing is called on a stale change"
        );
    }

    #[tokio::test]
    async fn an_interrupted_apply_starts_nothing_and_records_why() {
        let describe = mock!(Client::describe_security_group_rules)
            .then_output(|| rules_output(vec![open_rule("sg-1", "sgr-1")]));
        let revoke_call = revoke_succeeds();
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &revoke_call]);
        let out = run_with(client, &plan_of(vec![revoke("sg-1", "sgr-1")]), true, false).await;
        assert_eq!(
            out.report.outcomes[0].1,
            Outcome::Skipped {
                reason: "not attempted: apply was interrupted".into()
            }
        );
        assert_eq!(revoke_call.num_calls(), 0);
        assert_eq!(change_records(&out.records).len(), 1, "the skip is audited");
    }

    /// A run whose journal cannot be written (here: a full device) stops starting
    /// changes and says what it could not record; the CLI turns that into an error
    /// (`Error::NotRecorded`) instead of reporting a finished run.
    #[tokio::test]
    async fn a_run_that_cannot_record_stops_and_says_what_went_unrecorded() {
        let (client, _, revoke) = revoking_ec2("none");
        let out = run_prepared(client, &revokes(&["sg-1", "sg-2"]), false, false, |dir| {
            let run = dir.join("runs").join("run-1");
            std::fs::create_dir_all(&run).expect("run folder");
            std::os::unix::fs::symlink("/dev/full", run.join("journal.jsonl"))
                .expect("journal on a full device");
        })
        .await;
        assert_eq!(revoke.num_calls(), 0, "nothing is changed unrecorded");
        let [first, second] = out.report.unrecorded.as_slice() else {
            panic!("two records lost: {:?}", out.report.unrecorded)
        };
        assert!(
            first.starts_with("change ") && first.contains("sg-1"),
            "{first}"
        );
        assert!(second.contains("sg-2"), "{second}");
        assert!(
            first.contains("No space left on device"),
            "the reason is kept: {first}"
        );
        assert!(
            matches!(&out.report.outcomes[0].1, Outcome::Failed { code, .. } if code == "JournalError"),
            "{:?}",
            out.report.outcomes
        );
    }

    /// EC2 with `groups` open groups whose revokes take effect; `lagging` shows its
    /// revoke only from the second read after it (a read that came too soon).
    fn revoking_ec2(
        lagging: &'static str,
    ) -> (Client, aws_smithy_mocks::Rule, aws_smithy_mocks::Rule) {
        let revoked: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        let seen = revoked.clone();
        let describe = mock!(Client::describe_security_group_rules).then_compute_output(move |r| {
            let mut seen = seen.lock().expect("lock");
            let rules = r
                .filters()
                .iter()
                .flat_map(|f| f.values())
                .filter(|group| match seen.get_mut(group.as_str()) {
                    None => true,
                    Some(reads) => {
                        *reads += 1;
                        group.as_str() == lagging && *reads == 1
                    }
                })
                .map(|group| open_rule(group, &format!("sgr-{group}")))
                .collect();
            rules_output(rules)
        });
        let revoke = mock!(Client::revoke_security_group_egress).then_compute_output(move |r| {
            if let Some(group) = r.group_id() {
                revoked.lock().expect("lock").insert(group.to_string(), 0);
            }
            RevokeSecurityGroupEgressOutput::builder()
                .r#return(true)
                .build()
        });
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &revoke]);
        (client, describe, revoke)
    }

    /// One revoke of each group's open rule, all in one stage.
    fn revokes<G: AsRef<str>>(groups: &[G]) -> Plan {
        plan_of(
            groups
                .iter()
                .map(|g| revoke(g.as_ref(), &format!("sgr-{}", g.as_ref())))
                .collect(),
        )
    }

    fn assert_all_succeeded(report: &ApplyReport) {
        assert!(
            report
                .outcomes
                .iter()
                .all(|(_, o)| *o == Outcome::Succeeded),
            "{:?}",
            report.outcomes
        );
    }

    #[tokio::test]
    async fn a_stage_reads_its_groups_in_pages_of_200_before_and_after_their_calls() {
        let (client, describe, revoke_call) = revoking_ec2("sg-none");
        let groups: Vec<String> = (0..250).map(|i| format!("sg-{i:03}")).collect();
        let out = run(client, &revokes(&groups)).await;
        assert_all_succeeded(&out.report);
        assert_eq!(revoke_call.num_calls(), 250);
        assert_eq!(
            describe.num_calls(),
            4,
            "one read before and one after each page (200 and 50 groups)"
        );
        let records = change_records(&out.records);
        assert_eq!(records.len(), 250, "each change keeps its own record");
        for record in records {
            let group = &record.resource.id;
            assert_eq!(record.before, rule_state(Some(&format!("sgr-{group}"))));
            assert_eq!(record.after, rule_state(None), "{group} read back");
        }
    }

    #[tokio::test]
    async fn a_bulk_read_back_that_came_too_soon_is_read_again_alone_before_failing() {
        let (client, describe, _) = revoking_ec2("sg-2");
        let groups = ["sg-1", "sg-2", "sg-3"];
        let out = run(client, &revokes(&groups)).await;
        assert_all_succeeded(&out.report);
        assert_eq!(
            describe.num_calls(),
            3,
            "the page's two reads, and sg-2's own once the page's did not show it revoked"
        );
    }

    /// A change to `group` whose call leaves its (mocked) state as it was, so it is
    /// verified whenever its call answers success.
    fn keep(runbook: &str, region: &str, step: &str, group: &str) -> Change {
        let mut change = revoke(group, &format!("sgr-{group}"));
        change.id = format!("{runbook}/{region}/{step}/{group}#1");
        change.runbook = runbook.into();
        change.region = region.into();
        change.step = step.into();
        change.after = change.before.clone();
        change
    }

    fn runbook(id: &str, steps: &[&str], requires: &[&str]) -> PlannedRunbook {
        PlannedRunbook {
            id: id.into(),
            title: id.into(),
            path: format!("{id}.yaml"),
            digest: "d".into(),
            controls: Vec::new(),
            steps: steps.iter().map(|s| s.to_string()).collect(),
            requires: requires.iter().map(|s| s.to_string()).collect(),
            parameters: Default::default(),
            given_parameters: Vec::new(),
            compliant: Default::default(),
        }
    }

    /// One runbook `t` (steps close, later) whose first change fails in us-east-1; `u`
    /// independent of it; `v` requiring it.
    fn isolation_plan() -> Plan {
        let mut plan = plan_of(vec![
            keep("t", "us-east-1", "close", "sg-bad"),
            keep("t", "us-east-1", "close", "sg-a"),
            keep("t", "us-east-1", "later", "sg-b"),
            keep("u", "us-east-1", "close", "sg-c"),
            keep("v", "us-east-1", "close", "sg-d"),
            keep("t", "eu-west-1", "close", "sg-e"),
            keep("t", "eu-west-1", "later", "sg-f"),
            keep("v", "eu-west-1", "close", "sg-g"),
        ]);
        plan.accounts[0].target.regions = vec!["us-east-1".into(), "eu-west-1".into()];
        plan.runbooks = vec![
            runbook("t", &["close", "later"], &[]),
            runbook("u", &["close"], &[]),
            runbook("v", &["close"], &["t"]),
        ];
        plan
    }

    /// Every group a read names has its one open rule (the calls leave it as it was),
    /// however many the read names.
    fn described() -> aws_smithy_mocks::Rule {
        mock!(Client::describe_security_group_rules).then_compute_output(|r| {
            rules_output(
                r.filters()
                    .iter()
                    .flat_map(|f| f.values())
                    .map(|group| open_rule(group, &format!("sgr-{group}")))
                    .collect(),
            )
        })
    }

    fn isolation_client() -> (Client, aws_smithy_mocks::Rule, aws_smithy_mocks::Rule) {
        let refused = mock!(Client::revoke_security_group_egress)
            .match_requests(|r| r.group_id() == Some("sg-bad"))
            .then_http_response(|| {
                HttpResponse::new(
                    StatusCode::try_from(400).expect("status"),
                    SdkBody::from(
                        "<Response><Errors><Error><Code>InvalidPermission.NotFound</Code><Message>The specified rule does not exist in this security group.</Message></Error></Errors><RequestID>req-7</RequestID></Response>",
                    ),
                )
            });
        let revoked = revoke_succeeds();
        let described = described();
        let client = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&refused, &revoked, &described]
        );
        (client, refused, revoked)
    }

    fn outcome_of<'a>(report: &'a ApplyReport, id: &str) -> &'a Outcome {
        &report
            .outcomes
            .iter()
            .find(|(i, _)| i == id)
            .unwrap_or_else(|| panic!("no outcome for {id}"))
            .1
    }

    #[tokio::test]
    async fn a_failure_holds_back_only_its_runbooks_later_steps_there_and_what_requires_it() {
        let (client, refused, revoked) = isolation_client();
        let out = run(client, &isolation_plan()).await;
        let report = &out.report;
        assert!(matches!(
            outcome_of(report, "t/us-east-1/close/sg-bad#1"),
            Outcome::Failed { code, .. } if code == "InvalidPermission.NotFound"
        ));
        for ok in [
            "t/us-east-1/close/sg-a#1",
            "u/us-east-1/close/sg-c#1",
            "t/eu-west-1/close/sg-e#1",
            "t/eu-west-1/later/sg-f#1",
            "v/eu-west-1/close/sg-g#1",
        ] {
            assert_eq!(outcome_of(report, ok), &Outcome::Succeeded, "{ok} goes on");
        }
        assert_eq!(
            outcome_of(report, "t/us-east-1/later/sg-b#1"),
            &Outcome::Skipped {
                reason: "not attempted: t/us-east-1/close/sg-bad#1 failed in us-east-1, and the later steps of runbook t build on it".into()
            }
        );
        assert_eq!(
            outcome_of(report, "v/us-east-1/close/sg-d#1"),
            &Outcome::Skipped {
                reason: "not attempted: runbook v requires t, whose change t/us-east-1/close/sg-bad#1 failed in us-east-1".into()
            }
        );
        assert_eq!(
            report.held_back(),
            vec![(
                "t/us-east-1/close/sg-bad#1",
                vec!["t/us-east-1/later/sg-b#1", "v/us-east-1/close/sg-d#1"]
            )]
        );
        assert_eq!(refused.num_calls(), 1);
        assert_eq!(revoked.num_calls(), 5);
        // Every change, made or not, has its record.
        assert_eq!(change_records(&out.records).len(), 8);
    }

    #[tokio::test]
    async fn with_fail_fast_the_first_failure_stops_everything_after_it() {
        let (client, refused, revoked) = isolation_client();
        let out = run_with(client, &isolation_plan(), false, true).await;
        let report = &out.report;
        assert_eq!(report.failed(), 1);
        assert_eq!(refused.num_calls(), 1);
        // sg-bad's stage goes first. At concurrency 1, us-east-1's next chain waits for
        // it and is not attempted; eu-west-1's runs beside it and may be under way.
        // Nothing of a later stage starts.
        assert!(matches!(
            outcome_of(report, "t/us-east-1/close/sg-a#1"),
            Outcome::Skipped { .. }
        ));
        assert!(report.succeeded() <= 1 && revoked.num_calls() <= 1);
        for later in [
            "t/us-east-1/later/sg-b#1",
            "u/us-east-1/close/sg-c#1",
            "v/us-east-1/close/sg-d#1",
            "t/eu-west-1/later/sg-f#1",
            "v/eu-west-1/close/sg-g#1",
        ] {
            assert!(
                matches!(outcome_of(report, later), Outcome::Skipped { reason } if reason.ends_with("(--fail-fast)")),
                "{later}"
            );
        }
        assert!(matches!(
            outcome_of(report, "u/us-east-1/close/sg-c#1"),
            Outcome::Skipped { reason } if reason == "not attempted: apply stopped after t/us-east-1/close/sg-bad#1 failed (--fail-fast)"
        ));
    }

    #[test]
    fn stages_follow_the_runbooks_order_even_when_a_step_first_appears_in_a_later_region() {
        // us-east-1 has nothing for t's first step; eu-west-1 has. The step must still run
        // before u's, as `after:` promised.
        let mut plan = plan_of(vec![
            keep("t", "us-east-1", "later", "sg-1"),
            keep("u", "us-east-1", "close", "sg-2"),
            keep("t", "eu-west-1", "close", "sg-3"),
        ]);
        plan.runbooks = vec![
            runbook("t", &["close", "later"], &[]),
            runbook("u", &["close"], &[]),
        ];
        assert_eq!(
            stages(&plan),
            vec![vec![vec![2]], vec![vec![0]], vec![vec![1]]]
        );
    }

    #[test]
    fn each_step_is_a_stage_and_each_resource_a_chain_within_it() {
        let step = |step: &str, group: &str, n: usize| {
            let mut change = revoke(group, "sgr-1");
            change.step = step.into();
            change.id = format!("t/us-east-1/{step}/{group}#{n}");
            change
        };
        let plan = plan_of(vec![
            step("close", "sg-1", 1),
            step("close", "sg-1", 2),
            step("close", "sg-2", 1),
            step("restrict", "sg-1", 1),
        ]);
        assert_eq!(
            stages(&plan),
            vec![vec![vec![0, 1], vec![2]], vec![vec![3]]]
        );
    }

    fn flow_log_change(vpc: &str) -> Change {
        let logs = |with: bool| {
            let log = json!({"id": crate::template::KNOWN_AFTER_APPLY, "traffic_type": "ALL",
                "destination_type": "s3", "destination": "arn:aws:s3:::logs", "status": "ACTIVE"});
            json!({"flow_logs": if with { vec![log] } else { Vec::new() }})
        };
        Change {
            id: format!("t/us-east-1/flow/{vpc}#1"),
            runbook: "t".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            step: "flow".into(),
            action: "ec2:enable-flow-logs".into(),
            resource: ResourceRef {
                kind: ResourceKind::Vpc,
                id: vpc.into(),
                tags: Default::default(),
            },
            kind: ChangeKind::Create,
            summary: "flow log".into(),
            before: logs(false),
            after: logs(true),
            call: ApiCall {
                service: "ec2".into(),
                operation: "CreateFlowLogs".into(),
                input: json!({"ResourceIds": [vpc], "ResourceType": "VPC", "TrafficType": "ALL",
                    "LogDestinationType": "s3", "LogDestination": "arn:aws:s3:::logs"}),
            },
            on_failure: OnFailure::Continue,
            wait_timeout_seconds: None,
            probe: None,
        }
    }

    #[tokio::test]
    async fn flow_logs_go_out_in_one_call_and_a_vpc_listed_unsuccessful_is_that_vpcs_failure() {
        use aws_sdk_ec2::operation::create_flow_logs::CreateFlowLogsOutput;
        use aws_sdk_ec2::operation::describe_flow_logs::DescribeFlowLogsOutput;
        use aws_sdk_ec2::types::{
            FlowLog, LogDestinationType, TrafficType, UnsuccessfulItem, UnsuccessfulItemError,
        };
        use std::collections::BTreeSet;

        // What the mocked service holds: VPCs that have a flow log.
        let logged: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let held = logged.clone();
        let create = mock!(Client::create_flow_logs).then_compute_output(move |input| {
            let mut refused = Vec::new();
            for id in input.resource_ids() {
                if id == "vpc-2" {
                    refused.push(
                        UnsuccessfulItem::builder()
                            .resource_id(id)
                            .error(
                                UnsuccessfulItemError::builder()
                                    .code("InvalidParameter")
                                    .message("LogDestination: bucket refused")
                                    .build(),
                            )
                            .build(),
                    );
                } else if let Ok(mut held) = held.lock() {
                    held.insert(id.clone());
                }
            }
            CreateFlowLogsOutput::builder()
                .set_unsuccessful(Some(refused))
                .build()
        });
        let held = logged.clone();
        let describe = mock!(Client::describe_flow_logs).then_compute_output(move |input| {
            let vpc = input
                .filter()
                .first()
                .and_then(|f| f.values().first().cloned())
                .unwrap_or_default();
            let has = held.lock().map(|h| h.contains(&vpc)).unwrap_or(false);
            let logs = has.then(|| {
                FlowLog::builder()
                    .flow_log_id(format!("fl-{vpc}"))
                    .resource_id(&vpc)
                    .traffic_type(TrafficType::All)
                    .log_destination_type(LogDestinationType::S3)
                    .log_destination("arn:aws:s3:::logs")
                    .flow_log_status("ACTIVE")
                    .build()
            });
            DescribeFlowLogsOutput::builder()
                .set_flow_logs(Some(logs.into_iter().collect()))
                .build()
        });
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&create, &describe]);
        let plan = plan_of(vec![
            flow_log_change("vpc-1"),
            flow_log_change("vpc-2"),
            flow_log_change("vpc-3"),
        ]);
        let out = run(client, &plan).await;
        assert_eq!(create.num_calls(), 1, "three VPCs, one CreateFlowLogs call");
        let outcomes: Vec<(&str, &Outcome)> = out
            .report
            .outcomes
            .iter()
            .map(|(id, o)| (id.as_str(), o))
            .collect();
        assert_eq!(
            outcomes[0],
            ("t/us-east-1/flow/vpc-1#1", &Outcome::Succeeded)
        );
        assert_eq!(
            outcomes[2],
            ("t/us-east-1/flow/vpc-3#1", &Outcome::Succeeded)
        );
        let Outcome::Failed { code, message } = outcomes[1].1 else {
            panic!("vpc-2 must fail, got {:?}", outcomes[1].1)
        };
        assert_eq!(code, "InvalidParameter");
        assert!(
            message.contains("vpc-2") && message.contains("Unsuccessful"),
            "{message}"
        );
        let records = change_records(&out.records);
        assert_eq!(records.len(), 3, "each VPC has its own audit record");
        assert!(matches!(records[1].outcome, Outcome::Failed { .. }));
    }
}
