//! `harden runs`: the apply runs of a state directory and how each ended.

use comfy_table::Table;

use super::Status;
use super::args::{Format, GlobalArgs};
use crate::error::{Error, Result};
use crate::execute::runs::{self, RunState};

/// Prints the runs, oldest first.
pub fn runs_command(global: &GlobalArgs, format: Format) -> Result<Status> {
    let runs = runs::list(&global.state_dir)?;
    if format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&runs).map_err(|e| Error::Internal(e.to_string()))?
        );
        return Ok(Status::Success);
    }
    if runs.is_empty() {
        println!(
            "No apply runs in {}.",
            global.state_dir.join("runs").display()
        );
        return Ok(Status::Success);
    }
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header([
        "run",
        "state",
        "accounts",
        "regions",
        "changes",
        "succeeded",
        "failed",
        "not attempted",
        "in flight",
        "resumed or rolled back by",
    ]);
    for run in &runs {
        let state = match run.state {
            RunState::Complete => "complete",
            RunState::Failed => "failed",
            RunState::Interrupted => "interrupted",
            RunState::Resumed => "resumed",
            RunState::RolledBack => "rolled back",
        };
        table.add_row([
            run.run_id.clone(),
            state.to_string(),
            run.accounts.join(", "),
            run.regions.join(", "),
            run.changes.to_string(),
            run.succeeded.to_string(),
            run.failed.to_string(),
            (run.skipped + run.not_reached).to_string(),
            run.in_flight.to_string(),
            run.resumed_by
                .clone()
                .or_else(|| run.rolled_back_by.clone())
                .unwrap_or_default(),
        ]);
    }
    println!("{table}");
    Ok(Status::Success)
}
