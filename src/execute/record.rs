//! Recording what a run did: each change's journal line and audit record, written
//! before the next change starts; what could not be written stops the run.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::Value;

use super::Run;
use super::journal::Phase;
use crate::audit::{Appended, ChangeRecord, Entry, Outcome};
use crate::error::Result;
use crate::plan::Change;

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
        let principal = self.principal(account);
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
        let entry = Entry::Change(Box::new(record));
        let line = (change.id.clone(), phase, detail);
        let key = (change.account_id.clone(), change.region.clone());
        if let Ok(mut deferred) = self.deferred.lock()
            && let Some(held) = deferred.get_mut(&key)
        {
            let principal = self.principal(&change.account_id);
            match Appended::new(change.account_id.clone(), principal, &entry) {
                Ok(appended) => {
                    held.audit.push(appended);
                    held.journal.push(line);
                }
                Err(e) => self.unrecorded(format!("change {}: {e}", change.id)),
            }
            if held.audit.len() >= HELD_AT_MOST {
                let full = std::mem::take(held);
                drop(deferred);
                self.write(&key.0, &key.1, full);
            }
            return;
        }
        let (change_id, phase, detail) = line;
        let journaled = self.journal.record(&change_id, phase, detail);
        let principal = self.principal(&change.account_id);
        let audited = crate::audit::lock(self.audit)
            .and_then(|mut log| log.append(self.run_id, &change.account_id, &principal, entry));
        if let Err(e) = journaled.and(audited.map(drop)) {
            self.unrecorded(format!("change {}: {e}", change.id));
        }
    }

    /// From now until [`Run::write_held`], the records of changes in `account` and
    /// `region` are held and written together: a page's changes concluded one after
    /// the other cost one disk sync for their journal lines and one for their audit
    /// records, not two each. Nothing is called in between (a page's compensations
    /// wait until its records are written).
    pub(super) fn hold_records(&self, account: &str, region: &str) {
        if let Ok(mut deferred) = self.deferred.lock() {
            deferred.insert((account.to_string(), region.to_string()), Held::default());
        }
    }

    /// Writes the records held for `account` and `region`: the audit records first,
    /// then the journal lines, so a process dying in between leaves changes the
    /// journal calls in flight whose records exist (which resume takes as ended), never
    /// changes it calls ended without a record. What cannot be written stops the run.
    pub(super) fn write_held(&self, account: &str, region: &str) {
        let held = self
            .deferred
            .lock()
            .ok()
            .and_then(|mut d| d.remove(&(account.to_string(), region.to_string())));
        if let Some(held) = held {
            self.write(account, region, held);
        }
    }

    /// Writes `held` records about `account` and `region`: the audit records first,
    /// then the journal lines (see [`Run::write_held`]).
    fn write(&self, account: &str, region: &str, held: Held) {
        let Held { journal, audit } = held;
        if journal.is_empty() {
            return;
        }
        let changes = journal.len();
        let audited = crate::audit::lock(self.audit)
            .and_then(|mut log| log.append_all(self.run_id, audit))
            .map(drop);
        if let Err(e) = audited.and_then(|()| self.journal.record_all(journal)) {
            self.unrecorded(format!("{changes} changes in {account} {region}: {e}"));
        }
    }

    /// Who harden acts as in `account` (empty when the account was not reached).
    fn principal(&self, account: &str) -> String {
        self.sessions
            .get(account)
            .map_or_else(String::new, |s| s.scope.identity.arn.clone())
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

/// The most records held at once for an account-region: a page concluding more writes
/// them in parts of this many (a sync each for the audit records and the journal
/// lines), so what a page holds in memory does not grow with the page.
const HELD_AT_MOST: usize = 250;

/// Records held for one account-region while its page is concluded.
#[derive(Default)]
pub(super) struct Held {
    journal: Vec<(String, Phase, Option<String>)>,
    audit: Vec<Appended>,
}

/// Held records by account and region.
pub(super) type HeldRecords = BTreeMap<(String, String), Held>;
