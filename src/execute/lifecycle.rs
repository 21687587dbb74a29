//! A change's lifecycle: journal `started`, read the resource (or reuse the read-back
//! of the change before it), refuse a stale plan, call, read back and compare with the
//! intended after, conclude; chains of them, and batches sent as one call.

use std::time::Instant;

use serde_json::Value;

use super::Run;
use super::journal::Phase;
use super::record::{Ending, elapsed};
use crate::actions;
use crate::audit::Outcome;
use crate::aws::persist;
use crate::error::{Error, Result};
use crate::plan::{Change, state_matches};

/// A resource's state as read before a change, held as a marker when it is exactly the
/// change's before: a page of thousands of changes read in bulk then holds only the
/// states that differ, not a copy of the plan's.
#[derive(Debug)]
pub(super) enum Seen {
    /// Equal to the plan's state it was read against.
    AsPlanned,
    /// Anything else.
    Read(Value),
}

impl Seen {
    /// `state`, against the plan's `planned`.
    pub(super) fn of(state: Value, planned: &Value) -> Self {
        if state == *planned {
            Self::AsPlanned
        } else {
            Self::Read(state)
        }
    }

    /// The state, given the plan's `planned` it was read against.
    pub(super) fn get<'a>(&'a self, planned: &'a Value) -> &'a Value {
        match self {
            Self::AsPlanned => planned,
            Self::Read(state) => state,
        }
    }

    /// The state as a value of its own.
    pub(super) fn into_value(self, planned: &Value) -> Value {
        match self {
            Self::AsPlanned => planned.clone(),
            Self::Read(state) => state,
        }
    }
}

/// A change ready for its call: its calls, clients, the state just read (which matched
/// its before) and when it started.
pub(super) struct Ready {
    pub(super) calls: &'static dyn actions::Calls,
    pub(super) clients: crate::aws::RegionClients,
    /// Against the change's before.
    pub(super) current: Seen,
    pub(super) started: Instant,
}

/// How [`Run::walk`] goes through a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Walk {
    /// On its own: every change read, called, read back and concluded in turn.
    Alone,
    /// In a page read in bulk ([`bulk`]): its last change's call is made but not
    /// concluded, and is left in [`Walked::pending`] for the page's read-back in bulk.
    /// `started_journaled`: the page journaled its first change's `started` line.
    Paged { started_journaled: bool },
}

/// What [`Run::walk`] did with a chain.
#[derive(Default)]
pub(super) struct Walked {
    /// The changes concluded, in order.
    pub(super) outcomes: Vec<(usize, Outcome)>,
    /// Whether a call was made: only then may the resource differ from the first
    /// change's before, and need putting back if the chain stops part-way.
    pub(super) called: bool,
    /// The last change, called and not yet concluded (`defer_last`): its index, what
    /// it was made on, and the call's result.
    pub(super) pending: Option<(usize, Ready, Result<actions::Applied>)>,
}

impl Run<'_> {
    /// Clients of the change's account in its region, when the account was reached.
    pub(super) fn clients(&self, change: &Change) -> Option<crate::aws::RegionClients> {
        self.sessions
            .get(change.account_id.as_str())
            .map(|s| s.aws.region(&change.region))
    }

    pub(super) async fn chain(&self, stage: usize, chain: Vec<usize>) -> Vec<(usize, Outcome)> {
        let progress = self.walk(stage, &chain, None, Walk::Alone).await;
        self.end_chain(&chain, progress.outcomes, progress.called)
            .await
    }

    /// Makes a chain's changes in order, up to its first failure (the rest are
    /// skipped). `known`: its resource's state, read just before (in bulk), so the
    /// first change needs no read of its own.
    pub(super) async fn walk(
        &self,
        stage: usize,
        chain: &[usize],
        known: Option<Seen>,
        how: Walk,
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
            let journaled = position == 0
                && how
                    == (Walk::Paged {
                        started_journaled: true,
                    });
            if how != Walk::Alone && position + 1 == chain.len() {
                match self.prepare(change, last_read.take(), journaled).await {
                    Ok(ready) => {
                        let result = persist::persist(self.deadline, || {
                            ready.calls.apply(
                                &ready.clients,
                                change,
                                ready.current.get(&change.before),
                            )
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
            let (outcome, after, made) = self.one(change, last_read.take(), journaled).await;
            walked.called |= made;
            self.note_failure(stage, change, &outcome);
            if let Outcome::Failed { .. } = outcome {
                chain_failed = Some(change.id.clone());
            } else {
                last_read = after.map(Seen::Read);
            }
            walked.outcomes.push((index, outcome));
        }
        walked
    }

    /// After a chain's changes: puts its resource back when a call was made and the
    /// chain did not finish (see [`Run::compensate`]).
    pub(super) async fn end_chain(
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

    /// Reads a change's resource, throttling waited out until the deadline.
    pub(super) async fn read(
        &self,
        calls: &dyn actions::Calls,
        clients: &crate::aws::RegionClients,
        change: &Change,
    ) -> Result<Value> {
        persist::persist(self.deadline, || calls.read(clients, &change.resource.id)).await
    }

    /// Makes one change; returns its outcome, the state read back, and whether its call
    /// was made (it passed the stale check).
    pub(super) async fn one(
        &self,
        change: &Change,
        known: Option<Seen>,
        journaled: bool,
    ) -> (Outcome, Option<Value>, bool) {
        let ready = match self.prepare(change, known, journaled).await {
            Ok(ready) => ready,
            Err((outcome, after)) => return (outcome, after, false),
        };
        let result = persist::persist(self.deadline, || {
            ready
                .calls
                .apply(&ready.clients, change, ready.current.get(&change.before))
        })
        .await;
        let (outcome, after) = self.conclude(change, ready, result, None).await;
        (outcome, after, true)
    }

    /// Journals `started` (unless its page did: `journaled`), finds the action, reads
    /// the resource (unless the chain's previous change just did) and refuses a stale
    /// change. Every refusal is recorded.
    pub(super) async fn prepare(
        &self,
        change: &Change,
        known: Option<Seen>,
        journaled: bool,
    ) -> std::result::Result<Ready, (Outcome, Option<Value>)> {
        let started = Instant::now();
        tracing::info!(change = %change.id, operation = %change.call.operation, "applying");
        let journal = || match journaled {
            true => Ok(()),
            false => self.journal.record(&change.id, Phase::Started, None),
        };
        if let Err(e) = journal() {
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
            Some(seen) => seen,
            None => match self.read(calls, &clients, change).await {
                Ok(state) => Seen::Read(state),
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
        // A state seen as planned is the before itself: nothing to compare.
        if let Seen::Read(state) = &current
            && let Err(detail) = state_matches(&change.before, state)
        {
            let error = Error::StalePlan {
                resource: change.resource.to_string(),
                detail,
            };
            let current = current.into_value(&change.before);
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
    pub(super) async fn conclude(
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
                if let Some(outcome) =
                    self.made_despite(change, current.get(&change.before), &after, &e, started)
                {
                    return (outcome, Some(after));
                }
                return self.fail_with(
                    change,
                    current.into_value(&change.before),
                    after,
                    &e,
                    Vec::new(),
                    started,
                );
            }
        };
        // A bulk read-back that shows the change made is its verification; one that
        // does not is read again alone (the bulk read may have come before the service
        // settled), and only that read can fail it.
        let shown = read_back.filter(|state| state_matches(&change.after, state).is_ok());
        let after = match shown {
            Some(state) => state,
            None => {
                let state = match self.read(calls, &clients, change).await {
                    Ok(state) => state,
                    Err(e) => {
                        return self.fail_with(
                            change,
                            current.into_value(&change.before),
                            Value::Null,
                            &e,
                            applied.request_ids,
                            started,
                        );
                    }
                };
                if let Err(detail) = state_matches(&change.after, &state) {
                    let error = Error::Verification {
                        resource: change.resource.to_string(),
                        detail,
                    };
                    return self.fail_with(
                        change,
                        current.into_value(&change.before),
                        state,
                        &error,
                        applied.request_ids,
                        started,
                    );
                }
                state
            }
        };
        let outcome = Outcome::Succeeded;
        self.finish(
            change,
            Ending {
                before: current.into_value(&change.before),
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
    pub(super) fn made_despite(
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
    pub(super) async fn batch(&self, stage: usize, batch: Vec<usize>) -> Vec<(usize, Outcome)> {
        let mut outcomes = Vec::new();
        let mut ready = Vec::new();
        for index in batch {
            let change = &self.plan.changes[index];
            if let Some(outcome) = self.skip_reason(index, stage, None) {
                self.finish(change, Ending::skipped(&outcome));
                outcomes.push((index, outcome));
                continue;
            }
            match self.prepare(change, None, false).await {
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
        let states: Vec<&Value> = ready
            .iter()
            .map(|(i, r)| r.current.get(&self.plan.changes[*i].before))
            .collect();
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
    pub(super) fn fail_with(
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
    pub(super) fn fail(
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
}
