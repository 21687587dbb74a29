//! `harden audit`: verify the chain, show its records.

use comfy_table::Table;

use super::Status;
use super::args::{AuditCommand, Format, GlobalArgs};
use crate::audit::{self, Entry, Outcome};
use crate::error::{Error, Result};

pub(super) fn audit_command(global: &GlobalArgs, command: AuditCommand) -> Result<Status> {
    match command {
        AuditCommand::Verify => {
            let count = audit::verify(&global.state_dir)?;
            println!(
                "{}: {count} record(s), hash chain intact.",
                audit::log_path(&global.state_dir).display()
            );
            Ok(Status::Success)
        }
        AuditCommand::Show { run, format } => {
            let records: Vec<_> = audit::read(&global.state_dir)?
                .into_iter()
                .filter(|r| run.as_deref().is_none_or(|id| r.run_id == id))
                .collect();
            if format == Format::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&records)
                        .map_err(|e| Error::Internal(e.to_string()))?
                );
                return Ok(Status::Success);
            }
            let mut table = Table::new();
            table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
            table.set_header(["#", "time", "run", "account", "what", "target", "outcome"]);
            for r in &records {
                let (what, target, outcome) = match &r.entry {
                    Entry::Plan(s) | Entry::DryRun(s) => (
                        if matches!(r.entry, Entry::Plan(_)) {
                            "plan"
                        } else {
                            "dry-run"
                        }
                        .to_string(),
                        s.runbooks
                            .iter()
                            .map(|(id, _)| id.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        format!("{} pending, {} blocked", s.changes, s.blocked),
                    ),
                    Entry::Apply(s) => (
                        "apply".to_string(),
                        s.runbooks
                            .iter()
                            .map(|(id, _)| id.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        format!(
                            "{} ok, {} failed, {} skipped",
                            s.succeeded, s.failed, s.skipped
                        ),
                    ),
                    Entry::Change(c) => (
                        match &c.cause {
                            // Who made the call this change answered.
                            Some(cause) => format!(
                                "{} {} (after {} by {})",
                                c.call.operation,
                                c.step,
                                cause.event_name,
                                cause.actor_arn.as_deref().unwrap_or("unknown")
                            ),
                            None => format!("{} {}", c.call.operation, c.step),
                        },
                        format!("{} ({})", c.resource.id, c.region),
                        outcome_cell(&c.outcome),
                    ),
                    Entry::Compensation(c) => (
                        format!(
                            "undo {} ({})",
                            c.step,
                            c.calls
                                .iter()
                                .map(|call| call.operation.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        format!("{} ({})", c.resource.id, c.region),
                        outcome_cell(&c.outcome),
                    ),
                    Entry::Repair { detail } => {
                        ("repair".to_string(), detail.clone(), "mended".to_string())
                    }
                    Entry::PlanSaved(seal) => (
                        "plan saved".to_string(),
                        seal.path.clone(),
                        format!("{} change(s)", seal.changes.len()),
                    ),
                    Entry::EditedPlanAccepted { path, detail, .. } => (
                        "edited plan accepted".to_string(),
                        path.clone(),
                        detail.clone(),
                    ),
                };
                table.add_row([
                    r.seq.to_string(),
                    r.time.strftime("%Y-%m-%d %H:%M:%S").to_string(),
                    r.run_id.clone(),
                    r.account_id.clone(),
                    what,
                    target,
                    outcome,
                ]);
            }
            println!("{table}");
            Ok(Status::Success)
        }
    }
}

fn outcome_cell(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Succeeded => "succeeded".to_string(),
        Outcome::Failed { code, .. } => format!("FAILED {code}"),
        Outcome::Skipped { .. } => "skipped".to_string(),
    }
}
