//! What runs when, and what a failure holds back: the plan's stages (one per step),
//! chains (one per resource) and batches (single changes sent as one call), and the
//! places a failed change stops work in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

use serde_json::Value;

use super::{Run, resource_place};
use crate::actions;
use crate::audit::Outcome;
use crate::plan::{Change, Plan};
use crate::runbook::model::OnFailure;

/// Per runbook, the runbooks it needs through `requires:`, followed transitively: a
/// runbook held back somewhere holds back those needing it there.
pub(super) fn needs(plan: &Plan) -> BTreeMap<String, BTreeSet<String>> {
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
pub(super) enum Unit {
    /// Changes to one resource, in order.
    Chain(Vec<usize>),
    /// Single changes to different resources sent as one call.
    Batch(Vec<usize>),
}

impl Unit {
    /// Its first change (all of a unit's are of one account and region).
    pub(super) fn first(&self) -> usize {
        match self {
            Unit::Chain(changes) | Unit::Batch(changes) => changes.first().copied().unwrap_or(0),
        }
    }
}

/// Groups a stage's single-change chains whose calls may go out as one (same region,
/// action and batch key) into batches of at most the action's `max_batch`.
pub(super) fn batched(plan: &Plan, stage: Vec<Vec<usize>>) -> Vec<Unit> {
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
pub(super) fn stages(plan: &Plan) -> Vec<Vec<Vec<usize>>> {
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
    let mut chain_of: BTreeMap<(usize, &str, &str, crate::actions::ResourceKind, &str), usize> =
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

/// Where a failed change stops work: the later steps of its runbook in its region.
#[derive(Debug, Clone)]
pub(super) struct Halt {
    /// The stage the failure happened in; only later stages are held back.
    pub(super) stage: usize,
    /// The failed change.
    pub(super) change_id: String,
}

impl Run<'_> {
    /// The failed change that held back this change's resource in an earlier stage.
    pub(super) fn resource_failed(&self, index: usize) -> Option<String> {
        let change = &self.plan.changes[index];
        self.failed_resources
            .lock()
            .ok()
            .and_then(|failed| failed.get(&resource_place(change)).cloned())
    }

    /// The failure holding back `runbook`'s changes of stage `stage` in `region`: its
    /// own in an earlier step, or one of a runbook it requires.
    pub(super) fn halted(&self, change: &Change, stage: usize) -> Option<(String, Halt)> {
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
    pub(super) fn skip_reason(
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
    pub(super) fn note_failure(&self, stage: usize, change: &Change, outcome: &Outcome) {
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
}
