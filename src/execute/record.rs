//! Recording what a run did: each change's journal line and audit record, written
//! before the next change starts; what could not be written stops the run.

use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::Value;

use super::Run;
use super::journal::Phase;
use crate::audit::{ChangeRecord, Entry, Outcome};
use crate::error::Result;
use crate::plan::Change;

/// Where a change's resource is: its account, region, and kind and id (a queue and a
/// rule may share a name).
/// How a change ended, as its journal line and audit record say.
pub(super) struct Ending<'a> {
    pub(super) before: Value,
    pub(super) after: Value,
    pub(super) outcome: &'a Outcome,
    pub(super) request_ids: Vec<String>,
    pub(super) duration_ms: u64,
    /// Why a call that answered an error is a success (see `conclude`).
    pub(super) recovered: Option<String>,
}

impl<'a> Ending<'a> {
    /// A change not attempted: nothing read, nothing called.
    pub(super) fn skipped(outcome: &'a Outcome) -> Self {
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

pub(super) fn elapsed(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Run<'_> {
    /// Appends one record about `account` to the audit log, naming who harden acted as
    /// there.
    pub(super) fn append(&self, account: &str, entry: Entry) -> Result<()> {
        let principal = self
            .sessions
            .get(account)
            .map_or_else(String::new, |s| s.scope.identity.arn.clone());
        crate::audit::lock(self.audit)
            .and_then(|mut log| log.append(self.run_id, account, &principal, entry))
            .map(drop)
    }

    /// Journals and audits a change's end. A failure to write either is reported on
    /// stderr and stops the apply: an unrecorded change must not be followed by more.
    pub(super) fn finish(&self, change: &Change, ending: Ending<'_>) {
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
    pub(super) fn unrecorded(&self, what: String) {
        if let Ok(mut unrecorded) = self.unrecorded.lock() {
            unrecorded.push(what);
        }
        self.stop.store(true, Ordering::SeqCst);
    }
}
