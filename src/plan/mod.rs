//! Plans: what apply would change, as data. The [`crate::planner`] computes a plan from
//! runbooks and the inventory; [`render`] shows it to people (Terraform-style) or as
//! versioned JSON. Nothing here renders or calls AWS; fields exist because apply needs
//! them or a reviewer does, never only for display.

pub mod render;
pub mod seal;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use serde_json::Value;

use crate::error::{Error, Problems, Result};
use crate::inventory::ResourceKind;
use crate::runbook::model::{Control, OnFailure};
use crate::template::KNOWN_AFTER_APPLY;

/// Version of the saved-plan and `--format json` schema (docs/plan-format.md).
pub const PLAN_FORMAT_VERSION: u32 = 2;

/// A complete plan for every account and region of a run: every change apply would
/// make, every change it will not make with the reason, and what it could not cover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// [`PLAN_FORMAT_VERSION`].
    pub format_version: u32,
    /// The harden that made it.
    pub harden_version: String,
    /// When discovery ran.
    pub created_at: jiff::Timestamp,
    /// The principal that planned (the caller's ARN).
    pub principal: String,
    /// The accounts planned, each with the regions planned in it.
    pub accounts: Vec<PlannedAccount>,
    /// Accounts that could not be reached, with why: nothing of them was planned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreachable: Vec<UnreachableAccount>,
    /// Runbooks in the order they are applied.
    pub runbooks: Vec<PlannedRunbook>,
    /// Changes in apply order, grouped by account then region.
    pub changes: Vec<Change>,
    /// Changes that will not be made, with the reason.
    pub blocked: Vec<Blocked>,
    /// Runbooks that could not be planned in an account and region (their discovery
    /// failed, or a runbook they require could not be planned there), with the reason.
    /// A plan with any, or with an unreachable account, is partial: what it leaves out
    /// is neither changed nor known to be compliant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_planned: Vec<NotPlanned>,
    /// Set by dry-run: services whose calls have no dry-run, so were not probed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unprobed_services: Vec<String>,
}

/// (account, region, runbook): where a change or block is.
pub type PlaceKey<'a> = (&'a str, &'a str, &'a str);

/// [`Plan::by_place`]: indices into `changes` and `blocked`.
#[derive(Debug, Default)]
pub struct ByPlace<'a> {
    changes: BTreeMap<PlaceKey<'a>, Vec<usize>>,
    blocked: BTreeMap<PlaceKey<'a>, Vec<usize>>,
}

impl<'a> ByPlace<'a> {
    /// The changes of one account, region and runbook, in plan order.
    pub fn changes(&self, account: &'a str, region: &'a str, runbook: &'a str) -> &[usize] {
        self.changes
            .get(&(account, region, runbook))
            .map_or(&[], Vec::as_slice)
    }

    /// The blocks of one account, region and runbook, in plan order.
    pub fn blocked(&self, account: &'a str, region: &'a str, runbook: &'a str) -> &[usize] {
        self.blocked
            .get(&(account, region, runbook))
            .map_or(&[], Vec::as_slice)
    }
}

/// An account as it was planned: how to reach it again (its id, name, tags, the
/// regions planned with the home region first, the role assumed, absent when the
/// caller's own credentials reached it, and its external id) and who harden acted as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedAccount {
    /// The account as `apply --plan` reaches it again.
    #[serde(flatten)]
    pub target: crate::accounts::Target,
    /// Who harden acted as there (the assumed role's session, or the caller).
    pub principal: String,
}

/// An account the run could not reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreachableAccount {
    /// The account id.
    pub id: String,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Why: the AssumeRole refusal, or STS naming another account.
    pub reason: String,
}

impl Plan {
    /// Changes apply would make (blocked ones are not changes).
    pub fn pending(&self) -> usize {
        self.changes
            .iter()
            .filter(|c| c.kind != ChangeKind::NoOp)
            .count()
    }

    /// True when some runbook could not be planned somewhere, or an account could not
    /// be reached.
    pub fn is_partial(&self) -> bool {
        !self.not_planned.is_empty() || !self.unreachable.is_empty()
    }

    /// Every region planned in some account, in order of first appearance.
    pub fn regions(&self) -> Vec<String> {
        let mut regions: Vec<String> = Vec::new();
        for region in self.accounts.iter().flat_map(|a| &a.target.regions) {
            if !regions.contains(region) {
                regions.push(region.clone());
            }
        }
        regions
    }

    /// The same plan with only the changes whose index `keep` accepts (and no blocks or
    /// gaps, which stay in the report of the whole): what enforce applies now, or holds
    /// for approval as a plan of its own.
    pub fn subset(&self, keep: impl Fn(usize) -> bool) -> Plan {
        Plan {
            changes: self
                .changes
                .iter()
                .enumerate()
                .filter(|(i, _)| keep(*i))
                .map(|(_, c)| c.clone())
                .collect(),
            blocked: Vec::new(),
            not_planned: Vec::new(),
            unreachable: Vec::new(),
            ..self.clone()
        }
    }

    /// The indices of the changes and of the blocks of each (account, region, runbook),
    /// in plan order: what the renderers and reports walk, made once rather than
    /// scanning the whole plan for every account, region and runbook.
    pub fn by_place(&self) -> ByPlace<'_> {
        let mut by = ByPlace::default();
        for (index, change) in self.changes.iter().enumerate() {
            by.changes
                .entry((&change.account_id, &change.region, &change.runbook))
                .or_default()
                .push(index);
        }
        for (index, block) in self.blocked.iter().enumerate() {
            by.blocked
                .entry((&block.account_id, &block.region, &block.runbook))
                .or_default()
                .push(index);
        }
        by
    }

    /// The planned account with this id.
    pub fn account(&self, id: &str) -> Option<&PlannedAccount> {
        self.accounts.iter().find(|a| a.target.id == id)
    }

    /// Reads a saved plan, checking its format version.
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::input::read_text(path, crate::input::MAX_PLAN_BYTES, "plan")?;
        let plan: Plan = serde_json::from_str(&text).map_err(|e| {
            let mut problems = Problems::default();
            problems.push(
                Some(crate::error::SourceLocation {
                    file: path.to_path_buf(),
                    line: e.line() as u64,
                    column: e.column() as u64,
                }),
                format!("not a harden plan file: {e}"),
            );
            Error::Invalid(problems)
        })?;
        if plan.format_version != PLAN_FORMAT_VERSION {
            let mut problems = Problems::default();
            problems.push(
                Some(crate::error::SourceLocation {
                    file: path.to_path_buf(),
                    line: 0,
                    column: 0,
                }),
                format!(
                    "plan format version {} is not supported (expected {PLAN_FORMAT_VERSION}); plan again with this harden",
                    plan.format_version
                ),
            );
            return Err(Error::Invalid(problems));
        }
        Ok(plan)
    }

    /// The plan as saved: pretty JSON and a final newline.
    pub fn to_text(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map(|text| text + "\n")
            .map_err(|e| Error::Internal(format!("plan does not serialize: {e}")))
    }

    /// SHA-256 (hex) of [`Plan::to_text`]: what `sha256sum` says of a saved plan.
    /// The text is hashed as it is serialized: a plan of thousands of changes is
    /// megabytes of text, never held whole.
    pub fn digest(&self) -> Result<String> {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        serde_json::to_writer_pretty(&mut hasher, self)
            .map_err(|e| Error::Internal(format!("plan does not serialize: {e}")))?;
        hasher.update(b"\n");
        Ok(hex::encode(hasher.finalize()))
    }

    /// Writes the plan as pretty JSON ([`Plan::to_text`]), streamed to the file.
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let mut out = std::io::BufWriter::new(file);
        serde_json::to_writer_pretty(&mut out, self).map_err(|e| match e.io_error_kind() {
            Some(kind) => Error::io(path, std::io::Error::from(kind)),
            None => Error::Internal(format!("plan does not serialize: {e}")),
        })?;
        out.write_all(b"\n")
            .and_then(|()| out.flush())
            .map_err(|e| Error::io(path, e))
    }
}

/// The values a plan recorded for its runbooks, as they were resolved: what a resumed
/// run plans with again (the values given then are still data).
pub fn recorded_params(runbooks: &[PlannedRunbook]) -> crate::runbook::params::ResolvedParams {
    crate::runbook::params::ResolvedParams::recorded(
        runbooks
            .iter()
            .map(|r| (r.id.clone(), r.parameters.clone()))
            .collect(),
        runbooks
            .iter()
            .flat_map(|r| {
                r.given_parameters
                    .iter()
                    .map(|name| (r.id.clone(), name.clone()))
            })
            .collect(),
    )
}

/// A runbook as it was planned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedRunbook {
    /// Runbook id.
    pub id: String,
    /// Title.
    pub title: String,
    /// The file.
    pub path: String,
    /// SHA-256 of the file.
    pub digest: String,
    /// Controls it satisfies.
    pub controls: Vec<Control>,
    /// Its step ids in order: apply runs one stage per step in this order.
    pub steps: Vec<String>,
    /// Runbooks it requires (`requires:`): a failure of one of them in a region holds
    /// this one back there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    /// Parameter values used.
    pub parameters: BTreeMap<String, Value>,
    /// The parameters `--param` gave (data, never rendered); the others are the
    /// runbook's defaults, which may be templates over the account and region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub given_parameters: Vec<String>,
    /// Resources found compliant (no change needed), per account and region.
    pub compliant: BTreeMap<String, BTreeMap<String, usize>>,
}

/// A runbook left out of an account-region's plan, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotPlanned {
    /// Runbook id.
    pub runbook: String,
    /// The account.
    pub account_id: String,
    /// Region.
    pub region: String,
    /// Why: the discovery call that failed, with what the service said, or the runbook
    /// it requires that could not be planned.
    pub reason: String,
}

/// The kind of a change, as Terraform names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// A new resource or rule (`+`).
    Create,
    /// Modified in place (`~`).
    Update,
    /// Removed (`-`).
    Delete,
    /// Removed and created anew (`-/+`).
    Replace,
    /// Nothing to do.
    NoOp,
}

impl ChangeKind {
    /// Terraform's symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            ChangeKind::Create => "+",
            ChangeKind::Update => "~",
            ChangeKind::Delete => "-",
            ChangeKind::Replace => "-/+",
            ChangeKind::NoOp => " ",
        }
    }
}

/// Which resource a change or block concerns.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceRef {
    /// Kind.
    pub kind: ResourceKind,
    /// Id.
    pub id: String,
    /// Its tags when planned, for policies that match on them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.id)
    }
}

/// The API call a change makes, with its rendered input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiCall {
    /// Service, e.g. `ec2`.
    pub service: String,
    /// Operation, e.g. `RevokeSecurityGroupEgress`.
    pub operation: String,
    /// The input as sent (AWS field names); unknown values read `(known after apply)`.
    pub input: Value,
}

/// What a dry-run probe of a change found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Probe {
    /// `DryRunOperation`: the call would succeed.
    WouldSucceed,
    /// `UnauthorizedOperation`: the caller may not make the call.
    Unauthorized {
        /// The service's message.
        message: String,
    },
    /// Another error answered the probe.
    Failed {
        /// Error code.
        code: String,
        /// Message.
        message: String,
    },
    /// The service has no dry-run; not probed.
    NotSupported,
    /// Depends on a value only known after an earlier change; not probed.
    NotProbed {
        /// Why.
        reason: String,
    },
}

/// One change apply would make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// Stable id within the plan: `account/runbook/region/step/resource#n`.
    pub id: String,
    /// Runbook id.
    pub runbook: String,
    /// The account.
    pub account_id: String,
    /// Region.
    pub region: String,
    /// Step id.
    pub step: String,
    /// Action name.
    pub action: String,
    /// The resource changed.
    pub resource: ResourceRef,
    /// Create, update, delete, replace.
    pub kind: ChangeKind,
    /// One line for people.
    pub summary: String,
    /// The resource's state before this change (the stale-plan check compares it).
    pub before: Value,
    /// The intended state after it (the read-back must match it).
    pub after: Value,
    /// The call.
    pub call: ApiCall,
    /// What a failure does to the rest of the apply.
    pub on_failure: OnFailure,
    /// How long the call's wait (a snapshot completing) may take, from the step's
    /// `wait.timeout_seconds`; the action's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_timeout_seconds: Option<u64>,
    /// Dry-run result, when the plan was made by `harden dry-run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Probe>,
}

impl Plan {
    /// The plan as run `run_id` applies it (see [`Change::for_run`]): itself when no
    /// call names the run, so a plan of thousands of changes is not copied for nothing.
    pub fn for_run(&self, run_id: &str) -> Cow<'_, Plan> {
        if !self.changes.iter().any(|c| names_run(&c.call.input)) {
            return Cow::Borrowed(self);
        }
        let mut plan = self.clone();
        for change in &mut plan.changes {
            substitute_run(&mut change.call.input, run_id);
        }
        Cow::Owned(plan)
    }
}

impl Change {
    /// The change as run `run_id` makes it: [`crate::template::RUN_ID`] in its call's
    /// input replaced by the run id.
    pub fn for_run(&self, run_id: &str) -> Change {
        let mut change = self.clone();
        substitute_run(&mut change.call.input, run_id);
        change
    }
}

/// Whether `value` holds [`crate::template::RUN_ID`] anywhere.
fn names_run(value: &Value) -> bool {
    match value {
        Value::String(s) => s == crate::template::RUN_ID,
        Value::Array(items) => items.iter().any(names_run),
        Value::Object(map) => map.values().any(names_run),
        _ => false,
    }
}

/// Replaces [`crate::template::RUN_ID`] in `value` by `run_id`.
fn substitute_run(value: &mut Value, run_id: &str) {
    match value {
        Value::String(s) if s == crate::template::RUN_ID => *s = run_id.to_string(),
        Value::Array(items) => items.iter_mut().for_each(|v| substitute_run(v, run_id)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute_run(v, run_id)),
        _ => {}
    }
}

/// Why a change is not made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockReason {
    /// Tagged `harden:exempt` = `true`.
    Exempt,
    /// Named in an exclusion parameter.
    Excluded,
    /// A resource still in use (an in-use default security group).
    InUse,
    /// The change needs downtime the parameters do not allow.
    NeedsDowntime,
    /// The resource can only be changed from another region (a trail's home region).
    OtherRegion,
    /// Set up as asked but reporting failure; needs a person (a recorder whose last
    /// recording failed).
    Failing,
    /// Between states (an instance pending or stopping); plan again when it settles.
    Transitional,
    /// Scheduled, not yet due: an original kept until its replacement has been in
    /// place for `retire_originals_after`. Not drift.
    NotYetDue,
    /// A rollback cannot undo this change: no inverse exists, the resource changed
    /// since the run, or a later change to it cannot be undone.
    NoWayBack,
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockReason::Exempt => "exempt",
            BlockReason::Excluded => "excluded",
            BlockReason::InUse => "in use",
            BlockReason::NeedsDowntime => "needs downtime",
            BlockReason::OtherRegion => "other region",
            BlockReason::Failing => "failing",
            BlockReason::Transitional => "in transition",
            BlockReason::NoWayBack => "no way back",
            BlockReason::NotYetDue => "not yet due",
        })
    }
}

impl BlockReason {
    /// Safety blocks protect a resource's users; a resource one runbook leaves alone for
    /// such a reason is left alone by every later runbook of the same plan, so that no
    /// runbook half-changes what another declined to touch.
    pub fn protects_resource(&self) -> bool {
        matches!(self, BlockReason::InUse | BlockReason::NeedsDowntime)
    }
}

/// A change that will not be made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    /// Runbook id.
    pub runbook: String,
    /// The account.
    pub account_id: String,
    /// Region.
    pub region: String,
    /// Step id.
    pub step: String,
    /// The resource.
    pub resource: ResourceRef,
    /// Why.
    pub reason: BlockReason,
    /// Detail for people, e.g. "used by 2 network interfaces; set close_in_use: true".
    pub detail: String,
}

/// Compares an expected state with a read one; `(known after apply)` in the expected
/// state matches any value. Returns the first difference as `path: expected X, found Y`.
pub fn state_matches(expected: &Value, actual: &Value) -> std::result::Result<(), String> {
    fn walk(path: &str, expected: &Value, actual: &Value) -> std::result::Result<(), String> {
        match (expected, actual) {
            (Value::String(e), _) if e == KNOWN_AFTER_APPLY => Ok(()),
            (Value::Object(e), Value::Object(a)) => {
                for (key, ev) in e {
                    let av = a.get(key).unwrap_or(&Value::Null);
                    walk(&format!("{path}.{key}"), ev, av)?;
                }
                for key in a.keys().filter(|k| !e.contains_key(*k)) {
                    if !a[key].is_null() {
                        return Err(format!("{path}.{key}: not expected, found {}", a[key]));
                    }
                }
                Ok(())
            }
            (Value::Array(e), Value::Array(a)) => {
                if e.len() != a.len() {
                    return Err(format!(
                        "{path}: expected {} entries, found {}: {}",
                        e.len(),
                        a.len(),
                        Value::Array(a.clone())
                    ));
                }
                for (index, (ev, av)) in e.iter().zip(a).enumerate() {
                    walk(&format!("{path}[{index}]"), ev, av)?;
                }
                Ok(())
            }
            (e, a) if e == a => Ok(()),
            (e, a) => Err(format!("{path}: expected {e}, found {a}")),
        }
    }
    walk("", expected, actual).map_err(|m| m.trim_start_matches('.').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_plan_of_another_format_version_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("old-plan.json");
        let old = json!({
            "format_version": 1, "harden_version": "0.0.1",
            "created_at": "2026-01-01T00:00:00Z", "principal": "arn:aws:iam::123456789012:user/t",
            "accounts": [], "unreachable": [], "runbooks": [], "changes": [], "blocked": [],
            "not_planned": [], "unprobed_services": []
        });
        std::fs::write(&path, old.to_string()).expect("write");
        let Err(Error::Invalid(problems)) = Plan::load(&path) else {
            panic!("an old plan is refused as invalid input");
        };
        assert_eq!(
            problems.to_string().trim_end(),
            format!(
                "{}: plan format version 1 is not supported (expected {PLAN_FORMAT_VERSION}); plan again with this harden",
                path.display()
            )
        );
    }

    #[test]
    fn the_run_id_goes_into_the_calls_of_the_run_that_makes_them() {
        let change: Change = serde_json::from_value(json!({
            "id": "a/t/r/s/x#1", "runbook": "t", "account_id": "123456789012", "region": "r", "step": "s", "action": "a",
            "resource": {"kind": "ec2:volume", "id": "x"}, "kind": "create", "summary": "",
            "before": null, "after": null, "on_failure": "stop",
            "call": {"service": "ec2", "operation": "CreateSnapshot", "input": {"VolumeId": "x",
                "TagSpecifications": [{"Tags": [{"Key": "harden:run-id", "Value": crate::template::RUN_ID}]}]}}
        }))
        .expect("a change");
        let made = change.for_run("run-7");
        assert_eq!(
            made.call.input["TagSpecifications"][0]["Tags"][0]["Value"],
            "run-7"
        );
        assert_eq!(made.call.input["VolumeId"], "x");
    }

    #[test]
    fn known_after_apply_matches_anything() {
        let expected = json!({"egress": [{"rule_id": KNOWN_AFTER_APPLY, "protocol": "tcp"}]});
        let actual = json!({"egress": [{"rule_id": "sgr-1", "protocol": "tcp"}]});
        assert_eq!(state_matches(&expected, &actual), Ok(()));
    }

    #[test]
    fn differences_name_the_path() {
        let expected = json!({"egress": [{"rule_id": "sgr-1", "protocol": "tcp"}]});
        let actual = json!({"egress": [{"rule_id": "sgr-1", "protocol": "udp"}]});
        assert_eq!(
            state_matches(&expected, &actual),
            Err("egress[0].protocol: expected \"tcp\", found \"udp\"".to_string())
        );
        let shorter = json!({"egress": []});
        assert!(
            state_matches(&expected, &shorter)
                .expect_err("length differs")
                .starts_with("egress: expected 1 entries, found 0")
        );
    }
}
