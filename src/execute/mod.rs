//! Applying a plan. Steps run in plan order, one stage each (see [`stages`]); within a
//! stage, changes to one resource form a chain kept in plan order and chains run
//! concurrently under a bound. Each change is: journal `started`, read the resource
//! (or reuse the read-back of the change before it), refuse if it no longer matches the
//! change's before (stale plan), call, read back and compare with the intended after,
//! then journal and audit the outcome. The first failure stops every chain from
//! starting another change; what was not attempted is reported and audited as skipped.

pub mod journal;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::stream::{self, StreamExt};
use serde_json::Value;

use crate::actions;
use crate::audit::{AuditLog, ChangeRecord, CompensationRecord, Entry, Outcome};
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
    /// Set (by the Ctrl-C handler) to stop starting changes; changes in flight finish,
    /// are read back and recorded, the rest are recorded as not attempted.
    pub interrupted: Arc<AtomicBool>,
}

/// The outcome of each change, in plan order, and what was undone.
#[derive(Debug, Clone, Default)]
pub struct ApplyReport {
    /// Change id and outcome.
    pub outcomes: Vec<(String, Outcome)>,
    /// Resources put back after their chain stopped part-way.
    pub compensations: Vec<Undone>,
}

/// A resource put back (or not) after its chain of changes stopped part-way.
#[derive(Debug, Clone, PartialEq)]
pub struct Undone {
    /// The resource.
    pub resource: String,
    /// Its region.
    pub region: String,
    /// The change that failed or was the first not attempted.
    pub change_id: String,
    /// The operations called to put it back, in order.
    pub operations: Vec<String>,
    /// `None` when read back as it was; otherwise what is wrong.
    pub failure: Option<String>,
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

/// A change ready for its call: its calls, clients, the state just read (which matched
/// its before) and when it started.
struct Ready {
    calls: &'static dyn actions::Calls,
    clients: crate::aws::RegionClients,
    current: Value,
    started: Instant,
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
    interrupted: &'a AtomicBool,
    /// Resources (region, id) a change failed on: their later changes are not attempted.
    failed_resources: Mutex<BTreeSet<(String, String)>>,
    /// Resources put back after their chain stopped part-way.
    compensations: Mutex<Vec<Undone>>,
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
    // What only the run knows (its id, tagged on what it creates) goes in first; the
    // journal and audit then record the calls exactly as made.
    let plan = &plan.for_run(&options.run_id);
    let run = Run {
        aws,
        plan,
        identity,
        audit,
        journal,
        run_id: &options.run_id,
        stop: AtomicBool::new(false),
        interrupted: &options.interrupted,
        failed_resources: Mutex::default(),
        compensations: Mutex::default(),
    };
    let mut outcomes: Vec<(usize, Outcome)> = Vec::new();
    for stage in stages(plan) {
        let units = batched(plan, stage);
        let results: Vec<Vec<(usize, Outcome)>> = stream::iter(units.into_iter().map(|unit| {
            let run = &run;
            async move {
                match unit {
                    Unit::Chain(chain) => run.chain(chain).await,
                    Unit::Batch(batch) => run.batch(batch).await,
                }
            }
        }))
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
        outcomes.extend(results.into_iter().flatten());
    }
    outcomes.sort_by_key(|(index, _)| *index);
    Ok(ApplyReport {
        outcomes: outcomes
            .into_iter()
            .map(|(index, outcome)| (plan.changes[index].id.clone(), outcome))
            .collect(),
        compensations: run.compensations.into_inner().unwrap_or_default(),
    })
}

/// What one of the `--concurrency` slots works on.
#[derive(Debug, PartialEq)]
enum Unit {
    /// Changes to one resource, in order.
    Chain(Vec<usize>),
    /// Single changes to different resources sent as one call.
    Batch(Vec<usize>),
}

/// Groups a stage's single-change chains whose calls may go out as one (same region,
/// action and batch key) into batches of at most the action's `max_batch`.
fn batched(plan: &Plan, stage: Vec<Vec<usize>>) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut groups: Vec<((String, String, Value), Vec<usize>)> = Vec::new();
    for chain in stage {
        let key = match chain.as_slice() {
            [index] => {
                let change = &plan.changes[*index];
                actions::find(&change.action)
                    .map(|a| a.calls())
                    .filter(|calls| calls.max_batch() > 1)
                    .and_then(|calls| calls.batch_key(change))
                    .map(|key| (change.region.clone(), change.action.clone(), key))
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
    for ((_, action, _), members) in groups {
        let max = actions::find(&action).map_or(1, |a| a.calls().max_batch().max(1));
        for part in members.chunks(max) {
            units.push(Unit::Batch(part.to_vec()));
        }
    }
    units
}

/// Splits the plan into stages, one per step (runbook and step id, in plan order, all
/// regions together), and each stage into chains, one per resource, in plan order.
///
/// A stage starts only when the one before it has ended. That is how a step may rely on
/// what an earlier step did to *another* resource (the bucket a trail writes to exists
/// before the trail is created) without a chain ever waiting on another while holding
/// one of the `--concurrency` slots.
fn stages(plan: &Plan) -> Vec<Vec<Vec<usize>>> {
    let mut stages: Vec<Vec<Vec<usize>>> = Vec::new();
    let mut stage_of: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut chain_of: BTreeMap<(usize, &str, &str), usize> = BTreeMap::new();
    for (index, change) in plan.changes.iter().enumerate() {
        let stage = *stage_of
            .entry((change.runbook.as_str(), change.step.as_str()))
            .or_insert_with(|| {
                stages.push(Vec::new());
                stages.len() - 1
            });
        let key = (stage, change.region.as_str(), change.resource.id.as_str());
        let chain = *chain_of.entry(key).or_insert_with(|| {
            stages[stage].push(Vec::new());
            stages[stage].len() - 1
        });
        stages[stage][chain].push(index);
    }
    stages
}

impl Run<'_> {
    /// Whether a change to this change's resource failed in an earlier stage.
    fn resource_failed(&self, index: usize) -> bool {
        let change = &self.plan.changes[index];
        self.failed_resources.lock().map_or(true, |failed| {
            failed.contains(&(change.region.clone(), change.resource.id.clone()))
        })
    }

    /// Why the change at `index` is not to be attempted, if it is not.
    fn skip_reason(&self, index: usize, chain_failed: bool) -> Option<Outcome> {
        let chain_failed = chain_failed || self.resource_failed(index);
        let interrupted = self.interrupted.load(Ordering::SeqCst);
        let reason = if chain_failed {
            "not attempted: an earlier change to this resource failed"
        } else if interrupted {
            "not attempted: apply was interrupted"
        } else if self.stop.load(Ordering::SeqCst) {
            "not attempted: apply stopped after a failure"
        } else {
            return None;
        };
        Some(Outcome::Skipped {
            reason: reason.into(),
        })
    }

    /// Remembers a failed change's resource and, unless its step says continue, stops
    /// the apply.
    fn note_failure(&self, change: &Change, outcome: &Outcome) {
        if let Outcome::Failed { .. } = outcome {
            if let Ok(mut failed) = self.failed_resources.lock() {
                failed.insert((change.region.clone(), change.resource.id.clone()));
            }
            if change.on_failure == OnFailure::Stop {
                self.stop.store(true, Ordering::SeqCst);
            }
        }
    }

    async fn chain(&self, chain: Vec<usize>) -> Vec<(usize, Outcome)> {
        let mut outcomes = Vec::new();
        let mut last_read: Option<Value> = None;
        let mut chain_failed = false;
        // Whether a call was made: only then may the resource differ from the first
        // change's before, and need putting back if the chain stops part-way.
        let mut called = false;
        for &index in &chain {
            let change = &self.plan.changes[index];
            if let Some(outcome) = self.skip_reason(index, chain_failed) {
                self.finish(change, Value::Null, Value::Null, &outcome, Vec::new(), 0);
                outcomes.push((index, outcome));
                continue;
            }
            let (outcome, after, made) = self.one(change, last_read.take()).await;
            called |= made;
            self.note_failure(change, &outcome);
            if let Outcome::Failed { .. } = outcome {
                chain_failed = true;
            } else {
                last_read = after;
            }
            outcomes.push((index, outcome));
        }
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

    /// Puts a chain's resource back as its first change found it, where its concern
    /// knows how (see [`actions::Calls::compensate`]); journals and audits what it did.
    async fn compensate(&self, first: &Change, stopped_at: &Change, outcome: &Outcome) {
        let Some(action) = actions::find(&first.action) else {
            return;
        };
        let cause = match outcome {
            Outcome::Failed { code, .. } => format!("{} failed: {code}", stopped_at.id),
            Outcome::Skipped { reason } => format!("{} {reason}", stopped_at.id),
            Outcome::Succeeded => return,
        };
        let clients = self.aws.region(&first.region);
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
        let audited = self.append(Entry::Compensation(Box::new(record)));
        if let Err(e) = journaled.and(audited) {
            eprintln!(
                "error: could not record putting back {}: {e}",
                first.resource
            );
            self.stop.store(true, Ordering::SeqCst);
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

    /// Appends one record to the audit log.
    fn append(&self, entry: Entry) -> Result<()> {
        self.audit
            .lock()
            .map_err(|_| Error::Internal("audit lock poisoned".into()))
            .and_then(|mut log| {
                log.append(
                    self.run_id,
                    &self.identity.account_id,
                    &self.identity.arn,
                    entry,
                )
            })
            .map(drop)
    }

    /// Makes one change; returns its outcome, the state read back, and whether its call
    /// was made (it passed the stale check).
    async fn one(&self, change: &Change, known: Option<Value>) -> (Outcome, Option<Value>, bool) {
        let ready = match self.prepare(change, known).await {
            Ok(ready) => ready,
            Err((outcome, after)) => return (outcome, after, false),
        };
        let result = ready
            .calls
            .apply(&ready.clients, change, &ready.current)
            .await;
        let (outcome, after) = self.conclude(change, ready, result).await;
        (outcome, after, true)
    }

    /// Journals `started`, finds the action, reads the resource (unless the chain's
    /// previous change just did) and refuses a stale change. Every refusal is recorded.
    async fn prepare(
        &self,
        change: &Change,
        known: Option<Value>,
    ) -> std::result::Result<Ready, (Outcome, Option<Value>)> {
        let started = Instant::now();
        tracing::info!(change = %change.id, operation = %change.call.operation, "applying");
        if let Err(e) = self.journal.record(&change.id, Phase::Started, None) {
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
        let clients = self.aws.region(&change.region);
        let current = match known {
            Some(state) => state,
            None => match calls.read(&clients, &change.resource.id).await {
                Ok(state) => state,
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
        if let Err(detail) = state_matches(&change.before, &current) {
            let error = Error::StalePlan {
                resource: change.resource.to_string(),
                detail,
            };
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
    async fn conclude(
        &self,
        change: &Change,
        ready: Ready,
        result: Result<actions::Applied>,
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
                let after = calls
                    .read(&clients, &change.resource.id)
                    .await
                    .unwrap_or(Value::Null);
                return self.fail_with(change, current, after, &e, Vec::new(), started);
            }
        };
        let after = match calls.read(&clients, &change.resource.id).await {
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

    /// Makes several single-change chains' changes as one call (see
    /// [`actions::Calls::apply_batch`]); each change keeps its own stale check, read-back
    /// and record.
    async fn batch(&self, batch: Vec<usize>) -> Vec<(usize, Outcome)> {
        let mut outcomes = Vec::new();
        let mut ready = Vec::new();
        for index in batch {
            let change = &self.plan.changes[index];
            if let Some(outcome) = self.skip_reason(index, false) {
                self.finish(change, Value::Null, Value::Null, &outcome, Vec::new(), 0);
                outcomes.push((index, outcome));
                continue;
            }
            match self.prepare(change, None).await {
                Ok(r) => ready.push((index, r)),
                Err((outcome, _)) => {
                    self.note_failure(change, &outcome);
                    outcomes.push((index, outcome));
                }
            }
        }
        let Some((_, lead)) = ready.first() else {
            return outcomes;
        };
        let (calls, clients) = (lead.calls, lead.clients.clone());
        let changes: Vec<&Change> = ready.iter().map(|(i, _)| &self.plan.changes[*i]).collect();
        let states: Vec<&Value> = ready.iter().map(|(_, r)| &r.current).collect();
        tracing::info!(operation = %changes[0].call.operation, changes = changes.len(), "applying as one call");
        let mut results = calls.apply_batch(&clients, &changes, &states).await;
        results.resize_with(changes.len(), || {
            Err(Error::Internal(
                "the batched call answered for fewer changes".into(),
            ))
        });
        for ((index, r), result) in ready.into_iter().zip(results) {
            let change = &self.plan.changes[index];
            let (outcome, _) = self.conclude(change, r, result).await;
            self.note_failure(change, &outcome);
            outcomes.push((index, outcome));
        }
        outcomes
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
        let audited = self.append(Entry::Change(Box::new(record)));
        if let Err(e) = journaled.and(audited) {
            eprintln!("error: could not record change {}: {e}", change.id);
            self.stop.store(true, Ordering::SeqCst);
        }
    }
}

fn elapsed(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    //! Apply paths the emulators cannot show, with mocked EC2 responses: a call that
    //! answers success but changes nothing, throttling, a refused call, a stale plan.

    use aws_sdk_ec2::Client;
    use aws_sdk_ec2::operation::describe_security_group_rules::DescribeSecurityGroupRulesOutput;
    use aws_sdk_ec2::operation::revoke_security_group_egress::RevokeSecurityGroupEgressOutput;
    use aws_sdk_ec2::types::SecurityGroupRule;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    use aws_smithy_runtime_api::http::StatusCode;
    use aws_smithy_types::body::SdkBody;
    use serde_json::json;

    use super::*;
    use crate::inventory::ResourceKind;
    use crate::plan::{ApiCall, ChangeKind, PlannedRunbook, ResourceRef};

    fn open_rule(group: &str, id: &str) -> SecurityGroupRule {
        SecurityGroupRule::builder()
            .security_group_rule_id(id)
            .group_id(group)
            .is_egress(true)
            .ip_protocol("-1")
            .from_port(-1)
            .to_port(-1)
            .cidr_ipv4("0.0.0.0/0")
            .build()
    }

    fn rule_state(id: Option<&str>) -> Value {
        match id {
            Some(id) => json!({"ingress": [], "egress": [{
                "rule_id": id, "protocol": "-1", "from_port": null, "to_port": null,
                "peer": {"cidr": "0.0.0.0/0"}, "description": null}]}),
            None => json!({"ingress": [], "egress": []}),
        }
    }

    fn revoke(group: &str, rule: &str) -> Change {
        Change {
            id: format!("t/us-east-1/close/{group}#1"),
            runbook: "t".into(),
            region: "us-east-1".into(),
            step: "close".into(),
            action: "ec2:close-security-group".into(),
            resource: ResourceRef {
                kind: ResourceKind::SecurityGroup,
                id: group.into(),
            },
            kind: ChangeKind::Delete,
            summary: "revoke".into(),
            before: rule_state(Some(rule)),
            after: rule_state(None),
            call: ApiCall {
                service: "ec2".into(),
                operation: "RevokeSecurityGroupEgress".into(),
                input: json!({"GroupId": group, "SecurityGroupRuleIds": [rule]}),
            },
            on_failure: OnFailure::Stop,
            wait_timeout_seconds: None,
            probe: None,
        }
    }

    fn plan_of(changes: Vec<Change>) -> Plan {
        Plan {
            format_version: crate::plan::PLAN_FORMAT_VERSION,
            harden_version: "test".into(),
            created_at: jiff::Timestamp::UNIX_EPOCH,
            account_id: "123456789012".into(),
            principal: "arn:aws:iam::123456789012:user/t".into(),
            regions: vec!["us-east-1".into()],
            runbooks: vec![PlannedRunbook {
                id: "t".into(),
                title: "t".into(),
                path: "t.yaml".into(),
                digest: "d".into(),
                controls: Vec::new(),
                parameters: Default::default(),
                compliant: Default::default(),
            }],
            changes,
            blocked: Vec::new(),
            unprobed_services: Vec::new(),
        }
    }

    /// A revoke the service answers with success (whatever it then did).
    fn revoke_succeeds() -> aws_smithy_mocks::Rule {
        mock!(Client::revoke_security_group_egress).then_output(|| {
            RevokeSecurityGroupEgressOutput::builder()
                .r#return(true)
                .build()
        })
    }

    fn rules_output(rules: Vec<SecurityGroupRule>) -> DescribeSecurityGroupRulesOutput {
        DescribeSecurityGroupRulesOutput::builder()
            .set_security_group_rules(Some(rules))
            .build()
    }

    struct Outcomes {
        report: ApplyReport,
        records: Vec<crate::audit::Record>,
    }

    async fn run(client: Client, plan: &Plan) -> Outcomes {
        run_with(client, plan, false).await
    }

    async fn run_with(client: Client, plan: &Plan, interrupted: bool) -> Outcomes {
        let dir = tempfile::tempdir().expect("tempdir");
        let aws = Aws::with_ec2_client(client);
        let identity = CallerIdentity {
            account_id: "123456789012".into(),
            arn: "arn:aws:iam::123456789012:user/t".into(),
            partition: "aws".into(),
        };
        let audit = Mutex::new(AuditLog::open(dir.path()).expect("audit"));
        let journal = Journal::create(dir.path(), "run-1", plan).expect("journal");
        let report = apply(
            &aws,
            plan,
            &identity,
            &audit,
            &journal,
            &ApplyOptions {
                concurrency: 1,
                run_id: "run-1".into(),
                interrupted: Arc::new(AtomicBool::new(interrupted)),
            },
        )
        .await
        .expect("apply runs");
        crate::audit::verify(dir.path()).expect("the audit chain verifies");
        Outcomes {
            report,
            records: crate::audit::read(dir.path()).expect("records"),
        }
    }

    fn change_records(records: &[crate::audit::Record]) -> Vec<&ChangeRecord> {
        records
            .iter()
            .filter_map(|r| match &r.entry {
                Entry::Change(c) => Some(c.as_ref()),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_call_that_answers_success_but_changes_nothing_is_a_failure() {
        // Reads before and after both show the rule: the revoke "succeeded" in name only.
        let describe = mock!(Client::describe_security_group_rules)
            .then_output(|| rules_output(vec![open_rule("sg-1", "sgr-1")]));
        let revoke_call = revoke_succeeds();
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &revoke_call]);
        let plan = plan_of(vec![revoke("sg-1", "sgr-1"), revoke("sg-2", "sgr-2")]);
        let out = run(client, &plan).await;

        assert!(
            matches!(&out.report.outcomes[0].1, Outcome::Failed { code, .. } if code == "VerificationFailed")
        );
        assert!(
            matches!(&out.report.outcomes[1].1, Outcome::Skipped { .. }),
            "apply stops at the first failure"
        );
        let records = change_records(&out.records);
        assert_eq!(records.len(), 2);
        assert!(
            matches!(&records[0].outcome, Outcome::Failed { code, .. } if code == "VerificationFailed")
        );
        assert!(
            records[0].after.to_string().contains("sgr-1"),
            "the record shows what was read back"
        );
        assert_eq!(revoke_call.num_calls(), 1);
    }

    #[tokio::test]
    async fn throttling_is_absorbed_by_retries() {
        let throttled = || {
            HttpResponse::new(
                StatusCode::try_from(503).expect("status"),
                SdkBody::from(
                    "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>r-1</RequestID></Response>",
                ),
            )
        };
        let before = mock!(Client::describe_security_group_rules)
            .sequence()
            .http_response(throttled)
            .times(2)
            .output(|| rules_output(vec![open_rule("sg-1", "sgr-1")]))
            .build();
        let revoke_call = revoke_succeeds();
        let after =
            mock!(Client::describe_security_group_rules).then_output(|| rules_output(Vec::new()));
        let client = mock_client!(
            aws_sdk_ec2,
            RuleMode::Sequential,
            [&before, &revoke_call, &after],
            |conf| conf.retry_config(
                aws_sdk_ec2::config::retry::RetryConfig::standard().with_max_attempts(4)
            )
        );
        let out = run(client, &plan_of(vec![revoke("sg-1", "sgr-1")])).await;
        assert_eq!(out.report.outcomes[0].1, Outcome::Succeeded);
        assert_eq!(
            before.num_calls(),
            3,
            "two throttled attempts, then the answer"
        );
    }

    #[tokio::test]
    async fn a_refused_call_fails_with_the_service_code_and_request_id() {
        let describe = mock!(Client::describe_security_group_rules)
            .then_output(|| rules_output(vec![open_rule("sg-1", "sgr-1")]));
        let refused = mock!(Client::revoke_security_group_egress).then_http_response(|| {
            // EC2 names the request in the x-amzn-requestid header as well as the body.
            let mut response = HttpResponse::new(
                StatusCode::try_from(403).expect("status"),
                SdkBody::from(
                    "<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>req-42</RequestID></Response>",
                ),
            );
            response.headers_mut().insert("x-amzn-requestid", "req-42");
            response
        });
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &refused]);
        let out = run(client, &plan_of(vec![revoke("sg-1", "sgr-1")])).await;
        let records = change_records(&out.records);
        assert!(
            matches!(&records[0].outcome, Outcome::Failed { code, message } if code == "UnauthorizedOperation" && message.contains("not authorized"))
        );
        assert_eq!(records[0].request_ids, vec!["req-42".to_string()]);
    }

    #[tokio::test]
    async fn a_stale_change_is_refused_without_calling() {
        // Since the plan, someone replaced the rule: its id differs.
        let describe = mock!(Client::describe_security_group_rules)
            .then_output(|| rules_output(vec![open_rule("sg-1", "sgr-9")]));
        let revoke_call = revoke_succeeds();
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &revoke_call]);
        let out = run(client, &plan_of(vec![revoke("sg-1", "sgr-1")])).await;
        assert!(
            matches!(&out.report.outcomes[0].1, Outcome::Failed { code, message } if code == "StalePlan" && message.contains("sg-1"))
        );
        assert_eq!(
            revoke_call.num_calls(),
            0,
            "nothing is called on a stale change"
        );
    }

    #[tokio::test]
    async fn an_interrupted_apply_starts_nothing_and_records_why() {
        let describe = mock!(Client::describe_security_group_rules)
            .then_output(|| rules_output(vec![open_rule("sg-1", "sgr-1")]));
        let revoke_call = revoke_succeeds();
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &revoke_call]);
        let out = run_with(client, &plan_of(vec![revoke("sg-1", "sgr-1")]), true).await;
        assert_eq!(
            out.report.outcomes[0].1,
            Outcome::Skipped {
                reason: "not attempted: apply was interrupted".into()
            }
        );
        assert_eq!(revoke_call.num_calls(), 0);
        assert_eq!(change_records(&out.records).len(), 1, "the skip is audited");
    }

    #[test]
    fn each_step_is_a_stage_and_each_resource_a_chain_within_it() {
        let step = |step: &str, group: &str, n: usize| {
            let mut change = revoke(group, "sgr-1");
            change.step = step.into();
            change.id = format!("t/us-east-1/{step}/{group}#{n}");
            change
        };
        let plan = plan_of(vec![
            step("close", "sg-1", 1),
            step("close", "sg-1", 2),
            step("close", "sg-2", 1),
            step("restrict", "sg-1", 1),
        ]);
        assert_eq!(
            stages(&plan),
            vec![vec![vec![0, 1], vec![2]], vec![vec![3]]]
        );
    }

    fn flow_log_change(vpc: &str) -> Change {
        let logs = |with: bool| {
            let log = json!({"id": crate::template::KNOWN_AFTER_APPLY, "traffic_type": "ALL",
                "destination_type": "s3", "destination": "arn:aws:s3:::logs", "status": "ACTIVE"});
            json!({"flow_logs": if with { vec![log] } else { Vec::new() }})
        };
        Change {
            id: format!("t/us-east-1/flow/{vpc}#1"),
            runbook: "t".into(),
            region: "us-east-1".into(),
            step: "flow".into(),
            action: "ec2:enable-flow-logs".into(),
            resource: ResourceRef {
                kind: ResourceKind::Vpc,
                id: vpc.into(),
            },
            kind: ChangeKind::Create,
            summary: "flow log".into(),
            before: logs(false),
            after: logs(true),
            call: ApiCall {
                service: "ec2".into(),
                operation: "CreateFlowLogs".into(),
                input: json!({"ResourceIds": [vpc], "ResourceType": "VPC", "TrafficType": "ALL",
                    "LogDestinationType": "s3", "LogDestination": "arn:aws:s3:::logs"}),
            },
            on_failure: OnFailure::Continue,
            wait_timeout_seconds: None,
            probe: None,
        }
    }

    #[tokio::test]
    async fn flow_logs_go_out_in_one_call_and_a_vpc_listed_unsuccessful_is_that_vpcs_failure() {
        use aws_sdk_ec2::operation::create_flow_logs::CreateFlowLogsOutput;
        use aws_sdk_ec2::operation::describe_flow_logs::DescribeFlowLogsOutput;
        use aws_sdk_ec2::types::{
            FlowLog, LogDestinationType, TrafficType, UnsuccessfulItem, UnsuccessfulItemError,
        };
        use std::collections::BTreeSet;

        // What the mocked service holds: VPCs that have a flow log.
        let logged: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let held = logged.clone();
        let create = mock!(Client::create_flow_logs).then_compute_output(move |input| {
            let mut refused = Vec::new();
            for id in input.resource_ids() {
                if id == "vpc-2" {
                    refused.push(
                        UnsuccessfulItem::builder()
                            .resource_id(id)
                            .error(
                                UnsuccessfulItemError::builder()
                                    .code("InvalidParameter")
                                    .message("LogDestination: bucket refused")
                                    .build(),
                            )
                            .build(),
                    );
                } else if let Ok(mut held) = held.lock() {
                    held.insert(id.clone());
                }
            }
            CreateFlowLogsOutput::builder()
                .set_unsuccessful(Some(refused))
                .build()
        });
        let held = logged.clone();
        let describe = mock!(Client::describe_flow_logs).then_compute_output(move |input| {
            let vpc = input
                .filter()
                .first()
                .and_then(|f| f.values().first().cloned())
                .unwrap_or_default();
            let has = held.lock().map(|h| h.contains(&vpc)).unwrap_or(false);
            let logs = has.then(|| {
                FlowLog::builder()
                    .flow_log_id(format!("fl-{vpc}"))
                    .resource_id(&vpc)
                    .traffic_type(TrafficType::All)
                    .log_destination_type(LogDestinationType::S3)
                    .log_destination("arn:aws:s3:::logs")
                    .flow_log_status("ACTIVE")
                    .build()
            });
            DescribeFlowLogsOutput::builder()
                .set_flow_logs(Some(logs.into_iter().collect()))
                .build()
        });
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&create, &describe]);
        let plan = plan_of(vec![
            flow_log_change("vpc-1"),
            flow_log_change("vpc-2"),
            flow_log_change("vpc-3"),
        ]);
        let out = run(client, &plan).await;
        assert_eq!(create.num_calls(), 1, "three VPCs, one CreateFlowLogs call");
        let outcomes: Vec<(&str, &Outcome)> = out
            .report
            .outcomes
            .iter()
            .map(|(id, o)| (id.as_str(), o))
            .collect();
        assert_eq!(
            outcomes[0],
            ("t/us-east-1/flow/vpc-1#1", &Outcome::Succeeded)
        );
        assert_eq!(
            outcomes[2],
            ("t/us-east-1/flow/vpc-3#1", &Outcome::Succeeded)
        );
        let Outcome::Failed { code, message } = outcomes[1].1 else {
            panic!("vpc-2 must fail, got {:?}", outcomes[1].1)
        };
        assert_eq!(code, "InvalidParameter");
        assert!(
            message.contains("vpc-2") && message.contains("Unsuccessful"),
            "{message}"
        );
        let records = change_records(&out.records);
        assert_eq!(records.len(), 3, "each VPC has its own audit record");
        assert!(matches!(records[1].outcome, Outcome::Failed { .. }));
    }
}
