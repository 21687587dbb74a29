//! The run journal: `STATE_DIR/runs/RUN_ID/` holds the plan being applied and one JSON
//! line per phase of each change (started, succeeded, failed, skipped), synced to disk
//! before the call and after it. A run killed mid-way leaves a journal that says which
//! change was in flight, which is what resuming needs: a change with `started` and no
//! end is re-read and compared with both its before and its after.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::jsonl::JsonLines;
use crate::plan::Plan;

/// A phase of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// About to call.
    Started,
    /// Made and verified.
    Succeeded,
    /// Failed (not made, or not verified).
    Failed,
    /// Not attempted.
    Skipped,
    /// The resource of this (failed or not attempted) change was put back as it was
    /// before its chain started.
    Compensated,
    /// Putting the resource back failed: a person must look.
    CompensationFailed,
}

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// When.
    pub time: jiff::Timestamp,
    /// Plan change id.
    pub change_id: String,
    /// Phase.
    pub phase: Phase,
    /// Error or reason, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The last phase of each change a journal names: its end, or `started` when it has
/// none (in flight when the process died). Compensation follows an end and does not
/// undo that the change ended.
pub fn last_phases(entries: &[JournalEntry]) -> std::collections::BTreeMap<&str, Phase> {
    let mut last = std::collections::BTreeMap::new();
    for entry in entries {
        if entry.phase != Phase::Compensated {
            last.insert(entry.change_id.as_str(), entry.phase);
        }
    }
    last
}

/// The environment variable that makes a run die (abort, as abruptly as a SIGKILL:
/// nothing unwinds, nothing more is written) just before it writes journal line N
/// (counted from 1). It exists for the crash tests: before a `started` line, the
/// previous change has ended and the next is not yet called; before a `succeeded` line,
/// the call was made and neither journaled nor audited, the moment resuming must
/// recognise by reading the resource.
pub const DIE_BEFORE_LINE_ENV: &str = "HARDEN_FAULT_DIE_BEFORE_JOURNAL_LINE";

/// The journal of one run.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    log: Mutex<Lines>,
}

#[derive(Debug)]
struct Lines {
    file: JsonLines,
    written: usize,
    die_before: Option<usize>,
}

impl Journal {
    /// Creates `runs/RUN_ID/` with the plan and an empty journal.
    pub fn create(state_dir: &Path, run_id: &str, plan: &Plan) -> Result<Self> {
        let dir = state_dir.join("runs").join(run_id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        plan.save(&dir.join("plan.json"))?;
        let file = JsonLines::open(&dir.join("journal.jsonl"))?;
        let die_before = std::env::var(DIE_BEFORE_LINE_ENV)
            .ok()
            .and_then(|n| n.parse().ok());
        Ok(Self {
            dir,
            log: Mutex::new(Lines {
                file,
                written: 0,
                die_before,
            }),
        })
    }

    /// The run's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends an entry and syncs it before returning.
    pub fn record(&self, change_id: &str, phase: Phase, detail: Option<String>) -> Result<()> {
        self.record_all(vec![(change_id.to_string(), phase, detail)])
    }

    /// Appends entries (change id, phase, detail) in one write, synced once before
    /// returning: a page of changes costs one disk sync, not one per line. The crash
    /// hook ([`DIE_BEFORE_LINE_ENV`]) still dies just before its line, with the lines
    /// before it in the batch written.
    pub fn record_all(&self, entries: Vec<(String, Phase, Option<String>)>) -> Result<()> {
        let time = jiff::Timestamp::now();
        let mut lines = self
            .log
            .lock()
            .map_err(|_| Error::Internal("journal lock poisoned".into()))?;
        let mut batch = Vec::with_capacity(entries.len());
        for (change_id, phase, detail) in entries {
            if lines.die_before == Some(lines.written + batch.len() + 1) {
                lines.file.append_lines(&batch)?;
                std::process::abort();
            }
            let entry = JournalEntry {
                time,
                change_id,
                phase,
                detail,
            };
            batch.push(
                serde_json::to_string(&entry).map_err(|e| {
                    Error::Internal(format!("a journal line does not serialize: {e}"))
                })?,
            );
        }
        lines.file.append_lines(&batch)?;
        lines.written += batch.len();
        Ok(())
    }

    /// Reads a run's journal, leaving out a last line cut short (no newline, not JSON):
    /// what a process killed while writing it leaves.
    pub fn read_tolerant(state_dir: &Path, run_id: &str) -> Result<Vec<JournalEntry>> {
        let path = state_dir.join("runs").join(run_id).join("journal.jsonl");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let cut = !text.is_empty() && !text.ends_with('\n');
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut entries = Vec::with_capacity(lines.len());
        for (index, line) in lines.iter().enumerate() {
            match serde_json::from_str(line) {
                Ok(entry) => entries.push(entry),
                Err(_) if cut && index + 1 == lines.len() => {}
                Err(e) => {
                    return Err(Error::Internal(format!(
                        "{} line {}: journal line does not parse: {e}",
                        path.display(),
                        index + 1
                    )));
                }
            }
        }
        Ok(entries)
    }

    /// Reads a run's journal.
    pub fn read(state_dir: &Path, run_id: &str) -> Result<Vec<JournalEntry>> {
        let path = state_dir.join("runs").join(run_id).join("journal.jsonl");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|e| {
                    Error::Internal(format!(
                        "{}: journal line does not parse: {e}",
                        path.display()
                    ))
                })
            })
            .collect()
    }
}
