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

/// What a change does to its resource's state, Terraform-style: only what changes,
/// nested fields dotted (`volumes.vol-1.state ~ in-use -> available`). Lists of objects
/// that carry an identity (`Sid`, `name`, `id`, `rule_id`, ...) are matched by it, so a
/// changed element shows only its changed fields (`trails[main].is_logging ~ false ->
/// true`), and an element that comes or goes is shown whole, as indented JSON under a
/// `+ ` or `- ` line. A string holding a JSON document (a bucket or queue policy) is
/// compared as that document. Other list elements are `- ` what goes, `+ ` what comes.
pub fn state_diff(before: &Value, after: &Value) -> Vec<String> {
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

/// The fields that name a list element, in the order they are tried.
const IDENTITIES: [&str; 7] = ["Sid", "name", "id", "rule_id", "arn", "Name", "key"];

/// The identity field every element of both lists has, uniquely, if one does.
fn identity<'a>(old: &'a [Value], new: &'a [Value]) -> Option<&'static str> {
    IDENTITIES.into_iter().find(|field| {
        let ids = |list: &'a [Value]| -> Option<Vec<&'a Value>> {
            list.iter()
                .map(|v| v.get(*field).filter(|id| id.is_string() || id.is_number()))
                .collect()
        };
        let unique = |ids: &[&Value]| {
            let mut seen = std::collections::BTreeSet::new();
            ids.iter().all(|id| seen.insert(id.to_string()))
        };
        matches!((ids(old), ids(new)), (Some(a), Some(b)) if !(a.is_empty() && b.is_empty()) && unique(&a) && unique(&b))
    })
}

fn element_label(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON document held in a string (policies are stored that way), parsed.
fn document(value: &Value) -> Option<Value> {
    let text = value.as_str()?.trim_start();
    if !(text.starts_with('{') || text.starts_with('[')) {
        return None;
    }
    serde_json::from_str(text).ok()
}

/// A whole element that comes or goes: one line when it reads on one, else (and always
/// for a policy statement, which a reviewer reads as IAM writes it) indented JSON.
fn whole(path: &str, sign: char, value: &Value, lines: &mut Vec<String>) {
    let line = compact(value);
    let structured = matches!(value, Value::Object(_) | Value::Array(_));
    match value {
        _ if structured && (line.len() > 100 || path.contains("Statement")) => {
            lines.push(format!("{path} {sign}"));
            let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
            lines.extend(pretty.lines().map(|l| format!("    {sign} {l}")));
        }
        _ => lines.push(format!("{path} {sign} {line}")),
    }
}

fn walk(path: &str, old: &Value, new: &Value, lines: &mut Vec<String>) {
    if old == new {
        return;
    }
    let nested = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (old, new) {
        (Value::Object(b), Value::Object(a)) => {
            // Fields of the before first, then any only the after has, each once.
            let mut seen = std::collections::BTreeSet::new();
            for key in b.keys().chain(a.keys()).filter(|k| seen.insert(*k)) {
                walk(
                    &nested(key),
                    b.get(key).unwrap_or(&Value::Null),
                    a.get(key).unwrap_or(&Value::Null),
                    lines,
                );
            }
        }
        (Value::Array(old), Value::Array(new)) => match identity(old, new) {
            Some(field) => {
                let find = |list: &'_ [Value], id: &Value| {
                    list.iter().find(|v| v.get(field) == Some(id)).cloned()
                };
                for gone in old.iter().filter(|v| find(new, &v[field]).is_none()) {
                    whole(
                        &format!("{path}[{}]", element_label(&gone[field])),
                        '-',
                        gone,
                        lines,
                    );
                }
                for item in new {
                    let at = format!("{path}[{}]", element_label(&item[field]));
                    match find(old, &item[field]) {
                        Some(before) => walk(&at, &before, item, lines),
                        None => whole(&at, '+', item, lines),
                    }
                }
            }
            None => {
                for gone in old.iter().filter(|v| !new.contains(v)) {
                    lines.push(format!("{path} - {}", compact(gone)));
                }
                for came in new.iter().filter(|v| !old.contains(v)) {
                    lines.push(format!("{path} + {}", compact(came)));
                }
            }
        },
        (Value::String(_), Value::String(_))
            if document(old).is_some() && document(new).is_some() =>
        {
            walk(
                path,
                &document(old).unwrap_or_default(),
                &document(new).unwrap_or_default(),
                lines,
            );
        }
        (Value::Null, new) => match document(new) {
            Some(doc) => whole(path, '+', &doc, lines),
            None if new.is_object() => whole(path, '+', new, lines),
            None => lines.push(format!("{path} + {}", compact(new))),
        },
        (old, Value::Null) => match document(old) {
            Some(doc) => whole(path, '-', &doc, lines),
            None if old.is_object() => whole(path, '-', old, lines),
            None => lines.push(format!("{path} - {}", compact(old))),
        },
        (old, new) => lines.push(format!("{path} ~ {} -> {}", compact(old), compact(new))),
    }
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
    let by_place = plan.by_place();
    for planned in &plan.accounts {
        let account = &planned.target;
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "account {} (as {})",
            label(&account.id, account.name.as_deref()),
            planned.principal
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
                let changes: Vec<&super::Change> = by_place
                    .changes(&account.id, region, &runbook.id)
                    .iter()
                    .map(|i| &plan.changes[*i])
                    .collect();
                let blocked: Vec<&super::Blocked> = by_place
                    .blocked(&account.id, region, &runbook.id)
                    .iter()
                    .map(|i| &plan.blocked[*i])
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
    label(id, plan.account(id).and_then(|a| a.target.name.as_deref()))
}

/// One account-region's changes of one runbook, resource by resource.
fn render_changes(out: &mut String, changes: &[&super::Change]) {
    let mut by_resource: BTreeMap<(crate::inventory::ResourceKind, &str), Vec<&super::Change>> =
        BTreeMap::new();
    let mut order: Vec<(crate::inventory::ResourceKind, &str)> = Vec::new();
    for change in changes {
        let key = (change.resource.kind, change.resource.id.as_str());
        if !by_resource.contains_key(&key) {
            order.push(key);
        }
        by_resource.entry(key).or_default().push(change);
    }
    for key in order {
        let changes = &by_resource[&key];
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

/// What a line of the text plan does, by its sign: `+` (green), `-` (red), `~` or
/// `-/+` (yellow), or nothing.
fn sign_of(line: &str) -> Option<&'static str> {
    let trimmed = line.trim_start();
    let first = trimmed.split_whitespace().next()?;
    let second = trimmed.split_whitespace().nth(1);
    let sign = |word: &str| match word {
        "+" => Some("+"),
        "-" => Some("-"),
        "~" | "-/+" => Some("~"),
        _ => None,
    };
    // Resource and change headers start with their sign, diff lines have it after the
    // path (`egress[sgr-1] - ...`).
    sign(first).or_else(|| second.and_then(sign))
}

/// The text plan with its signs in colour (ANSI), for a terminal that wants colour.
pub fn coloured(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for line in text.lines() {
        let colour = match sign_of(line) {
            Some("+") => Some("32"),
            Some("-") => Some("31"),
            Some(_) => Some("33"),
            None if line.trim_start().starts_with('!') => Some("35"),
            None => None,
        };
        match colour {
            Some(code) => {
                let _ = writeln!(out, "\x1b[{code}m{line}\x1b[0m");
            }
            None => {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    out
}

/// The plan as one self-contained HTML page for a reviewer: the text plan, each line
/// coloured by its sign (no script, no external asset).
pub fn html(plan: &Plan) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>harden plan</title><style>body{font:14px system-ui,sans-serif;margin:2rem}pre{font:12.5px/1.5 ui-monospace,SFMono-Regular,Menlo,monospace;background:#f6f8fa;padding:1rem;border-radius:6px;overflow-x:auto}.add{color:#1a7f37}.del{color:#cf222e}.chg{color:#9a6700}.blk{color:#8250df}</style></head><body>\n<h1>harden plan</h1>\n<pre>",
    );
    for line in text(plan).lines() {
        let class = match sign_of(line) {
            Some("+") => Some("add"),
            Some("-") => Some("del"),
            Some(_) => Some("chg"),
            None if line.trim_start().starts_with('!') => Some("blk"),
            None => None,
        };
        let escaped = handlebars::html_escape(line);
        match class {
            Some(class) => {
                let _ = writeln!(out, "<span class=\"{class}\">{escaped}</span>");
            }
            None => {
                let _ = writeln!(out, "{escaped}");
            }
        }
    }
    out.push_str("</pre>\n</body></html>\n");
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
        // The rule keeps its id: only what changes in it is shown.
        assert_eq!(
            state_diff(&before, &after),
            vec![
                "egress[sgr-1].protocol ~ -1 -> tcp".to_string(),
                "egress[sgr-1].description + HTTPS out".to_string(),
                "egress[sgr-1].from_port + 443".to_string(),
                "egress[sgr-1].to_port + 443".to_string(),
            ]
        );
        // A rule that goes is named whole, on one line.
        let closed = json!({"ingress": [], "egress": [after["egress"][1].clone()]});
        assert_eq!(
            state_diff(&after, &closed),
            vec!["egress[sgr-1] - rule_id=sgr-1 protocol=tcp from_port=443 to_port=443 peer.cidr=0.0.0.0/0 description=\"HTTPS out\"".to_string()]
        );
        assert_eq!(
            state_diff(
                &json!({"region": "eu-west-1", "enabled": false}),
                &json!({"region": "eu-west-1", "enabled": true})
            ),
            vec!["enabled ~ false -> true".to_string()]
        );
    }

    #[test]
    fn signs_are_coloured_and_the_rest_is_not() {
        let text = "      ~ ec2:security-group sg-1\n            egress[sgr-1] - rule_id=sgr-1\n            egress[sgr-2].protocol ~ -1 -> tcp\n    runbook: no changes\n";
        assert_eq!(
            coloured(text),
            "\x1b[33m      ~ ec2:security-group sg-1\x1b[0m\n\x1b[31m            egress[sgr-1] - rule_id=sgr-1\x1b[0m\n\x1b[33m            egress[sgr-2].protocol ~ -1 -> tcp\x1b[0m\n    runbook: no changes\n"
        );
    }

    #[test]
    fn a_changed_trail_shows_only_what_changes_and_a_policy_its_statements() {
        let trail = |logging: bool| {
            json!({"name": "main", "home_region": "us-east-1", "is_multi_region": true,
                   "is_logging": logging, "bucket": "logs"})
        };
        assert_eq!(
            state_diff(
                &json!({"trails": [trail(false), {"name": "other", "is_logging": true}]}),
                &json!({"trails": [trail(true), {"name": "other", "is_logging": true}]})
            ),
            vec!["trails[main].is_logging ~ false -> true".to_string()]
        );
        let policy = |statements: Value| json!({"policy": serde_json::to_string(&json!({"Version": "2012-10-17", "Statement": statements})).expect("json")});
        let write = json!({"Sid": "Write", "Effect": "Allow", "Action": "s3:PutObject",
                           "Condition": {"StringEquals": {"aws:SourceArn": "arn:old"}}});
        let mut changed = write.clone();
        changed["Condition"]["StringEquals"]["aws:SourceArn"] = json!("arn:new");
        let tls = json!({"Sid": "TLS", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
                         "Condition": {"Bool": {"aws:SecureTransport": "false"}}});
        assert_eq!(
            state_diff(&policy(json!([write])), &policy(json!([changed, tls]))),
            vec![
                "policy.Statement[Write].Condition.StringEquals.aws:SourceArn ~ arn:old -> arn:new",
                "policy.Statement[TLS] +",
                "    + {",
                "    +   \"Sid\": \"TLS\",",
                "    +   \"Effect\": \"Deny\",",
                "    +   \"Principal\": \"*\",",
                "    +   \"Action\": \"s3:*\",",
                "    +   \"Condition\": {",
                "    +     \"Bool\": {",
                "    +       \"aws:SecureTransport\": \"false\"",
                "    +     }",
                "    +   }",
                "    + }",
            ]
        );
    }
}
