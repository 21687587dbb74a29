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

/// Renders the plan for a terminal.
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "harden plan for account {} in {} (as {})",
        plan.account_id,
        plan.regions.join(", "),
        plan.principal
    );
    if plan.is_partial() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "INCOMPLETE PLAN: {} runbook-region(s) could not be planned; nothing is known of them and apply leaves them out:",
            plan.not_planned.len()
        );
        for left in &plan.not_planned {
            let _ = writeln!(
                out,
                "  ? {} ({}): {}",
                left.runbook, left.region, left.reason
            );
        }
    }
    let mut totals = Counts::default();
    for runbook in &plan.runbooks {
        let controls = runbook
            .controls
            .iter()
            .map(|c| format!("{} {}", c.framework, c.id))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(out);
        let _ = write!(out, "runbook {}: {}", runbook.id, runbook.title);
        if !controls.is_empty() {
            let _ = write!(out, " [{controls}]");
        }
        let _ = writeln!(out);
        let mut counts = Counts::default();
        let mut by_resource: BTreeMap<(&str, &str), Vec<&super::Change>> = BTreeMap::new();
        let mut order: Vec<(&str, &str)> = Vec::new();
        for change in plan.changes.iter().filter(|c| c.runbook == runbook.id) {
            let key = (change.region.as_str(), change.resource.id.as_str());
            if !by_resource.contains_key(&key) {
                order.push(key);
            }
            by_resource.entry(key).or_default().push(change);
            counts.add(change.kind);
        }
        for key in order {
            let changes = &by_resource[&key];
            let first = changes[0];
            let symbol = if changes.iter().all(|c| c.kind == first.kind) {
                first.kind.symbol()
            } else {
                ChangeKind::Update.symbol()
            };
            let _ = writeln!(out, "  {symbol} {} ({})", first.resource, first.region);
            for change in changes {
                let _ = writeln!(
                    out,
                    "      {} {}  [step {}]",
                    change.kind.symbol(),
                    change.summary,
                    change.step
                );
                for line in state_diff(&change.before, &change.after) {
                    let _ = writeln!(out, "        {line}");
                }
                let _ = writeln!(
                    out,
                    "        call {}:{} {}",
                    change.call.service, change.call.operation, change.call.input
                );
                if let Some(probe) = &change.probe {
                    let _ = writeln!(out, "        {}", probe_text(probe));
                }
            }
        }
        for blocked in plan.blocked.iter().filter(|b| b.runbook == runbook.id) {
            counts.blocked += 1;
            let _ = writeln!(
                out,
                "  ! {} ({}) blocked, {}: {}",
                blocked.resource, blocked.region, blocked.reason, blocked.detail
            );
        }
        let compliant: usize = runbook.compliant.values().sum();
        let left_out: Vec<&str> = plan
            .not_planned
            .iter()
            .filter(|n| n.runbook == runbook.id)
            .map(|n| n.region.as_str())
            .collect();
        if left_out.len() == plan.regions.len() && counts.total() + counts.blocked == 0 {
            let _ = writeln!(out, "  {}: not planned anywhere (see the top).", runbook.id);
        } else {
            let _ = write!(
                out,
                "  {}: {}; {} compliant",
                runbook.id,
                counts.describe(),
                compliant
            );
            if left_out.is_empty() {
                let _ = writeln!(out, ".");
            } else {
                let _ = writeln!(out, "; not planned in {}.", left_out.join(", "));
            }
        }
        totals.create += counts.create;
        totals.update += counts.update;
        totals.delete += counts.delete;
        totals.replace += counts.replace;
        totals.blocked += counts.blocked;
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
    if plan.is_partial() {
        let _ = writeln!(
            out,
            "Incomplete: {} runbook-region(s) not planned (listed at the top).",
            plan.not_planned.len()
        );
    }
    if totals.total() == 0 && plan.is_partial() {
        let _ = writeln!(out, "No changes in what was planned.");
    } else if totals.total() == 0 {
        let _ = write!(out, "No changes. The account matches the runbooks");
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
