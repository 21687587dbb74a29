//! The runs of a state directory, as their journals tell them (`harden runs`): what each
//! apply covered and how far it got, so an interrupted or failed one is found without
//! reading journals by hand.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::journal::{Journal, Phase};
use super::resume::RESUMES_FILE;
use super::rollback::ROLLS_BACK_FILE;
use crate::error::{Error, Result};
use crate::plan::Plan;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Every change was made and verified.
    Complete,
    /// A change failed (or putting a resource back failed).
    Failed,
    /// The run stopped before it ended every change: a change was in flight, or some
    /// were never reached (the process died or was stopped).
    Interrupted,
    /// Failed or interrupted, then resumed by another run (`resumed_by`), which
    /// finished it or is to be resumed in turn.
    Resumed,
    /// Undone by a rollback run that completed (`rolled_back_by`).
    RolledBack,
}

/// One run, from its plan and journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// The run id (its folder's name).
    pub run_id: String,
    /// How it ended.
    pub state: RunState,
    /// When its first journal line was written.
    pub started: Option<jiff::Timestamp>,
    /// Accounts its plan covers.
    pub accounts: Vec<String>,
    /// Regions its plan covers.
    pub regions: Vec<String>,
    /// Changes its plan holds.
    pub changes: usize,
    /// Made and verified.
    pub succeeded: usize,
    /// Failed.
    pub failed: usize,
    /// Not attempted (held back by a failure, or stopped).
    pub skipped: usize,
    /// Started with no end: in flight when the process died.
    pub in_flight: usize,
    /// Never reached.
    pub not_reached: usize,
    /// The run that resumed it (`harden resume`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumed_by: Option<String>,
    /// The run it resumes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resumes: Option<String>,
    /// The rollback run that undid it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back_by: Option<String>,
    /// The run it rolls back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolls_back: Option<String>,
}

/// Every run with a journal in `state_dir`, oldest first. A journal's last line cut
/// short (the process died writing it) is ignored: its change counts as in flight.
pub fn list(state_dir: &Path) -> Result<Vec<RunSummary>> {
    let runs_dir = state_dir.join("runs");
    let mut runs = run_ids(state_dir)?
        .into_iter()
        .filter(|id| runs_dir.join(id).join("journal.jsonl").is_file())
        .map(|id| summarize(state_dir, &id))
        .collect::<Result<Vec<_>>>()?;
    let resumed: BTreeMap<String, String> = runs
        .iter()
        .filter_map(|r| Some((r.resumes.clone()?, r.run_id.clone())))
        .collect();
    let rolled_back: BTreeMap<String, String> = runs
        .iter()
        .filter(|r| r.state == RunState::Complete)
        .filter_map(|r| Some((r.rolls_back.clone()?, r.run_id.clone())))
        .collect();
    for run in &mut runs {
        if let Some(by) = resumed.get(&run.run_id) {
            run.resumed_by = Some(by.clone());
            if run.state != RunState::Complete {
                run.state = RunState::Resumed;
            }
        }
        if let Some(by) = rolled_back.get(&run.run_id) {
            run.rolled_back_by = Some(by.clone());
            run.state = RunState::RolledBack;
        }
    }
    // Run ids start with their second, not finer: order by the journal's first line.
    runs.sort_by(|a, b| (a.started, &a.run_id).cmp(&(b.started, &b.run_id)));
    Ok(runs)
}

/// Which run `run_id` resumes, from its folder's [`RESUMES_FILE`].
pub fn resumes(state_dir: &Path, run_id: &str) -> Option<String> {
    marker(state_dir, run_id, RESUMES_FILE)
}

/// The run that resumed `run_id`, if one did: found by reading the marker files only.
pub fn resumed_by(state_dir: &Path, run_id: &str) -> Result<Option<String>> {
    Ok(marked_by(state_dir, RESUMES_FILE, run_id)?
        .into_iter()
        .next())
}

/// The rollback run that undid `run_id` and completed, if one did.
pub fn rolled_back_by(state_dir: &Path, run_id: &str) -> Result<Option<String>> {
    for by in marked_by(state_dir, ROLLS_BACK_FILE, run_id)? {
        if summarize(state_dir, &by)?.state == RunState::Complete {
            return Ok(Some(by));
        }
    }
    Ok(None)
}

/// The runs whose marker `file` names `run_id`.
fn marked_by(state_dir: &Path, file: &str, run_id: &str) -> Result<Vec<String>> {
    Ok(run_ids(state_dir)?
        .into_iter()
        .filter(|id| marker(state_dir, id, file).as_deref() == Some(run_id))
        .collect())
}

/// The folders of `STATE_DIR/runs/`, sorted; none when it does not exist.
fn run_ids(state_dir: &Path) -> Result<Vec<String>> {
    let dir = state_dir.join("runs");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    ids.sort();
    Ok(ids)
}

/// The run id a marker file of `run_id`'s folder names.
fn marker(state_dir: &Path, run_id: &str, file: &str) -> Option<String> {
    let path = state_dir.join("runs").join(run_id).join(file);
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn summarize(state_dir: &Path, run_id: &str) -> Result<RunSummary> {
    let plan = Plan::load(&state_dir.join("runs").join(run_id).join("plan.json"))?;
    let journal = Journal::read_tolerant(state_dir, run_id)?;
    // A run that had nothing to do has no lines: it started when its journal was made.
    let made = || {
        let path = state_dir.join("runs").join(run_id).join("journal.jsonl");
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
        jiff::Timestamp::try_from(modified).ok()
    };
    let started = journal.first().map(|e| e.time).or_else(made);
    let last = super::journal::last_phases(&journal);
    let count = |phase: Phase| last.values().filter(|p| **p == phase).count();
    let in_flight = count(Phase::Started);
    let failed = count(Phase::Failed) + count(Phase::CompensationFailed);
    let not_reached = plan
        .changes
        .iter()
        .filter(|c| !last.contains_key(c.id.as_str()))
        .count();
    let skipped = count(Phase::Skipped);
    let state = if failed > 0 {
        RunState::Failed
    } else if in_flight > 0 || not_reached > 0 || skipped > 0 {
        RunState::Interrupted
    } else {
        RunState::Complete
    };
    Ok(RunSummary {
        run_id: run_id.to_string(),
        state,
        started,
        accounts: plan.accounts.iter().map(|a| a.target.id.clone()).collect(),
        regions: plan.regions(),
        changes: plan.changes.len(),
        succeeded: count(Phase::Succeeded),
        failed,
        skipped,
        in_flight,
        not_reached,
        resumed_by: None,
        resumes: resumes(state_dir, run_id),
        rolled_back_by: None,
        rolls_back: marker(state_dir, run_id, ROLLS_BACK_FILE),
    })
}
