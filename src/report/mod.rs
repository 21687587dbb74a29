//! Compliance reports: per account, region and runbook (with its controls), what is
//! compliant, what was fixed and verified, what drift was left (reported, or awaiting
//! approval), what is blocked (with why), what failed (with the error) and what could
//! not be planned. Built from a plan, the enforcement decisions and the apply's
//! outcomes; rendered for people ([`render::text`], [`render::html`]) or as versioned
//! JSON (docs/report-format.md).

pub mod findings;
pub mod render;
pub mod security_hub;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::audit::Outcome;
use crate::plan::{Plan, ResourceRef};
use crate::policy::Mode;
use crate::runbook::model::Control;

/// Version of the report JSON (docs/report-format.md).
pub const REPORT_FORMAT_VERSION: u32 = 1;

/// What the report was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A plan: nothing was applied; every change is drift.
    Plan,
    /// An apply of a plan.
    Apply,
    /// `harden enforce`: the policy decided, the `auto` changes were applied.
    Enforce,
}

/// A compliance report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_FORMAT_VERSION`].
    pub format_version: u32,
    /// The harden that made it.
    pub harden_version: String,
    /// What it was made from.
    pub source: Source,
    /// The run (enforce or apply); absent for a plan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// When the plan's discovery ran.
    pub planned_at: jiff::Timestamp,
    /// Who ran harden.
    pub principal: String,
    /// The totals, over every account.
    pub summary: Totals,
    /// Per account.
    pub accounts: Vec<AccountReport>,
}

/// Counts of resources by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Accounts covered.
    pub accounts: usize,
    /// Accounts that could not be reached.
    pub unreachable: usize,
    /// Resources found compliant.
    pub compliant: usize,
    /// Resources changed and verified.
    pub fixed: usize,
    /// Resources left non-compliant (reported, or not applied).
    pub drift: usize,
    /// Resources whose changes wait for a person (the pending plan).
    pub awaiting_approval: usize,
    /// Resources no runbook may change, with why.
    pub blocked: usize,
    /// Resources whose change failed.
    pub failed: usize,
    /// Runbook-regions that could not be planned.
    pub not_planned: usize,
}

impl Totals {
    fn add(&mut self, runbook: &RunbookReport) {
        self.compliant += runbook.compliant;
        self.fixed += runbook.fixed.len();
        self.drift += runbook.drift.len();
        self.awaiting_approval += runbook.awaiting_approval.len();
        self.blocked += runbook.blocked.len();
        self.failed += runbook.failed.len();
        self.not_planned += usize::from(runbook.not_planned.is_some());
    }

    /// True when nothing is left to do and nothing went wrong.
    pub fn is_compliant(&self) -> bool {
        self.drift == 0
            && self.awaiting_approval == 0
            && self.failed == 0
            && self.not_planned == 0
            && self.unreachable == 0
    }

    /// True when something went wrong: a failure, an unreachable account, a gap.
    pub fn has_errors(&self) -> bool {
        self.failed > 0 || self.not_planned > 0 || self.unreachable > 0
    }
}

/// One account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountReport {
    /// Account id.
    pub id: String,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Why it could not be reached; then it has no regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<String>,
    /// Its totals.
    pub summary: Totals,
    /// Per region.
    pub regions: Vec<RegionReport>,
}

/// One region of an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegionReport {
    /// Region.
    pub region: String,
    /// Per runbook, in apply order.
    pub runbooks: Vec<RunbookReport>,
}

/// The state of one runbook in one account-region: the worst of its resources'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nothing to do.
    Compliant,
    /// Changes made and verified; nothing left.
    Fixed,
    /// Some resources are blocked (exempt, in use, ...); nothing else left.
    Blocked,
    /// Changes wait for approval.
    AwaitingApproval,
    /// Non-compliant resources left as they are.
    Drift,
    /// Could not be planned.
    NotPlanned,
    /// A change failed.
    Failed,
}

impl Status {
    /// The name people read.
    pub fn label(self) -> &'static str {
        match self {
            Status::Compliant => "compliant",
            Status::Fixed => "fixed",
            Status::Blocked => "blocked",
            Status::AwaitingApproval => "awaiting approval",
            Status::Drift => "drift",
            Status::NotPlanned => "not planned",
            Status::Failed => "failed",
        }
    }
}

/// One runbook in one account-region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunbookReport {
    /// Runbook id.
    pub runbook: String,
    /// Its title.
    pub title: String,
    /// The controls it satisfies.
    pub controls: Vec<Control>,
    /// The worst state of its resources.
    pub status: Status,
    /// Resources found compliant.
    pub compliant: usize,
    /// Resources changed and verified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fixed: Vec<Item>,
    /// Resources left non-compliant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<Item>,
    /// Resources waiting for approval.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub awaiting_approval: Vec<Item>,
    /// Resources blocked, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<Item>,
    /// Resources whose change failed, with the error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<Item>,
    /// Why it could not be planned here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_planned: Option<String>,
}

/// One resource in a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The resource.
    pub resource: ResourceRef,
    /// What its changes do (or would do), one per change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// Why it is blocked, the error it failed with, or why it was not attempted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What a run decided and did for each change of a plan.
#[derive(Debug, Clone, Default)]
pub struct Run<'a> {
    /// The run's id, if any.
    pub run_id: Option<&'a str>,
    /// The policy's mode for each change, by index (none: every change is drift).
    pub modes: Option<&'a [Mode]>,
    /// The outcome of each change applied, by change id.
    pub outcomes: BTreeMap<&'a str, &'a Outcome>,
}

/// What happened to one resource, from its changes.
enum Fate {
    Fixed,
    Drift(Option<String>),
    Awaiting,
    Failed(String),
}

/// Builds the report of `plan` as `run` decided and applied it.
pub fn build(plan: &Plan, run: &Run<'_>, source: Source) -> Report {
    let mut accounts = Vec::new();
    let mut summary = Totals {
        accounts: plan.accounts.len() + plan.unreachable.len(),
        unreachable: plan.unreachable.len(),
        ..Totals::default()
    };
    let by_place = plan.by_place();
    for account in plan.accounts.iter().map(|a| &a.target) {
        let mut totals = Totals {
            accounts: 1,
            ..Totals::default()
        };
        let mut regions = Vec::new();
        for region in &account.regions {
            let mut runbooks = Vec::new();
            for planned in &plan.runbooks {
                let here =
                    |r: &str, a: &str, g: &str| r == planned.id && a == account.id && g == region;
                let mut report = RunbookReport {
                    runbook: planned.id.clone(),
                    title: planned.title.clone(),
                    controls: planned.controls.clone(),
                    status: Status::Compliant,
                    compliant: planned
                        .compliant
                        .get(&account.id)
                        .and_then(|r| r.get(region))
                        .copied()
                        .unwrap_or(0),
                    fixed: Vec::new(),
                    drift: Vec::new(),
                    awaiting_approval: Vec::new(),
                    blocked: Vec::new(),
                    failed: Vec::new(),
                    not_planned: plan
                        .not_planned
                        .iter()
                        .find(|n| here(&n.runbook, &n.account_id, &n.region))
                        .map(|n| n.reason.clone()),
                };
                // Changes to one resource make one item, in plan order.
                let mut order: Vec<&ResourceRef> = Vec::new();
                let mut by_resource: BTreeMap<(crate::actions::ResourceKind, &str), Vec<usize>> =
                    BTreeMap::new();
                for &index in by_place.changes(&account.id, region, &planned.id) {
                    let change = &plan.changes[index];
                    let key = (change.resource.kind, change.resource.id.as_str());
                    if !by_resource.contains_key(&key) {
                        order.push(&change.resource);
                    }
                    by_resource.entry(key).or_default().push(index);
                }
                for resource in order {
                    let indices = &by_resource[&(resource.kind, resource.id.as_str())];
                    let item = |detail: Option<String>| Item {
                        resource: resource.clone(),
                        changes: indices
                            .iter()
                            .map(|i| plan.changes[*i].summary.clone())
                            .collect(),
                        detail,
                    };
                    match fate(plan, run, indices) {
                        Fate::Fixed => report.fixed.push(item(None)),
                        Fate::Drift(why) => report.drift.push(item(why)),
                        Fate::Awaiting => report.awaiting_approval.push(item(None)),
                        Fate::Failed(error) => report.failed.push(item(Some(error))),
                    }
                }
                for blocked in by_place
                    .blocked(&account.id, region, &planned.id)
                    .iter()
                    .map(|i| &plan.blocked[*i])
                {
                    report.blocked.push(Item {
                        resource: blocked.resource.clone(),
                        changes: Vec::new(),
                        detail: Some(format!("{}: {}", blocked.reason, blocked.detail)),
                    });
                }
                report.status = if !report.failed.is_empty() {
                    Status::Failed
                } else if report.not_planned.is_some() {
                    Status::NotPlanned
                } else if !report.drift.is_empty() {
                    Status::Drift
                } else if !report.awaiting_approval.is_empty() {
                    Status::AwaitingApproval
                } else if !report.blocked.is_empty() {
                    Status::Blocked
                } else if !report.fixed.is_empty() {
                    Status::Fixed
                } else {
                    Status::Compliant
                };
                totals.add(&report);
                runbooks.push(report);
            }
            regions.push(RegionReport {
                region: region.clone(),
                runbooks,
            });
        }
        summary.compliant += totals.compliant;
        summary.fixed += totals.fixed;
        summary.drift += totals.drift;
        summary.awaiting_approval += totals.awaiting_approval;
        summary.blocked += totals.blocked;
        summary.failed += totals.failed;
        summary.not_planned += totals.not_planned;
        accounts.push(AccountReport {
            id: account.id.clone(),
            name: account.name.clone(),
            tags: account.tags.clone(),
            unreachable: None,
            summary: totals,
            regions,
        });
    }
    for account in &plan.unreachable {
        accounts.push(AccountReport {
            id: account.id.clone(),
            name: account.name.clone(),
            tags: BTreeMap::new(),
            unreachable: Some(account.reason.clone()),
            summary: Totals {
                accounts: 1,
                unreachable: 1,
                ..Totals::default()
            },
            regions: Vec::new(),
        });
    }
    Report {
        format_version: REPORT_FORMAT_VERSION,
        harden_version: env!("CARGO_PKG_VERSION").to_string(),
        source,
        run_id: run.run_id.map(str::to_string),
        planned_at: plan.created_at,
        principal: plan.principal.clone(),
        summary,
        accounts,
    }
}

/// A resource's fate from its changes: failed if one failed; else awaiting approval or
/// drift if the policy held them or they were not all made; else fixed.
fn fate(plan: &Plan, run: &Run<'_>, indices: &[usize]) -> Fate {
    let mut drift_reason = None;
    let mut held = None;
    for &index in indices {
        let change = &plan.changes[index];
        let mode = run.modes.and_then(|m| m.get(index)).copied();
        match (mode, run.outcomes.get(change.id.as_str())) {
            (_, Some(Outcome::Failed { code, message })) => {
                return Fate::Failed(format!("{}: {code}: {message}", change.id));
            }
            (_, Some(Outcome::Succeeded)) => {}
            (_, Some(Outcome::Skipped { reason })) => {
                drift_reason.get_or_insert_with(|| format!("{}: {reason}", change.id));
            }
            (Some(Mode::Approve), None) => held = held.max(Some(Mode::Approve)),
            (Some(Mode::Report), None) | (None, None) => held = Some(Mode::Report),
            (Some(Mode::Auto), None) => {
                drift_reason.get_or_insert_with(|| format!("{}: not applied", change.id));
            }
        }
    }
    match (held, drift_reason) {
        (Some(Mode::Report), _) => Fate::Drift(None),
        (_, Some(why)) => Fate::Drift(Some(why)),
        (Some(Mode::Approve), None) => Fate::Awaiting,
        _ => Fate::Fixed,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn plan() -> Plan {
        let change = |resource: &str| {
            json!({
                "id": format!("111111111111/r/us-east-1/s/{resource}#1"), "runbook": "r",
                "account_id": "111111111111", "region": "us-east-1", "step": "s", "action": "a",
                "kind": "update", "summary": format!("fix {resource}"),
                "resource": {"kind": "ec2:security-group", "id": resource},
                "before": null, "after": null, "on_failure": "stop",
                "call": {"service": "ec2", "operation": "X", "input": {}}
            })
        };
        serde_json::from_value(json!({
            "format_version": crate::plan::PLAN_FORMAT_VERSION, "harden_version": "t",
            "created_at": "2026-12-01T00:00:00Z", "principal": "arn:aws:iam::111111111111:user/p",
            "accounts": [{"id": "111111111111", "principal": "p", "regions": ["us-east-1"]}],
            "runbooks": [{"id": "r", "title": "R", "path": "", "digest": "",
                "controls": [{"framework": "AWS FSBP", "id": "EC2.2"}], "steps": ["s"],
                "parameters": {}, "compliant": {"111111111111": {"us-east-1": 4}}}],
            "changes": [change("sg-ok"), change("sg-bad"), change("sg-later"), change("sg-held")],
            "blocked": [{"runbook": "r", "account_id": "111111111111", "region": "us-east-1",
                "step": "s", "resource": {"kind": "ec2:security-group", "id": "sg-exempt"},
                "reason": "exempt", "detail": "tagged harden:exempt=true"}]
        }))
        .expect("plan")
    }

    #[test]
    fn each_resource_is_fixed_failed_left_or_held_as_its_changes_went() {
        let plan = plan();
        let ok = Outcome::Succeeded;
        let bad = Outcome::Failed {
            code: "InvalidGroup.NotFound".into(),
            message: "gone".into(),
        };
        let skipped = Outcome::Skipped {
            reason: "not attempted: apply was interrupted".into(),
        };
        let modes = [Mode::Auto, Mode::Auto, Mode::Auto, Mode::Approve];
        let run = Run {
            run_id: Some("run-1"),
            modes: Some(&modes),
            outcomes: BTreeMap::from([
                ("111111111111/r/us-east-1/s/sg-ok#1", &ok),
                ("111111111111/r/us-east-1/s/sg-bad#1", &bad),
                ("111111111111/r/us-east-1/s/sg-later#1", &skipped),
            ]),
        };
        let report = build(&plan, &run, Source::Enforce);
        let runbook = &report.accounts[0].regions[0].runbooks[0];
        let ids = |items: &[Item]| {
            items
                .iter()
                .map(|i| i.resource.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&runbook.fixed), ["sg-ok"]);
        assert_eq!(ids(&runbook.failed), ["sg-bad"]);
        assert_eq!(
            runbook.failed[0].detail.as_deref(),
            Some("111111111111/r/us-east-1/s/sg-bad#1: InvalidGroup.NotFound: gone")
        );
        assert_eq!(ids(&runbook.drift), ["sg-later"]);
        assert!(
            runbook.drift[0]
                .detail
                .as_deref()
                .is_some_and(|d| d.contains("interrupted"))
        );
        assert_eq!(ids(&runbook.awaiting_approval), ["sg-held"]);
        assert_eq!(ids(&runbook.blocked), ["sg-exempt"]);
        assert_eq!(runbook.status, Status::Failed);
        assert_eq!(report.summary.compliant, 4);
        assert!(report.summary.has_errors());

        // As findings: the fixed one resolved with the run, the others open.
        let asff = findings::asff(&report, "aws");
        assert_eq!(asff.len(), 5);
        let fixed = asff
            .iter()
            .find(|f| f.resource_id == "sg-ok")
            .expect("fixed");
        assert_eq!(
            (fixed.workflow_status, fixed.compliance_status),
            ("RESOLVED", "PASSED")
        );
        assert!(fixed.note.as_deref().is_some_and(|n| n.contains("run-1")));
        assert_eq!(fixed.id, "harden/111111111111/us-east-1/r/sg-ok");
        assert_eq!(fixed.related_requirements, ["AWS FSBP EC2.2"]);
        assert!(
            asff.iter()
                .filter(|f| f.resource_id != "sg-ok")
                .all(|f| f.workflow_status == "NEW")
        );
    }

    #[test]
    fn a_plan_alone_is_all_drift() {
        let report = build(&plan(), &Run::default(), Source::Plan);
        let runbook = &report.accounts[0].regions[0].runbooks[0];
        assert_eq!(runbook.drift.len(), 4);
        assert_eq!(runbook.status, Status::Drift);
        assert!(!report.summary.is_compliant());
        assert!(!report.summary.has_errors());
    }
}
