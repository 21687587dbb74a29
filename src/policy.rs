//! The enforcement policy: for each planned change, whether `harden enforce` applies it
//! now (`auto`), leaves it and reports it (`report`), or holds it for a person
//! (`approve`, written as a saved plan to apply after review).
//!
//! ```yaml
//! version: 1
//! default: report            # for every change no rule matches
//! rules:                     # the last matching rule wins
//!   - {mode: auto, runbook: restrict-sg-egress, account_tag: env=sandbox}
//!   - {mode: report, account_tag: env=prod}
//!   - {mode: approve, operation: StopInstances}
//! ```
//!
//! A rule matches a change when every field it gives matches: `runbook`, `step`,
//! `action`, `operation` (the AWS call), `kind` (create, update, delete, replace),
//! `account`, `account_tag` and `resource_tag` (`KEY=VALUE`), `region`.
//!
//! Changes are not decided alone. Applying part of what builds on itself would leave a
//! resource half-changed or make a later change fail, so a held change holds more: every
//! change to the same resource in its account and region (an instance swap is held
//! whole), the later steps of its runbook there (a runbook's steps build on each other),
//! and the runbooks that `requires:` it there. Of `auto`, `approve` and `report`, the
//! later is the stricter: a group that mixes `approve` and `report` is reported.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::error::{Error, Problems, Result};
use crate::plan::{Change, ChangeKind, Plan};
use crate::runbook::load::source_location;

/// What enforce does with a change.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Apply it now.
    Auto,
    /// Hold it for a person: written to the pending plan.
    Approve,
    /// Leave it and report it (the default).
    #[default]
    Report,
}

impl Mode {
    /// The name a policy uses.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Approve => "approve",
            Mode::Report => "report",
        }
    }
}

/// A policy file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: Spanned<u32>,
    #[serde(default)]
    default: Mode,
    #[serde(default)]
    rules: Vec<Spanned<RuleSpec>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    mode: Mode,
    #[serde(default)]
    runbook: Option<String>,
    #[serde(default)]
    step: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    operation: Option<String>,
    #[serde(default)]
    kind: Option<ChangeKind>,
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    account_tag: Option<Spanned<String>>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    resource_tag: Option<Spanned<String>>,
}

/// One rule: a mode and what it matches.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The mode of the changes it matches.
    pub mode: Mode,
    /// Where it is in the policy file (`file:line:column`), for reports.
    pub at: String,
    runbook: Option<String>,
    step: Option<String>,
    action: Option<String>,
    operation: Option<String>,
    kind: Option<ChangeKind>,
    account: Option<String>,
    account_tag: Option<(String, String)>,
    region: Option<String>,
    resource_tag: Option<(String, String)>,
}

/// An enforcement policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The mode of changes no rule matches.
    pub default: Mode,
    /// The rules, in file order; the last that matches wins.
    pub rules: Vec<Rule>,
}

impl Default for Policy {
    /// Report everything: what `enforce` does without `--policy`.
    fn default() -> Self {
        Self {
            default: Mode::Report,
            rules: Vec::new(),
        }
    }
}

fn tag(
    value: &Spanned<String>,
    field: &str,
    path: &Path,
    problems: &mut Problems,
) -> Option<(String, String)> {
    match value.value.split_once('=') {
        Some((key, tag_value)) if !key.is_empty() => Some((key.to_string(), tag_value.to_string())),
        _ => {
            problems.push(
                Some(source_location(path, &value.referenced)),
                format!("{field} {:?}: expected KEY=VALUE", value.value),
            );
            None
        }
    }
}

impl Policy {
    /// Reads and checks a policy file; every problem is reported with its place.
    pub fn load(path: &Path) -> Result<Self> {
        let text = crate::input::read_text(path, crate::input::MAX_DOCUMENT_BYTES, "policy")?;
        Self::parse(path, &text)
    }

    /// Parses a policy; `path` names it in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let file: PolicyFile = serde_saphyr::from_str(text).map_err(|error| {
            let mut problems = Problems::default();
            let message = error.to_string();
            problems.push(
                Some(error.location().map_or_else(
                    || crate::error::SourceLocation {
                        file: path.to_path_buf(),
                        line: 0,
                        column: 0,
                    },
                    |l| source_location(path, &l),
                )),
                format!(
                    "invalid policy: {} (expected version: 1, default: auto|report|approve, rules: [{{mode, runbook, step, action, operation, kind, account, account_tag, region, resource_tag}}])",
                    message.lines().next().unwrap_or_default()
                ),
            );
            Error::Invalid(problems)
        })?;
        let mut problems = Problems::default();
        if file.version.value != 1 {
            problems.push(
                Some(source_location(path, &file.version.referenced)),
                format!(
                    "policy version {} is not supported: expected 1",
                    file.version.value
                ),
            );
        }
        let mut rules = Vec::new();
        for spec in file.rules {
            let at = source_location(path, &spec.referenced).to_string();
            let rule = spec.value;
            let account_tag = rule
                .account_tag
                .as_ref()
                .and_then(|t| tag(t, "account_tag", path, &mut problems));
            let resource_tag = rule
                .resource_tag
                .as_ref()
                .and_then(|t| tag(t, "resource_tag", path, &mut problems));
            if let Some(account) = &rule.account
                && !(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()))
            {
                problems.push(
                    Some(source_location(path, &spec.referenced)),
                    format!("account {account:?}: expected a 12-digit account id (quote it)"),
                );
            }
            rules.push(Rule {
                mode: rule.mode,
                at,
                runbook: rule.runbook,
                step: rule.step,
                action: rule.action,
                operation: rule.operation,
                kind: rule.kind,
                account: rule.account,
                account_tag,
                region: rule.region,
                resource_tag,
            });
        }
        problems.into_result()?;
        Ok(Self {
            default: file.default,
            rules,
        })
    }

    /// The mode the policy gives one change, alone: the last matching rule's, else the
    /// default.
    pub fn mode_of(&self, change: &Change, account_tags: &BTreeMap<String, String>) -> Mode {
        let tagged = |tags: &BTreeMap<String, String>, want: &Option<(String, String)>| {
            want.as_ref()
                .is_none_or(|(k, v)| tags.get(k).is_some_and(|have| have == v))
        };
        let same = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        self.rules
            .iter()
            .rev()
            .find(|r| {
                same(&r.runbook, &change.runbook)
                    && same(&r.step, &change.step)
                    && same(&r.action, &change.action)
                    && same(&r.operation, &change.call.operation)
                    && r.kind.is_none_or(|k| k == change.kind)
                    && same(&r.account, &change.account_id)
                    && same(&r.region, &change.region)
                    && tagged(account_tags, &r.account_tag)
                    && tagged(&change.resource.tags, &r.resource_tag)
            })
            .map_or(self.default, |r| r.mode)
    }

    /// The mode of every change of `plan` (by index), held together as the module
    /// documentation says.
    pub fn decide(&self, plan: &Plan) -> Vec<Mode> {
        let no_tags = BTreeMap::new();
        let mut modes: Vec<Mode> = plan
            .changes
            .iter()
            .map(|c| {
                let tags = plan
                    .account(&c.account_id)
                    .map_or(&no_tags, |a| &a.target.tags);
                self.mode_of(c, tags)
            })
            .collect();
        let step_rank = |change: &Change| {
            plan.runbooks
                .iter()
                .find(|r| r.id == change.runbook)
                .and_then(|r| r.steps.iter().position(|s| *s == change.step))
                .unwrap_or(usize::MAX)
        };
        let requires: BTreeMap<&str, &[String]> = plan
            .runbooks
            .iter()
            .map(|r| (r.id.as_str(), r.requires.as_slice()))
            .collect();
        // Raise modes until nothing changes: each pass only raises, so it ends.
        loop {
            let before = modes.clone();
            // The same resource in the same account and region: one mode.
            let mut by_resource: BTreeMap<(&str, &str, &str), Mode> = BTreeMap::new();
            for (change, mode) in plan.changes.iter().zip(&modes) {
                let key = (
                    change.account_id.as_str(),
                    change.region.as_str(),
                    change.resource.id.as_str(),
                );
                let entry = by_resource.entry(key).or_insert(*mode);
                *entry = (*entry).max(*mode);
            }
            // A held step holds the runbook's later steps there, and what requires it.
            let mut held: BTreeMap<(&str, &str, &str), (usize, Mode)> = BTreeMap::new();
            for (change, mode) in plan.changes.iter().zip(&modes) {
                if *mode == Mode::Auto {
                    continue;
                }
                let key = (
                    change.account_id.as_str(),
                    change.region.as_str(),
                    change.runbook.as_str(),
                );
                let rank = step_rank(change);
                let entry = held.entry(key).or_insert((rank, *mode));
                if rank < entry.0 {
                    entry.0 = rank;
                }
                entry.1 = entry.1.max(*mode);
            }
            for (change, mode) in plan.changes.iter().zip(modes.iter_mut()) {
                let (account, region) = (change.account_id.as_str(), change.region.as_str());
                *mode = (*mode).max(by_resource[&(account, region, change.resource.id.as_str())]);
                if let Some((rank, held_mode)) =
                    held.get(&(account, region, change.runbook.as_str()))
                    && step_rank(change) > *rank
                {
                    *mode = (*mode).max(*held_mode);
                }
                for needed in requires
                    .get(change.runbook.as_str())
                    .copied()
                    .unwrap_or_default()
                {
                    if let Some((_, held_mode)) = held.get(&(account, region, needed.as_str())) {
                        *mode = (*mode).max(*held_mode);
                    }
                }
            }
            if modes == before {
                return modes;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn change(runbook: &str, step: &str, resource: &str, operation: &str) -> Change {
        serde_json::from_value(json!({
            "id": format!("111111111111/{runbook}/us-east-1/{step}/{resource}#1"),
            "runbook": runbook, "account_id": "111111111111", "region": "us-east-1",
            "step": step, "action": "a", "kind": "update", "summary": "",
            "resource": {"kind": "ec2:instance", "id": resource, "tags": {"team": "web"}},
            "before": null, "after": null, "on_failure": "stop",
            "call": {"service": "ec2", "operation": operation, "input": {}}
        }))
        .expect("a change")
    }

    fn plan(changes: Vec<Change>) -> Plan {
        serde_json::from_value(json!({
            "format_version": crate::plan::PLAN_FORMAT_VERSION, "harden_version": "t",
            "created_at": "2026-12-01T00:00:00Z", "principal": "p",
            "accounts": [{"id": "111111111111", "principal": "p", "regions": ["us-east-1"], "tags": {"env": "sandbox"}}],
            "runbooks": [
                {"id": "ebs", "title": "", "path": "", "digest": "", "controls": [], "steps": ["default", "swap", "clean"], "parameters": {}, "compliant": {}},
                {"id": "egress", "title": "", "path": "", "digest": "", "controls": [], "steps": ["restrict"], "parameters": {}, "compliant": {}},
                {"id": "after-ebs", "title": "", "path": "", "digest": "", "controls": [], "steps": ["go"], "requires": ["ebs"], "parameters": {}, "compliant": {}}
            ],
            "changes": changes, "blocked": []
        }))
        .expect("a plan")
    }

    fn policy(text: &str) -> Policy {
        Policy::parse(Path::new("p.yaml"), text).expect("valid policy")
    }

    #[test]
    fn the_last_matching_rule_wins_and_the_default_covers_the_rest() {
        let policy = policy(
            "version: 1\ndefault: report\nrules:\n  - {mode: auto, account_tag: env=sandbox}\n  - {mode: approve, operation: StopInstances}\n  - {mode: report, resource_tag: team=db}\n",
        );
        let tags = BTreeMap::from([("env".to_string(), "sandbox".to_string())]);
        assert_eq!(
            policy.mode_of(
                &change("egress", "restrict", "sg-1", "ModifySecurityGroupRules"),
                &tags
            ),
            Mode::Auto
        );
        assert_eq!(
            policy.mode_of(&change("ebs", "swap", "i-1", "StopInstances"), &tags),
            Mode::Approve
        );
        assert_eq!(
            policy.mode_of(
                &change("egress", "restrict", "sg-1", "ModifySecurityGroupRules"),
                &BTreeMap::new()
            ),
            Mode::Report,
            "no rule matches a production account: the default"
        );
    }

    #[test]
    fn a_held_change_holds_its_resource_its_runbooks_later_steps_and_what_requires_it() {
        let policy = policy(
            "version: 1\ndefault: auto\nrules:\n  - {mode: approve, operation: StopInstances}\n",
        );
        let plan = plan(vec![
            change(
                "ebs",
                "default",
                "us-east-1",
                "EnableEbsEncryptionByDefault",
            ),
            change("ebs", "swap", "i-1", "StopInstances"),
            change("ebs", "swap", "i-1", "CreateSnapshot"),
            change("ebs", "swap", "i-2", "CreateSnapshot"),
            change("ebs", "clean", "vol-1", "DeleteSnapshot"),
            change("egress", "restrict", "sg-1", "ModifySecurityGroupRules"),
            change("after-ebs", "go", "x", "CreateTags"),
        ]);
        assert_eq!(
            policy.decide(&plan),
            [
                Mode::Auto,    // an earlier step is not held back
                Mode::Approve, // the stop
                Mode::Approve, // the same instance's swap, whole
                Mode::Auto,    // another instance of the same step
                Mode::Approve, // a later step of the runbook
                Mode::Auto,    // another runbook
                Mode::Approve, // requires the held runbook
            ]
        );
    }

    #[test]
    fn bad_policies_are_located() {
        let problems = |text: &str| match Policy::parse(Path::new("p.yaml"), text) {
            Err(Error::Invalid(found)) => {
                found.0.iter().map(ToString::to_string).collect::<Vec<_>>()
            }
            other => vec![format!("unexpected: {other:?}")],
        };
        assert_eq!(
            problems("version: 2\nrules:\n  - {mode: auto, account_tag: sandbox}\n"),
            [
                "p.yaml:1:10: policy version 2 is not supported: expected 1",
                "p.yaml:3:31: account_tag \"sandbox\": expected KEY=VALUE",
            ]
        );
        let unknown = problems("version: 1\nrules:\n  - {mode: sometimes}\n");
        assert_eq!(unknown.len(), 1);
        assert!(
            unknown[0].starts_with("p.yaml:3:") && unknown[0].contains("invalid policy"),
            "{unknown:?}"
        );
    }
}
