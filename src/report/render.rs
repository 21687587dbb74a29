//! Showing a report: a table for a terminal, versioned JSON for pipelines, and one
//! self-contained HTML page for a person (summary first, then each account; no script,
//! no external asset).

use std::fmt::Write as _;

use comfy_table::Table;
use handlebars::html_escape;

use super::{AccountReport, Report, Status, Totals};

/// The report as a table per account: one row per region and runbook.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", headline(report));
    let _ = writeln!(out, "{}", totals_line(&report.summary));
    for account in &report.accounts {
        let _ = writeln!(out);
        let _ = writeln!(out, "account {}", account_label(account));
        if let Some(why) = &account.unreachable {
            let _ = writeln!(out, "  NOT REACHED: {why}");
            continue;
        }
        let mut table = Table::new();
        table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
        table.set_header([
            "region",
            "runbook",
            "controls",
            "status",
            "compliant",
            "fixed",
            "drift",
            "approval",
            "blocked",
            "failed",
        ]);
        for region in &account.regions {
            for runbook in &region.runbooks {
                table.add_row([
                    region.region.clone(),
                    runbook.runbook.clone(),
                    controls(runbook),
                    runbook.status.label().to_string(),
                    runbook.compliant.to_string(),
                    runbook.fixed.len().to_string(),
                    runbook.drift.len().to_string(),
                    runbook.awaiting_approval.len().to_string(),
                    runbook.blocked.len().to_string(),
                    runbook.failed.len().to_string(),
                ]);
            }
        }
        let _ = writeln!(out, "{table}");
        for region in &account.regions {
            for runbook in &region.runbooks {
                let place = format!("{} {}", region.region, runbook.runbook);
                if let Some(why) = &runbook.not_planned {
                    let _ = writeln!(out, "  not planned  {place}: {why}");
                }
                for item in &runbook.failed {
                    let _ = writeln!(
                        out,
                        "  failed       {place} {}: {}",
                        item.resource,
                        item.detail.as_deref().unwrap_or_default()
                    );
                }
                for item in &runbook.awaiting_approval {
                    let _ = writeln!(
                        out,
                        "  approval     {place} {}: {}",
                        item.resource,
                        item.changes.join("; ")
                    );
                }
                for item in &runbook.drift {
                    let _ = writeln!(
                        out,
                        "  drift        {place} {}: {}",
                        item.resource,
                        item.detail
                            .clone()
                            .unwrap_or_else(|| item.changes.join("; "))
                    );
                }
                for item in &runbook.blocked {
                    let _ = writeln!(
                        out,
                        "  blocked      {place} {}: {}",
                        item.resource,
                        item.detail.as_deref().unwrap_or_default()
                    );
                }
            }
        }
    }
    out
}

/// The report as its versioned JSON document (docs/report-format.md).
pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

fn headline(report: &Report) -> String {
    let what = match report.source {
        super::Source::Plan => "plan",
        super::Source::Apply => "apply",
        super::Source::Enforce => "enforce",
    };
    let run = report
        .run_id
        .as_deref()
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    format!(
        "harden compliance report ({what}{run}), planned {} by {}",
        report.planned_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        report.principal
    )
}

fn totals_line(totals: &Totals) -> String {
    format!(
        "{} account(s), {} not reached; {} compliant, {} fixed, {} drift, {} awaiting approval, {} blocked, {} failed, {} not planned.",
        totals.accounts,
        totals.unreachable,
        totals.compliant,
        totals.fixed,
        totals.drift,
        totals.awaiting_approval,
        totals.blocked,
        totals.failed,
        totals.not_planned
    )
}

fn account_label(account: &AccountReport) -> String {
    match &account.name {
        Some(name) => format!("{name} ({})", account.id),
        None => account.id.clone(),
    }
}

fn controls(runbook: &super::RunbookReport) -> String {
    runbook
        .controls
        .iter()
        .map(|c| format!("{} {}", c.framework, c.id))
        .collect::<Vec<_>>()
        .join(", ")
}

fn status_class(status: Status) -> &'static str {
    match status {
        Status::Compliant | Status::Fixed => "good",
        Status::Blocked | Status::AwaitingApproval => "wait",
        Status::Drift => "warn",
        Status::NotPlanned | Status::Failed => "bad",
    }
}

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem;color:#1d232a;background:#fff}
h1{font-size:1.4rem;margin:0 0 .25rem}h2{font-size:1.1rem;margin:2rem 0 .5rem}
.meta{color:#5b6570;margin:0 0 1.25rem}
.cards{display:flex;flex-wrap:wrap;gap:.75rem;margin:0 0 1rem}
.card{border:1px solid #d8dde3;border-radius:8px;padding:.6rem .9rem;min-width:7.5rem}
.card .n{font-size:1.6rem;font-weight:600;display:block}
.card.good .n{color:#1a7f37}.card.warn .n{color:#9a6700}.card.bad .n{color:#cf222e}.card.wait .n{color:#0969da}
.verdict{font-weight:600;padding:.5rem .9rem;border-radius:6px;display:inline-block;margin-bottom:1rem}
.verdict.good{background:#dafbe1}.verdict.warn{background:#fff8c5}.verdict.bad{background:#ffebe9}
table{border-collapse:collapse;width:100%;margin:.25rem 0 1rem}
th,td{border-bottom:1px solid #e4e8ec;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}td:nth-child(-n+2){white-space:nowrap}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{border-radius:10px;padding:.05rem .5rem;font-size:.85em;white-space:nowrap}
.badge.good{background:#dafbe1;color:#1a7f37}.badge.warn{background:#fff8c5;color:#7d4e00}
.badge.bad{background:#ffebe9;color:#a40e26}.badge.wait{background:#ddf4ff;color:#0550ae}
ul.items{margin:.25rem 0 1rem;padding-left:1.2rem}ul.items li{margin:.15rem 0}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f6f8fa;padding:0 .2rem;border-radius:3px}
";

/// The report as one self-contained HTML page: the verdict and totals first, then each
/// account's table and what needs a person.
pub fn html(report: &Report) -> String {
    let e = |s: &str| html_escape(s);
    let totals = &report.summary;
    let (verdict_class, verdict) = if totals.has_errors() {
        (
            "bad",
            "Errors: some changes failed or some accounts or runbooks could not be covered",
        )
    } else if totals.is_compliant() {
        ("good", "Compliant: nothing is left to do")
    } else {
        ("warn", "Drift left: some resources are not compliant")
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>harden compliance report</title><style>{STYLE}</style></head><body>\n"
    );
    let _ = writeln!(
        out,
        "<h1>harden compliance report</h1><p class=\"meta\">{}</p>",
        e(&headline(report))
    );
    let _ = writeln!(
        out,
        "<div class=\"verdict {verdict_class}\" id=\"verdict\">{}</div>",
        e(verdict)
    );
    let _ = writeln!(out, "<div class=\"cards\" id=\"summary\">");
    for (class, key, label, value) in [
        ("", "accounts", "accounts", totals.accounts),
        ("bad", "unreachable", "not reached", totals.unreachable),
        ("good", "compliant", "compliant", totals.compliant),
        ("good", "fixed", "fixed", totals.fixed),
        ("warn", "drift", "drift", totals.drift),
        (
            "wait",
            "awaiting_approval",
            "awaiting approval",
            totals.awaiting_approval,
        ),
        ("wait", "blocked", "blocked", totals.blocked),
        ("bad", "failed", "failed", totals.failed),
        ("bad", "not_planned", "not planned", totals.not_planned),
    ] {
        let _ = writeln!(
            out,
            "<div class=\"card {class}\" data-total=\"{key}\"><span class=\"n\">{value}</span>{label}</div>"
        );
    }
    let _ = writeln!(out, "</div>");
    for account in &report.accounts {
        let _ = writeln!(
            out,
            "<h2 id=\"account-{}\">Account {}</h2>",
            e(&account.id),
            e(&account_label(account))
        );
        if let Some(why) = &account.unreachable {
            let _ = writeln!(
                out,
                "<p><span class=\"badge bad\">not reached</span> {}</p>",
                e(why)
            );
            continue;
        }
        let _ = writeln!(
            out,
            "<table><thead><tr><th>region</th><th>runbook</th><th>controls</th><th>status</th><th>compliant</th><th>fixed</th><th>drift</th><th>approval</th><th>blocked</th><th>failed</th></tr></thead><tbody>"
        );
        for region in &account.regions {
            for runbook in &region.runbooks {
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td><span class=\"badge {}\">{}</span></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                    e(&region.region),
                    e(&runbook.runbook),
                    e(&controls(runbook)),
                    status_class(runbook.status),
                    runbook.status.label(),
                    runbook.compliant,
                    runbook.fixed.len(),
                    runbook.drift.len(),
                    runbook.awaiting_approval.len(),
                    runbook.blocked.len(),
                    runbook.failed.len()
                );
            }
        }
        let _ = writeln!(out, "</tbody></table>");
        let mut items = String::new();
        for region in &account.regions {
            for runbook in &region.runbooks {
                let place = format!("{} · {}", region.region, runbook.runbook);
                let mut line = |class: &str, label: &str, what: &str, detail: &str| {
                    let _ = writeln!(
                        items,
                        "<li><span class=\"badge {class}\">{label}</span> {} <code>{}</code> {}</li>",
                        e(&place),
                        e(what),
                        e(detail)
                    );
                };
                if let Some(why) = &runbook.not_planned {
                    line("bad", "not planned", "", why);
                }
                for item in &runbook.failed {
                    line(
                        "bad",
                        "failed",
                        &item.resource.to_string(),
                        item.detail.as_deref().unwrap_or_default(),
                    );
                }
                for item in &runbook.awaiting_approval {
                    line(
                        "wait",
                        "awaiting approval",
                        &item.resource.to_string(),
                        &item.changes.join("; "),
                    );
                }
                for item in &runbook.drift {
                    let detail = item
                        .detail
                        .clone()
                        .unwrap_or_else(|| item.changes.join("; "));
                    line("warn", "drift", &item.resource.to_string(), &detail);
                }
                for item in &runbook.blocked {
                    line(
                        "wait",
                        "blocked",
                        &item.resource.to_string(),
                        item.detail.as_deref().unwrap_or_default(),
                    );
                }
            }
        }
        if !items.is_empty() {
            let _ = writeln!(out, "<ul class=\"items\">\n{items}</ul>");
        }
    }
    let _ = writeln!(out, "</body></html>");
    out
}
