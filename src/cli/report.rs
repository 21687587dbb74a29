//! `harden report`: the compliance report of a run (kept in its folder as
//! `report.json`) or of a saved plan, as text, JSON or HTML.

use std::path::{Path, PathBuf};

use super::Status;
use super::args::{GlobalArgs, ReportFormat};
use crate::accounts::Session;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::report::security_hub;
use crate::report::{self, Report, Source, findings, render};

/// The name of a run's report in its folder.
pub const REPORT_FILE: &str = "report.json";

/// The whole plan an enforce run reported on (its `plan.json` is what it applied).
pub const PLANNED_FILE: &str = "planned.json";

/// Keeps a run's report in its folder, for `harden report --run`.
pub fn save(run_dir: &Path, report: &Report) -> Result<()> {
    let path = run_dir.join(REPORT_FILE);
    std::fs::write(&path, render::json(report) + "\n").map_err(|e| Error::io(&path, e))
}

/// Reads a report `save` kept.
fn load(path: &Path) -> Result<Report> {
    let text = crate::input::read_text(path, crate::input::MAX_PLAN_BYTES, "report")?;
    serde_json::from_str(&text).map_err(|e| {
        let mut problems = crate::error::Problems::default();
        problems.push(
            Some(crate::error::SourceLocation {
                file: path.to_path_buf(),
                line: e.line() as u64,
                column: e.column() as u64,
            }),
            format!("not a harden report: {e}"),
        );
        Error::Invalid(problems)
    })
}

/// The partition of the principal that ran harden (`aws` unless its ARN says otherwise).
fn partition(report: &Report) -> &str {
    report
        .principal
        .split(':')
        .nth(1)
        .filter(|p| !p.is_empty())
        .unwrap_or("aws")
}

/// The report in `format`.
pub fn rendered(report: &Report, format: ReportFormat) -> String {
    let pretty = |value: serde_json::Result<String>| {
        value.unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}")) + "\n"
    };
    match format {
        ReportFormat::Text => render::text(report),
        ReportFormat::Json => render::json(report) + "\n",
        ReportFormat::Html => render::html(report),
        ReportFormat::Ocsf => pretty(serde_json::to_string_pretty(&findings::ocsf(report))),
        ReportFormat::Asff => pretty(serde_json::to_string_pretty(&findings::asff(
            report,
            partition(report),
        ))),
    }
}

/// Imports the report's findings into Security Hub: each account's with its session,
/// region by region. Prints what each answered; false when some finding was refused.
pub async fn import_findings(sessions: &[Session], report: &Report) -> Result<bool> {
    let all = findings::asff(report, partition(report));
    let mut clean = true;
    for session in sessions {
        let account = &session.scope.target.id;
        for region in &session.scope.regions {
            let here: Vec<_> = all
                .iter()
                .filter(|f| &f.aws_account_id == account && &f.region == region)
                .cloned()
                .collect();
            if here.is_empty() {
                continue;
            }
            let resolved = here
                .iter()
                .filter(|f| f.workflow_status == "RESOLVED")
                .count();
            let done = security_hub::import(&session.aws.region(region), &here).await?;
            println!(
                "Security Hub {account} {region}: {} finding(s) imported ({resolved} resolved), {} refused",
                done.succeeded,
                done.failed.len()
            );
            for (id, code, message) in &done.failed {
                eprintln!("error: Security Hub refused {id}: {code}: {message}");
                clean = false;
            }
        }
    }
    Ok(clean)
}

/// The run of the state directory that kept a report last.
fn last_run(state_dir: &Path) -> Result<PathBuf> {
    let runs = state_dir.join("runs");
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&runs)
        .map_err(|e| Error::io(&runs, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter_map(|dir| {
            // Run ids name the second a run started; two runs of one second are told
            // apart by when their report was written.
            let written = std::fs::metadata(dir.join(REPORT_FILE))
                .ok()?
                .modified()
                .ok()?;
            Some((written, dir))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, dir)| dir).ok_or_else(|| {
        Error::NoReport {
            detail: format!(
                "{}: no run with a report yet; run harden apply or harden enforce, or pass --plan FILE",
                runs.display()
            ),
        }
    })
}

/// `harden report [--run RUN_ID | --plan FILE] [--format F] [--out FILE] [--security-hub]`.
pub async fn report_command(
    global: &GlobalArgs,
    run: Option<String>,
    plan: Option<PathBuf>,
    format: ReportFormat,
    out: Option<PathBuf>,
    security_hub: bool,
) -> Result<Status> {
    // With --security-hub, the plan the report is of says how each account is reached.
    let (report, plan) = match (run, plan) {
        (_, Some(path)) => {
            let plan = Plan::load(&path)?;
            (
                report::build(&plan, &report::Run::default(), Source::Plan),
                Some(plan),
            )
        }
        (run, None) => {
            let dir = match run {
                Some(id) => {
                    let dir = global.state_dir.join("runs").join(&id);
                    if !dir.join(REPORT_FILE).is_file() {
                        return Err(Error::NoReport {
                            detail: format!(
                                "--run {id}: {} has no report (no such run, or it ended before reporting)",
                                dir.display()
                            ),
                        });
                    }
                    dir
                }
                None => last_run(&global.state_dir)?,
            };
            let report = load(&dir.join(REPORT_FILE))?;
            let plan = if security_hub {
                let whole = dir.join(PLANNED_FILE);
                let path = if whole.is_file() {
                    whole
                } else {
                    dir.join("plan.json")
                };
                Some(Plan::load(&path)?)
            } else {
                None
            };
            (report, plan)
        }
    };
    let text = rendered(&report, format);
    match out {
        Some(path) => std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?,
        None => print!("{text}"),
    }
    if let Some(plan) = plan.filter(|_| security_hub) {
        let run_id = super::settings::new_run_id();
        let (sessions, unreachable) =
            super::settings::sessions_for_plan(global, &plan, &run_id, 8).await?;
        for (account, why) in &unreachable {
            eprintln!("error: account {account} could not be reached for Security Hub: {why}");
        }
        if !import_findings(&sessions, &report).await? || !unreachable.is_empty() {
            return Ok(Status::Failure);
        }
    }
    Ok(Status::Success)
}
