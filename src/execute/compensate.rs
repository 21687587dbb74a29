//! Putting a resource back when its chain stopped part-way in a state its users must
//! not be left in (the concern's `Calls::compensate`), recorded like a change.

use super::journal::Phase;
use super::{Run, Undone};
use crate::actions;
use crate::audit::{CompensationRecord, Entry, Outcome};
use crate::plan::Change;

impl Run<'_> {
    /// Puts a chain's resource back as its first change found it, where its concern
    /// knows how (see [`actions::Calls::compensate`]); journals and audits what it did.
    pub(super) async fn compensate(&self, first: &Change, stopped_at: &Change, outcome: &Outcome) {
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
}
