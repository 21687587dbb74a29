//! Undoing a run (`harden rollback RUN_ID`): its changes in reverse order, each by the
//! inverse its action knows, from what the audit recorded (the call, the state before,
//! the state read back).
//!
//! The rollback is a plan like any other, so it is shown first, may be saved and
//! applied with `apply --plan`, and is applied by the same executor: each inverse's
//! before is the state the run left (recorded after its change), so a resource that
//! changed since is refused by the stale check; its after is the state the run found,
//! and the read-back must show it. A resource the run created is undone by deleting it,
//! which takes the run's later changes of it along (they need no inverse of their own).
//! Inverses are planned per resource from its last
//! change back; once one change of a resource has no way back, the earlier ones are not
//! undone either (they would rebuild on a state that is not there).

use std::collections::{BTreeMap, BTreeSet};

use crate::accounts::Session;
use crate::actions;
use crate::audit::{ChangeRecord, Entry, Outcome, Record};
use serde_json::Value;

use crate::actions::ResourceKind;
use crate::plan::{ApiCall, BlockReason, Blocked, Change, Plan, PlannedRunbook, state_matches};
use crate::template::KNOWN_AFTER_APPLY;

/// (account, region, kind, id): one resource, whose inverses form one chain. The kind
/// is part of it: a queue and a rule may share a name.
type ResourceKey = (String, String, ResourceKind, String);

fn resource_key(change: &Change) -> ResourceKey {
    (
        change.account_id.clone(),
        change.region.clone(),
        change.resource.kind,
        change.resource.id.clone(),
    )
}

/// The key of the resource a recorded change was made to.
fn recorded_key(record: &Record, change: &ChangeRecord) -> ResourceKey {
    (
        record.account_id.clone(),
        change.region.clone(),
        change.resource.kind,
        change.resource.id.clone(),
    )
}

/// File in a rollback run's folder naming the run it undoes.
pub const ROLLS_BACK_FILE: &str = "rolls-back";

/// The rollback plan of run `run_id`: `run` is its plan (runs/RUN_ID/plan.json), and
/// `records` the whole audit log, of which its change records are used.
pub fn plan(run_id: &str, run: &Plan, records: &[Record], principal: &str) -> Plan {
    let made: Vec<(&Record, &ChangeRecord)> = records
        .iter()
        .filter(|r| r.run_id == run_id)
        .filter_map(|r| match &r.entry {
            Entry::Change(change) if change.outcome == Outcome::Succeeded => Some((r, &**change)),
            _ => None,
        })
        .collect();
    let mut changes = Vec::new();
    let mut blocked = Vec::new();
    // Resources with a change that cannot be undone: nothing earlier of them is.
    let mut stuck: BTreeMap<ResourceKey, String> = BTreeMap::new();
    // Per resource, the values a later inverse renews (the ids of rules authorized
    // again): in the states recorded earlier they are known only after apply.
    let mut renewed: BTreeMap<ResourceKey, BTreeSet<String>> = BTreeMap::new();
    let created = created_by_run(&made);
    let chains = undone_as_chains(run_id, &made);
    // Per resource the run created, the changes it made to it afterwards (undone by
    // deleting it) and the state it left, which the deletion starts from.
    let mut covered: BTreeMap<ResourceKey, (Vec<String>, Value)> = BTreeMap::new();
    for (index, (record, change)) in made.iter().enumerate().rev() {
        let resource = recorded_key(record, change);
        let refuse = |detail: String| Blocked {
            runbook: change.runbook.clone(),
            account_id: record.account_id.clone(),
            region: change.region.clone(),
            step: change.step.clone(),
            resource: change.resource.clone(),
            reason: BlockReason::NoWayBack,
            detail,
        };
        if let Some(chain) = chains.get(&resource) {
            if index == chain.last {
                match &chain.inverses {
                    Ok(inverses) => {
                        let action = actions::find(&change.action);
                        let mut before = change.after.clone();
                        for (n, inverse) in inverses.iter().enumerate() {
                            // The first names what the chain undoes; the id of each
                            // names the run's last change.
                            let summary = if n == 0 {
                                format!("{} (undoes {})", inverse.summary, chain.undoes)
                            } else {
                                inverse.summary.clone()
                            };
                            let id = format!("rollback/{}/{}", change.change_id, n + 1);
                            let (record, change) = (*record, *change);
                            let undo = Undone {
                                record,
                                change,
                                id,
                                summary,
                                before,
                                action,
                            };
                            changes.push(undo.change(inverse.clone()));
                            before = inverse.after.clone();
                        }
                    }
                    Err(why) => blocked.push(refuse(format!("{}: {why}", chain.undoes))),
                }
            }
            continue;
        }
        if let Some(&creation) = created.get(&resource)
            && index >= creation
        {
            let (later, _) = covered
                .entry(resource.clone())
                .or_insert_with(|| (Vec::new(), change.after.clone()));
            if index > creation {
                later.push(change.change_id.clone());
                continue;
            }
        }
        if let Some(later) = stuck.get(&resource) {
            blocked.push(refuse(format!(
                "{}: not undone, because the later change {later} of this resource cannot be",
                change.change_id
            )));
            continue;
        }
        let gone = renewed.get(&resource).cloned().unwrap_or_default();
        let (before, after) = (
            unknown(&change.before, &gone),
            unknown(&change.after, &gone),
        );
        let action = actions::find(&change.action);
        let inverse = match action {
            Some(action) => action.inverse(&change.call, &before, &after),
            None => Err(format!("action {} is not in this harden", change.action)),
        }
        .and_then(|inverse| {
            if mentions(&inverse.input, &gone) {
                Err("a later change's undoing gave what it names a new id".into())
            } else {
                Ok(inverse)
            }
        });
        match inverse {
            Ok(inverse) => {
                renewed
                    .entry(resource.clone())
                    .or_default()
                    .extend(renewals(&before, &inverse.after));
                let (left, undoes) = match covered.remove(&resource) {
                    Some((mut later, left)) if inverse.removes_created => {
                        later.reverse();
                        let undoes = std::iter::once(change.change_id.clone())
                            .chain(later)
                            .collect::<Vec<_>>()
                            .join(", ");
                        (unknown(&left, &gone), undoes)
                    }
                    _ => (after.clone(), change.change_id.clone()),
                };
                let undo = Undone {
                    record,
                    change,
                    id: format!("rollback/{}", change.change_id),
                    summary: format!("{} (undoes {undoes})", inverse.summary),
                    before: left,
                    action,
                };
                changes.push(undo.change(inverse));
            }
            Err(why) => {
                blocked.push(refuse(format!("{}: {why}", change.change_id)));
                stuck.insert(resource, change.change_id.clone());
            }
        }
    }
    // Stages run in the plan's runbook and step order: undo the last step first.
    let runbooks: Vec<PlannedRunbook> = run
        .runbooks
        .iter()
        .rev()
        .map(|r| PlannedRunbook {
            steps: r.steps.iter().rev().cloned().collect(),
            requires: Vec::new(),
            compliant: BTreeMap::new(),
            ..r.clone()
        })
        .collect();
    Plan {
        format_version: crate::plan::PLAN_FORMAT_VERSION,
        harden_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: jiff::Timestamp::now(),
        principal: principal.to_string(),
        accounts: run.accounts.clone(),
        unreachable: Vec::new(),
        runbooks,
        changes,
        blocked,
        not_planned: Vec::new(),
        unprobed_services: Vec::new(),
    }
}

/// A rollback change about to be made of a recorded one: the parts that are not the
/// inverse's.
struct Undone<'a> {
    record: &'a Record,
    change: &'a ChangeRecord,
    id: String,
    summary: String,
    /// The state it starts from (the one the run, or the inverse before it, left).
    before: Value,
    action: Option<&'static dyn actions::Action>,
}

impl Undone<'_> {
    /// The rollback change that makes `inverse`.
    fn change(self, inverse: actions::Inverse) -> Change {
        let (record, change) = (self.record, self.change);
        Change {
            id: self.id,
            runbook: change.runbook.clone(),
            account_id: record.account_id.clone(),
            region: change.region.clone(),
            step: change.step.clone(),
            action: change.action.clone(),
            resource: change.resource.clone(),
            kind: inverse.kind,
            summary: self.summary,
            before: unsettled(self.before, self.action),
            after: unsettled(inverse.after, self.action),
            call: ApiCall {
                service: change.call.service.clone(),
                operation: inverse.operation,
                input: inverse.input,
            },
            on_failure: Default::default(),
            wait_timeout_seconds: None,
            probe: None,
        }
    }
}

/// A resource whose action undoes the run's changes of it as one chain
/// ([`actions::Action::inverse_chain`]).
struct UndoneAsChain {
    /// The index in `made` of the run's last change of it, where its inverses go.
    last: usize,
    /// The run's changes of it, named for the plan: "A to B", or the one.
    undoes: String,
    /// The inverses, or why there is no way back.
    inverses: std::result::Result<Vec<actions::Inverse>, String>,
}

/// The resources of the run whose actions undo a chain as one, with their inverses.
fn undone_as_chains(
    run_id: &str,
    made: &[(&Record, &ChangeRecord)],
) -> BTreeMap<ResourceKey, UndoneAsChain> {
    let mut by_resource: BTreeMap<ResourceKey, Vec<usize>> = BTreeMap::new();
    for (index, (record, change)) in made.iter().enumerate() {
        by_resource
            .entry(recorded_key(record, change))
            .or_default()
            .push(index);
    }
    by_resource
        .into_iter()
        .filter_map(|(key, indices)| {
            let (&first, &last) = (indices.first()?, indices.last()?);
            let action = actions::find(&made[last].1.action)?;
            let recorded: Vec<actions::RecordedChange<'_>> = indices
                .iter()
                .map(|&i| actions::RecordedChange {
                    call: &made[i].1.call,
                    before: &made[i].1.before,
                    after: &made[i].1.after,
                })
                .collect();
            let inverses = action.inverse_chain(run_id, &key.3, &recorded)?;
            let (first, last_id) = (&made[first].1.change_id, &made[last].1.change_id);
            let undoes = if first == last_id {
                first.clone()
            } else {
                format!("{first} to {last_id}")
            };
            Some((
                key,
                UndoneAsChain {
                    last,
                    undoes,
                    inverses,
                },
            ))
        })
        .collect()
}

/// Per resource the run created, the index in `made` of the change that created it:
/// the first whose inverse removes what it made.
fn created_by_run(made: &[(&Record, &ChangeRecord)]) -> BTreeMap<ResourceKey, usize> {
    let mut created = BTreeMap::new();
    for (index, (record, change)) in made.iter().enumerate() {
        let resource = recorded_key(record, change);
        if created.contains_key(&resource) {
            continue;
        }
        let removes = actions::find(&change.action)
            .and_then(|a| a.inverse(&change.call, &change.before, &change.after).ok())
            .is_some_and(|inverse| inverse.removes_created);
        if removes {
            created.insert(resource, index);
        }
    }
    created
}

/// `state` with the fields its service changes on its own as `(known after apply)`.
fn unsettled(mut state: Value, action: Option<&'static dyn actions::Action>) -> Value {
    for pointer in action.map_or(&[][..], |a| a.service_owned()) {
        if let Some(field) = state.pointer_mut(pointer) {
            *field = Value::String(KNOWN_AFTER_APPLY.into());
        }
    }
    state
}

/// `value` with every string of `gone` as `(known after apply)`.
fn unknown(value: &Value, gone: &BTreeSet<String>) -> Value {
    match value {
        Value::String(s) if gone.contains(s) => Value::String(KNOWN_AFTER_APPLY.into()),
        Value::Array(items) => Value::Array(items.iter().map(|v| unknown(v, gone)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), unknown(v, gone)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Whether `value` holds one of the strings of `gone`.
fn mentions(value: &Value, gone: &BTreeSet<String>) -> bool {
    match value {
        Value::String(s) => gone.contains(s),
        Value::Array(items) => items.iter().any(|v| mentions(v, gone)),
        Value::Object(map) => map.values().any(|v| mentions(v, gone)),
        _ => false,
    }
}

/// The strings of `before` that `after` has as `(known after apply)` at the same place:
/// what an inverse renews.
fn renewals(before: &Value, after: &Value) -> Vec<String> {
    match (before, after) {
        (Value::String(old), Value::String(new))
            if new == KNOWN_AFTER_APPLY && old != KNOWN_AFTER_APPLY =>
        {
            vec![old.clone()]
        }
        (Value::Array(b), Value::Array(a)) if b.len() == a.len() => {
            b.iter().zip(a).flat_map(|(b, a)| renewals(b, a)).collect()
        }
        (Value::Object(b), Value::Object(a)) => b
            .iter()
            .filter_map(|(k, bv)| Some(renewals(bv, a.get(k)?)))
            .flatten()
            .collect(),
        _ => Vec::new(),
    }
}

/// Reads each resource the rollback would change and moves its inverses to `blocked`
/// when it no longer is as the run left it: a rollback never overwrites a later
/// change it did not make.
pub async fn refuse_changed(
    sessions: &[Session],
    rollback: &mut Plan,
    deadline: std::time::Instant,
) {
    let mut changed: BTreeMap<ResourceKey, String> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for change in &rollback.changes {
        // The first inverse of each resource is the one its current state must match.
        if !seen.insert(resource_key(change)) {
            continue;
        }
        let why = match super::read_resource(sessions, change, deadline).await {
            Ok(now) => state_matches(&change.before, &now)
                .err()
                .map(|d| format!("it changed since the run: {d}")),
            Err(e) => Some(format!("it could not be read: {e}")),
        };
        if let Some(why) = why {
            changed.insert(resource_key(change), why);
        }
    }
    if changed.is_empty() {
        return;
    }
    let (kept, refused): (Vec<Change>, Vec<Change>) = std::mem::take(&mut rollback.changes)
        .into_iter()
        .partition(|c| !changed.contains_key(&resource_key(c)));
    rollback.changes = kept;
    for change in refused {
        let why = &changed[&resource_key(&change)];
        rollback.blocked.push(Blocked {
            runbook: change.runbook.clone(),
            account_id: change.account_id.clone(),
            region: change.region.clone(),
            step: change.step.clone(),
            resource: change.resource.clone(),
            reason: BlockReason::NoWayBack,
            detail: format!("{}: {why}", change.id),
        });
    }
}
