//! Applying a plan. Changes to one resource form a chain kept in plan order; chains
//! run concurrently under a bound. Each change is: journal `started`, read the resource
//! (or reuse the read-back of the change before it), refuse if it no longer matches the
//! change's before (stale plan), call, read back and compare with the intended after,
//! then journal and audit the outcome. The first failure stops every chain from
//! starting another change; what was not attempted is reported and audited as skipped.

pub mod journal;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures::stream::{self, StreamExt};
use serde_json::Value;

use crate::actions;
use crate::audit::{AuditLog, ChangeRecord, Entry, Outcome};
use crate::aws::{Aws, CallerIdentity};
use crate::error::{Error, Result};
use crate::plan::{Change, Plan, state_matches};
use crate::runbook::model::OnFailure;
use journal::{Journal, Phase};

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Chains (resources) changed at once.
    pub concurrency: usize,
    /// This run's id.
    pub run_id: String,
}

/// The outcome of each change, in plan order.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    /// Change id and outcome.
    pub outcomes: Vec<(String, Outcome)>,
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
}

/// Shared state of one apply.
struct Run<'a> {
    aws: &'a Aws,
    plan: &'a Plan,
    identity: &'a CallerIdentity,
    audit: &'a Mutex<AuditLog>,
    journal: &'a Journal,
    run_id: &'a str,
    stop: AtomicBool,
}

/// Applies `plan`. Refuses a plan made for another account.
pub async fn apply(
    aws: &Aws,
    plan: &Plan,
    identity: &CallerIdentity,
    audit: &Mutex<AuditLog>,
    journal: &Journal,
    options: &ApplyOptions,
) -> Result<ApplyReport> {
    if plan.account_id != identity.account_id {
        return Err(Error::Usage(format!(
            "the plan was made for account {} but the credentials are for account {}; refusing to apply",
            plan.account_id, identity.account_id
        )));
    }
    let run = Run {
        aws,
        plan,
        identity,
        audit,
        journal,
        run_id: &options.run_id,
        stop: AtomicBool::new(false),
    };
    // Chains: one per resource, in order of first appearance.
    let mut chains: Vec<Vec<usize>> = Vec::new();
    let mut chain_of: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (index, change) in plan.changes.iter().enumerate() {
        let key = (change.region.as_str(), change.resource.id.as_str());
        let chain = *chain_of.entry(key).or_insert_with(|| {
            chains.push(Vec::new());
            chains.len() - 1
        });
        chains[chain].push(index);
    }
    let results: Vec<Vec<(usize, Outcome)>> =
        stream::iter(chains.into_iter().map(|chain| run.chain(chain)))
            .buffer_unordered(options.concurrency.max(1))
            .collect()
            .await;
    let mut outcomes: Vec<(usize, Outcome)> = results.into_iter().flatten().collect();
    outcomes.sort_by_key(|(index, _)| *index);
    Ok(ApplyReport {
        outcomes: outcomes
            .into_iter()
            .map(|(index, outcome)| (plan.changes[index].id.clone(), outcome))
            .collect(),
    })
}

impl Run<'_> {
    async fn chain(&self, chain: Vec<usize>) -> Vec<(usize, Outcome)> {
        let mut outcomes = Vec::new();
        let mut last_read: Option<Value> = None;
        let mut chain_failed = false;
        for index in chain {
            let change = &self.plan.changes[index];
            if chain_failed || self.stop.load(Ordering::SeqCst) {
                let reason = if chain_failed {
                    "not attempted: an earlier change to this resource failed"
                } else {
                    "not attempted: apply stopped after a failure"
                };
                let outcome = Outcome::Skipped {
                    reason: reason.into(),
                };
                self.finish(change, Value::Null, Value::Null, &outcome, Vec::new(), 0);
                outcomes.push((index, outcome));
                continue;
            }
            let (outcome, after) = self.one(change, last_read.take()).await;
            if let Outcome::Failed { .. } = outcome {
                chain_failed = true;
                if change.on_failure == OnFailure::Stop {
                    self.stop.store(true, Ordering::SeqCst);
                }
            } else {
                last_read = after;
            }
            outcomes.push((index, outcome));
        }
        outcomes
    }

    /// Makes one change; returns its outcome and the state read back.
    async fn one(&self, change: &Change, known: Option<Value>) -> (Outcome, Option<Value>) {
        let started = Instant::now();
        if let Err(e) = self.journal.record(&change.id, Phase::Started, None) {
            return self.fail(
                change,
                Value::Null,
                Value::Null,
                "JournalError",
                e.to_string(),
                Vec::new(),
                started,
            );
        }
        let Some(action) = actions::find(&change.action) else {
            return self.fail(
                change,
                Value::Null,
                Value::Null,
                "UnknownAction",
                format!("action {} is not in this harden", change.action),
                Vec::new(),
                started,
            );
        };
        let clients = self.aws.region(&change.region);
        let current = match known {
            Some(state) => state,
            None => match action.read(&clients, &change.resource.id).await {
                Ok(state) => state,
                Err(e) => {
                    return self.fail_with(
                        change,
                        Value::Null,
                        Value::Null,
                        &e,
                        Vec::new(),
                        started,
                    );
                }
            },
        };
        if let Err(detail) = state_matches(&change.before, &current) {
            let error = Error::StalePlan {
                resource: change.resource.to_string(),
                detail,
            };
            return self.fail_with(change, current, Value::Null, &error, Vec::new(), started);
        }
        let applied = match action.apply(&clients, change, &current).await {
            Ok(applied) => applied,
            Err(e) => {
                // The call failed; read what is there now so the record tells the truth.
                let after = action
                    .read(&clients, &change.resource.id)
                    .await
                    .unwrap_or(Value::Null);
                return self.fail_with(change, current, after, &e, Vec::new(), started);
            }
        };
        let after = match action.read(&clients, &change.resource.id).await {
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
            current,
            after.clone(),
            &outcome,
            applied.request_ids,
            elapsed(started),
        );
        (outcome, Some(after))
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
            before,
            after,
            &outcome,
            request_ids,
            elapsed(started),
        );
        (outcome, None)
    }

    /// Journals and audits a change's end. A failure to write either is reported on
    /// stderr and stops the apply: an unrecorded change must not be followed by more.
    fn finish(
        &self,
        change: &Change,
        before: Value,
        after: Value,
        outcome: &Outcome,
        request_ids: Vec<String>,
        duration_ms: u64,
    ) {
        let (phase, detail) = match outcome {
            Outcome::Succeeded => (Phase::Succeeded, None),
            Outcome::Failed { code, message } => {
                (Phase::Failed, Some(format!("{code}: {message}")))
            }
            Outcome::Skipped { reason } => (Phase::Skipped, Some(reason.clone())),
        };
        let digest = self
            .plan
            .runbooks
            .iter()
            .find(|r| r.id == change.runbook)
            .map(|r| r.digest.clone())
            .unwrap_or_default();
        let record = ChangeRecord {
            change_id: change.id.clone(),
            runbook: change.runbook.clone(),
            runbook_digest: digest,
            region: change.region.clone(),
            step: change.step.clone(),
            action: change.action.clone(),
            resource: change.resource.clone(),
            call: change.call.clone(),
            before,
            after,
            outcome: outcome.clone(),
            request_ids,
            duration_ms,
        };
        let journaled = self.journal.record(&change.id, phase, detail);
        let audited = self
            .audit
            .lock()
            .map_err(|_| Error::Internal("audit lock poisoned".into()))
            .and_then(|mut log| {
                log.append(
                    self.run_id,
                    &self.identity.account_id,
                    &self.identity.arn,
                    Entry::Change(Box::new(record)),
                )
            });
        if let Err(e) = journaled.and(audited) {
            eprintln!("error: could not record change {}: {e}", change.id);
            self.stop.store(true, Ordering::SeqCst);
        }
    }
}

fn elapsed(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
