//! Resuming a run that did not finish (`harden resume RUN_ID`): what its journal says,
//! what the account now shows, and what is left to do.
//!
//! A resumed run is not the old plan replayed. The changes in flight when the process
//! died are read back and recorded for what the state shows (made, not made, or
//! neither), under the old run's id, so the old run's audit is complete. Then the old
//! run's runbooks are planned again, with the values it used, against the live state,
//! and only the resources the old run was changing are kept: the planner already
//! continues from wherever a run stopped (the artifacts and marks harden leaves in AWS
//! say how far it got), so nothing is done twice and nothing new is taken on.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use super::journal::{Journal, JournalEntry, Phase};
use crate::accounts::Session;
use crate::actions::ResourceKind;
use crate::audit::{AuditLog, ChangeRecord, Entry, Outcome};
use crate::error::{Error, Result};
use crate::plan::{Change, Plan, state_matches};

/// File in a resuming run's folder naming the run it resumes.
pub const RESUMES_FILE: &str = "resumes";

/// What reading back a change that was in flight found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The resource is as the change leaves it: the call was made.
    Made,
    /// The resource is as it was before the change: the call was not made (or made
    /// no difference).
    NotMade,
    /// Neither: someone else changed it, or the call is still under way.
    Neither(String),
    /// It could not be read.
    Unread(String),
}

/// A change the old run started and never recorded the end of, and what was found.
#[derive(Debug, Clone)]
pub struct InFlight {
    /// The change as the old plan has it.
    pub change: Change,
    /// What its resource shows now.
    pub found: Found,
    /// The state read (null when it could not be read).
    pub state: Value,
}

/// The run to resume, as its folder holds it.
#[derive(Debug)]
pub struct PastRun {
    /// Its id.
    pub run_id: String,
    /// Its plan.
    pub plan: Plan,
    /// Its journal.
    pub journal: Vec<JournalEntry>,
    /// The changes its audit records, by id: a page's records are written before its
    /// journal lines, so a change the journal leaves in flight may have ended.
    pub audited: BTreeSet<String>,
}

impl PastRun {
    /// Reads `runs/RUN_ID/` of `state_dir`.
    pub fn load(state_dir: &Path, run_id: &str) -> Result<Self> {
        let dir = state_dir.join("runs").join(run_id);
        if !dir.join("plan.json").is_file() {
            return Err(Error::NoSuchRun {
                run: run_id.to_string(),
                state_dir: state_dir.to_path_buf(),
            });
        }
        Ok(Self {
            run_id: run_id.to_string(),
            plan: Plan::load(&dir.join("plan.json"))?,
            journal: Journal::read_tolerant(state_dir, run_id)?,
            audited: crate::audit::read(state_dir)?
                .into_iter()
                .filter(|record| record.run_id == run_id)
                .filter_map(|record| match record.entry {
                    Entry::Change(change) => Some(change.change_id),
                    _ => None,
                })
                .collect(),
        })
    }

    /// The changes started and never ended, in plan order: journaled as started
    /// without an end, and not audited (a change whose record was written ended, even
    /// when the process died before its journal line).
    pub fn in_flight(&self) -> Vec<&Change> {
        let last = super::journal::last_phases(&self.journal);
        self.plan
            .changes
            .iter()
            .filter(|c| last.get(c.id.as_str()) == Some(&Phase::Started))
            .filter(|c| !self.audited.contains(&c.id))
            .collect()
    }

    /// Whether every change of its plan was made and verified.
    pub fn is_complete(&self) -> bool {
        let last = super::journal::last_phases(&self.journal);
        self.plan
            .changes
            .iter()
            .all(|c| last.get(c.id.as_str()) == Some(&Phase::Succeeded))
    }

    /// The resources the run was changing.
    pub fn resources(&self) -> BTreeSet<Place> {
        self.plan.changes.iter().map(place).collect()
    }

    /// `fresh` (a new plan of the same runbooks) cut down to the resources this run
    /// was changing: what finishing it means.
    pub fn remaining(&self, fresh: &Plan) -> Plan {
        let ours = self.resources();
        let mut remaining = fresh.subset(|i| ours.contains(&place(&fresh.changes[i])));
        remaining.blocked = fresh
            .blocked
            .iter()
            .filter(|b| {
                ours.contains(&(
                    b.account_id.clone(),
                    b.region.clone(),
                    b.runbook.clone(),
                    b.resource.kind,
                    b.resource.id.clone(),
                ))
            })
            .cloned()
            .collect();
        remaining.not_planned = fresh.not_planned.clone();
        remaining.unreachable = fresh.unreachable.clone();
        remaining
    }
}

/// (account, region, runbook, kind, id) of a resource a run changes: the kind is part
/// of it, since a queue and a rule of one runbook may share a name.
pub type Place = (String, String, String, ResourceKind, String);

fn place(change: &Change) -> Place {
    (
        change.account_id.clone(),
        change.region.clone(),
        change.runbook.clone(),
        change.resource.kind,
        change.resource.id.clone(),
    )
}

/// Reads back each change in flight and compares the state with its after and its
/// before.
pub async fn read_in_flight(
    sessions: &[Session],
    changes: &[&Change],
    deadline: std::time::Instant,
) -> Vec<InFlight> {
    let mut found = Vec::with_capacity(changes.len());
    for change in changes {
        let (found_here, state) = match super::read_resource(sessions, change, deadline).await {
            Err(why) => (Found::Unread(why), Value::Null),
            Ok(state) => {
                let found = match state_matches(&change.after, &state) {
                    Ok(()) => Found::Made,
                    Err(from_after) => match state_matches(&change.before, &state) {
                        Ok(()) => Found::NotMade,
                        Err(_) => Found::Neither(from_after),
                    },
                };
                (found, state)
            }
        };
        found.push(InFlight {
            change: (*change).clone(),
            found: found_here,
            state,
        });
    }
    found
}

/// Records what was found of each change in flight, under the interrupted run's id
/// (its change ids are that run's): made is a success, not made a change not
/// attempted (the resumed run makes it), anything else a failure naming the
/// difference.
pub fn record_in_flight(
    log: &mut AuditLog,
    interrupted: &PastRun,
    resumed_by: &str,
    principal: &str,
    found: &[InFlight],
) -> Result<()> {
    for InFlight {
        change,
        found,
        state,
    } in found
    {
        let died = format!(
            "the process applying run {} died with this call in flight; resume {resumed_by} read the resource",
            interrupted.run_id
        );
        let (outcome, recovered) = match found {
            Found::Made => (
                Outcome::Succeeded,
                Some(format!("{died} and found the change made")),
            ),
            Found::NotMade => (
                Outcome::Skipped {
                    reason: format!(
                        "{died} and found the change not made; the resumed run makes it"
                    ),
                },
                None,
            ),
            Found::Neither(detail) => (
                Outcome::Failed {
                    code: "Interrupted".into(),
                    message: format!(
                        "{died} and found it neither as before nor as planned: {detail}"
                    ),
                },
                None,
            ),
            Found::Unread(why) => (
                Outcome::Failed {
                    code: "Interrupted".into(),
                    message: format!("{died} but could not read it: {why}"),
                },
                None,
            ),
        };
        let record = ChangeRecord {
            before: change.before.clone(),
            after: state.clone(),
            recovered,
            ..ChangeRecord::of(&interrupted.plan, change, outcome)
        };
        log.append(
            &interrupted.run_id,
            &change.account_id,
            principal,
            Entry::Change(Box::new(record)),
        )?;
    }
    Ok(())
}
