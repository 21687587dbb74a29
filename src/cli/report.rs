//! `harden report`: the compliance report of a run (kept in its folder as
//! `report.json`) or of a saved plan, as text, JSON or HTML.

use std::path::{Path, PathBuf};

use super::Status;
use super::args::{GlobalArgs, ReportFormat};
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::report::{self, Report, Source, render};

/// The name of a run's report in its folder.
pub const REPORT_FILE: &str = "report.json";

/// Keeps a run's report in its folder, for `harden report --run`.
pub fn save(run_dir: &Path, report: &Report) -> Result<()> {
    let path = run_dir.join(REPORT_FILE);
    std::fs::write(&path, render::json(report) + "\n").map_err(|e| Error::io(&path, e))
}

/// Reads a report `save` kept.
fn load(path: &Path) -> Result<Report> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
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

/// The report in `format`.
pub fn rendered(report: &Report, format: ReportFormat) -> String {
    match format {
        ReportFormat::Text => render::text(report),
        ReportFormat::Json => render::json(report) + "\n",
        ReportFormat::Html => render::html(report),
    }
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
        Error::Usage(format!(
            "{}: no run with a report yet; run harden apply or harden enforce, or pass --plan FILE",
            runs.display()
        ))
    })
}

/// `harden report [--run RUN_ID | --plan FILE] [--format F] [--out FILE]`.
pub fn report_command(
    global: &GlobalArgs,
    run: Option<String>,
    plan: Option<PathBuf>,
    format: ReportFormat,
    out: Option<PathBuf>,
) -> Result<Status> {
    let report = match (run, plan) {
        (_, Some(path)) => {
            report::build(&Plan::load(&path)?, &report::Run::default(), Source::Plan)
        }
        (Some(id), None) => {
            let dir = global.state_dir.join("runs").join(&id);
            if !dir.join(REPORT_FILE).is_file() {
                return Err(Error::Usage(format!(
                    "--run {id}: {} has no report (no such run, or it ended before reporting)",
                    dir.display()
                )));
            }
            load(&dir.join(REPORT_FILE))?
        }
        (None, None) => load(&last_run(&global.state_dir)?.join(REPORT_FILE))?,
    };
    let text = rendered(&report, format);
    match out {
        Some(path) => std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?,
        None => print!("{text}"),
    }
    Ok(Status::Success)
}
