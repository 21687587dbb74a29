//! Showing a plan to people, Terraform-style (`+` create, `~` update, `-` delete,
//! `-/+` replace), with a summary line per runbook and one for the plan.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::{ChangeKind, Plan, Probe};

/// Counts of changes by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// `+`.
    pub create: usize,
    /// `~`.
    pub update: usize,
    /// `-`.
    pub delete: usize,
    /// `-/+`.
    pub replace: usize,
    /// Blocked.
    pub blocked: usize,
    /// Found compliant.
    pub compliant: usize,
}

impl Counts {
    fn add(&mut self, kind: ChangeKind) {
        match kind {
            ChangeKind::Create => self.create += 1,
            ChangeKind::Update => self.update += 1,
            ChangeKind::Delete => self.delete += 1,
            ChangeKind::Replace => self.replace += 1,
            ChangeKind::NoOp => {}
        }
    }

    fn merge(&mut self, other: &Counts) {
        self.create += other.create;
        self.update += other.update;
        self.delete += other.delete;
        self.replace += other.replace;
        self.blocked += other.blocked;
    }

    fn total(&self) -> usize {
        self.create + self.update + self.delete + self.replace
    }

    fn describe(&self) -> String {
        let mut text = format!(
            "{} to create, {} to update, {} to delete",
            self.create, self.update, self.delete
        );
        if self.replace > 0 {
            let _ = write!(text, ", {} to replace", self.replace);
        }
        if self.blocked > 0 {
            let _ = write!(text, ", {} blocked", self.blocked);
        }
        text
    }
}

fn probe_text(probe: &Probe) -> String {
    match probe {
        Probe::WouldSucceed => "dry-run: would succeed (DryRunOperation)".into(),
        Probe::Unauthorized { message } => format!("dry-run: UNAUTHORIZED: {message}"),
        Probe::Failed { code, message } => format!("dry-run: would fail: {code}: {message}"),
        Probe::NotSupported => "dry-run: not probed (the service has no dry-run)".into(),
        Probe::NotProbed { reason } => format!("dry-run: not probed ({reason})"),
    }
}

/// One compact line for a value: `key=value` pairs for objects (nested keys dotted),
/// the value itself otherwise.
fn compact(value: &Value) -> String {
    fn pairs(prefix: &str, value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, item) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    pairs(&path, item, out);
                }
            }
            Value::Null => {}
            Value::String(s) if s.contains(' ') || s.is_empty() => {
                out.push(format!("{prefix}={s:?}"))
            }
            Value::String(s) => out.push(format!("{prefix}={s}")),
            other => out.push(format!("{prefix}={other}")),
        }
    }
    match value {
        Value::Object(_) => {}
        Value::String(s) => return s.clone(),
        other => return other.to_string(),
    }
    let mut out = Vec::new();
    pairs("", value, &mut out);
    if out.is_empty() {
        value.to_string()
    } else {
        out.join(" ")
    }
}

/// What a change does to its resource's state, Terraform-style: only the fields that
/// change, nested fields dotted (`volumes.vol-1.state ~ in-use -> available`); for a
/// list, `- ` what goes and `+ ` what comes (one entry a line); for a field that
/// appears or disappears, `+ ` or `- ` with its value.
pub fn state_diff(before: &Value, after: &Value) -> Vec<String> {
    fn walk(path: &str, old: &Value, new: &Value, lines: &mut Vec<String>) {
        if old == new {
            return;
        }
        match (old, new) {
            (Value::Object(b), Value::Object(a)) => {
                // Fields of the before first, then any only the after has, each once.
                let mut seen = std::collections::BTreeSet::new();
                for key in b.keys().chain(a.keys()).filter(|k| seen.insert(*k)) {
                    let nested = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    walk(
                        &nested,
                        b.get(key).unwrap_or(&Value::Null),
                        a.get(key).unwrap_or(&Value::Null),
                        lines,
                    );
                }
            }
            (Value::Array(old), Value::Array(new)) => {
                for gone in old.iter().filter(|v| !new.contains(v)) {
                    lines.push(format!("{path} - {}", compact(gone)));
                }
                for came in new.iter().filter(|v| !old.contains(v)) {
                    lines.push(format!("{path} + {}", compact(came)));
                }
            }
            (Value::Null, new) => lines.push(format!("{path} + {}", compact(new))),
            (old, Value::Null) => lines.push(format!("{path} - {}", compact(old))),
            (old, new) => lines.push(format!("{path} ~ {} -> {}", compact(old), compact(new))),
        }
    }
    let mut lines = Vec::new();
    let empty = Value::Object(serde_json::Map::new());
    walk(
        "",
        if before.is_object() { before } else { &empty },
        if after.is_object() { after } else { &empty },
        &mut lines,
    );
    lines
}

/// Renders the plan for a terminal: what it could not cover first, then per account
/// and region each runbook's changes and blocks, then the totals per runbook and for
/// the plan.
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    let regions = plan.regions();
    let _ = writeln!(
        out,
        "harden plan of {} account(s) in {} (planned as {})",
        plan.accounts.len(),
        regions.join(", "),
        plan.principal
    );
    if plan.is_partial() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "INCOMPLETE PLAN: {} account(s) not reached and {} runbook-region(s) not planned; nothing is known of them and apply leaves them out:",
            plan.unreachable.len(),
            plan.not_planned.len()
        );
        for account in &plan.unreachable {
            let _ = writeln!(
                out,
                "  ? account {}: not reached: {}",
                label(&account.id, account.name.as_deref()),
                account.reason
            );
        }
        for left in &plan.not_planned {
            let _ = writeln!(
                out,
                "  ? {} in {}, {}: {}",
                left.runbook,
                account_label(plan, &left.account_id),
                left.region,
                left.reason
            );
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Runbooks, in apply order:");
    for runbook in &plan.runbooks {
        let controls = runbook
            .controls
            .iter()
            .map(|c| format!("{} {}", c.framework, c.id))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = write!(out, "  {}: {}", runbook.id, runbook.title);
        if !controls.is_empty() {
            let _ = write!(out, " [{controls}]");
        }
        let _ = writeln!(out);
    }
    let mut per_runbook: BTreeMap<&str, Counts> = BTreeMap::new();
    for account in &plan.accounts {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "account {} (as {})",
            label(&account.id, account.name.as_deref()),
            account.principal
        );
        for region in &account.regions {
            let _ = writeln!(out, "  {region}");
            for runbook in &plan.runbooks {
                let here =
                    |r: &str, a: &str, g: &str| r == runbook.id && a == account.id && g == region;
                if let Some(left) = plan
                    .not_planned
                    .iter()
                    .find(|n| here(&n.runbook, &n.account_id, &n.region))
                {
                    let _ = writeln!(out, "    {}: NOT PLANNED: {}", runbook.id, left.reason);
                    continue;
                }
                let changes: Vec<&super::Change> = plan
                    .changes
                    .iter()
                    .filter(|c| here(&c.runbook, &c.account_id, &c.region))
                    .collect();
                let blocked: Vec<&super::Blocked> = plan
                    .blocked
                    .iter()
                    .filter(|b| here(&b.runbook, &b.account_id, &b.region))
                    .collect();
                let compliant = runbook
                    .compliant
                    .get(&account.id)
                    .and_then(|r| r.get(region))
                    .copied()
                    .unwrap_or(0);
                let mut counts = Counts::default();
                for change in &changes {
                    counts.add(change.kind);
                }
                counts.blocked = blocked.len();
                let totals = per_runbook.entry(runbook.id.as_str()).or_default();
                totals.merge(&counts);
                totals.compliant += compliant;
                if changes.is_empty() && blocked.is_empty() {
                    let _ = writeln!(
                        out,
                        "    {}: no changes; {compliant} compliant.",
                        runbook.id
                    );
                    continue;
                }
                let _ = writeln!(out, "    {}", runbook.id);
                render_changes(&mut out, &changes);
                for b in &blocked {
                    let _ = writeln!(
                        out,
                        "      ! {} blocked, {}: {}",
                        b.resource, b.reason, b.detail
                    );
                }
                let _ = writeln!(out, "      {}; {compliant} compliant.", counts.describe());
            }
        }
    }
    let probed: Vec<&Probe> = plan
        .changes
        .iter()
        .filter_map(|c| c.probe.as_ref())
        .collect();
    if !probed.is_empty() {
        let sent = probed
            .iter()
            .filter(|p| !matches!(p, Probe::NotSupported | Probe::NotProbed { .. }))
            .count();
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Dry-run: {sent} of {} change(s) probed with DryRun=true; services without dry-run: {}.",
            plan.changes.len(),
            if plan.unprobed_services.is_empty() {
                "none".to_string()
            } else {
                plan.unprobed_services.join(", ")
            }
        );
    }
    let _ = writeln!(out);
    let mut totals = Counts::default();
    for runbook in &plan.runbooks {
        let counts = per_runbook
            .get(runbook.id.as_str())
            .copied()
            .unwrap_or_default();
        totals.merge(&counts);
        let left_out = plan
            .not_planned
            .iter()
            .filter(|n| n.runbook == runbook.id)
            .count();
        let _ = write!(
            out,
            "{}: {}; {} compliant",
            runbook.id,
            counts.describe(),
            counts.compliant
        );
        if left_out > 0 {
            let _ = write!(out, "; not planned in {left_out} account-region(s)");
        }
        let _ = writeln!(out, ".");
    }
    if plan.is_partial() {
        let _ = writeln!(
            out,
            "Incomplete: {} account(s) not reached, {} runbook-region(s) not planned (listed at the top).",
            plan.unreachable.len(),
            plan.not_planned.len()
        );
    }
    if totals.total() == 0 && plan.is_partial() {
        let _ = writeln!(out, "No changes in what was planned.");
    } else if totals.total() == 0 {
        let _ = write!(out, "No changes. The accounts match the runbooks");
        if totals.blocked > 0 {
            let _ = write!(
                out,
                " except {} blocked change(s) shown above",
                totals.blocked
            );
        }
        let _ = writeln!(out, ".");
    } else {
        let _ = writeln!(out, "Plan: {}.", totals.describe());
    }
    out
}

/// An account as people name it: `dev (111111111111)`, or the id alone.
fn label(id: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{name} ({id})"),
        None => id.to_string(),
    }
}

fn account_label(plan: &Plan, id: &str) -> String {
    label(id, plan.account(id).and_then(|a| a.name.as_deref()))
}

/// One account-region's changes of one runbook, resource by resource.
fn render_changes(out: &mut String, changes: &[&super::Change]) {
    let mut by_resource: BTreeMap<&str, Vec<&super::Change>> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for change in changes {
        let key = change.resource.id.as_str();
        if !by_resource.contains_key(key) {
            order.push(key);
        }
        by_resource.entry(key).or_default().push(change);
    }
    for key in order {
        let changes = &by_resource[key];
        let first = changes[0];
        let symbol = if changes.iter().all(|c| c.kind == first.kind) {
            first.kind.symbol()
        } else {
            ChangeKind::Update.symbol()
        };
        let _ = writeln!(out, "      {symbol} {}", first.resource);
        for change in changes {
            let _ = writeln!(
                out,
                "          {} {}  [step {}]",
                change.kind.symbol(),
                change.summary,
                change.step
            );
            for line in state_diff(&change.before, &change.after) {
                let _ = writeln!(out, "            {line}");
            }
            let _ = writeln!(
                out,
                "            call {}:{} {}",
                change.call.service, change.call.operation, change.call.input
            );
            if let Some(probe) = &change.probe {
                let _ = writeln!(out, "            {}", probe_text(probe));
            }
        }
    }
}

/// Renders the plan as its versioned JSON document (the saved-plan format).
pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(plan).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_diff_names_what_goes_and_what_comes() {
        let before = json!({"ingress": [], "egress": [
            {"rule_id": "sgr-1", "protocol": "-1", "peer": {"cidr": "0.0.0.0/0"}, "description": null},
            {"rule_id": "sgr-2", "protocol": "tcp", "from_port": 5432, "to_port": 5432, "peer": {"cidr": "10.0.0.0/8"}, "description": null}]});
        let after = json!({"ingress": [], "egress": [
            {"rule_id": "sgr-1", "protocol": "tcp", "from_port": 443, "to_port": 443, "peer": {"cidr": "0.0.0.0/0"}, "description": "HTTPS out"},
            {"rule_id": "sgr-2", "protocol": "tcp", "from_port": 5432, "to_port": 5432, "peer": {"cidr": "10.0.0.0/8"}, "description": null}]});
        assert_eq!(
            state_diff(&before, &after),
            vec![
                "egress - rule_id=sgr-1 protocol=-1 peer.cidr=0.0.0.0/0".to_string(),
                "egress + rule_id=sgr-1 protocol=tcp from_port=443 to_port=443 peer.cidr=0.0.0.0/0 description=\"HTTPS out\"".to_string(),
            ]
        );
        assert_eq!(
            state_diff(
                &json!({"region": "eu-west-1", "enabled": false}),
                &json!({"region": "eu-west-1", "enabled": true})
            ),
            vec!["enabled ~ false -> true".to_string()]
        );
    }
}
