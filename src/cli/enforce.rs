//! `harden enforce`: plan every runbook over the accounts and regions, decide each
//! change by the policy, apply the `auto` ones now, write the `approve` ones as a saved
//! plan a person reviews and applies with `harden apply --plan`, and report everything.
//! Exit 0: compliant after the run; 2: drift left (reported, or awaiting approval);
//! 1: an error (a failed change, an account or runbook that could not be covered).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use super::Status;
use super::apply::{Applying, run_apply};
use super::args::{EnforceArgs, GlobalArgs, ReportFormat};
use super::output::report_inactive;
use super::plan::{make_plan, summary};
use super::report::{rendered, save};
use super::settings;
use super::settings::new_run_id;
use crate::audit::{AuditLog, Entry};
use crate::error::{Error, Result};
use crate::policy::{Mode, Policy};
use crate::report::{self, Source};
use crate::ship;

/// The name of the held changes in the report folder.
pub const PENDING_PLAN: &str = "pending-plan.json";

/// Runs `harden enforce`.
pub async fn enforce_command(global: &GlobalArgs, args: EnforceArgs) -> Result<Status> {
    // The policy is checked with the rest of the input, before anything is contacted.
    if let Some(path) = &args.policy {
        Policy::load(path)?;
    }
    // Held for the whole run: a second enforce on this state directory is refused at
    // once, before it plans anything.
    let audit = Mutex::new(AuditLog::open(&global.state_dir)?);
    enforce_with(global, args, &audit).await
}

/// An enforcement run writing to `audit` (held by the caller: `harden watch`'s sweeps
/// share the watcher's).
pub(super) async fn enforce_with(
    global: &GlobalArgs,
    args: EnforceArgs,
    audit: &Mutex<AuditLog>,
) -> Result<Status> {
    let policy = match &args.policy {
        Some(path) => Policy::load(path)?,
        None => Policy::default(),
    };
    let run_id = new_run_id();
    let settings = settings::resolve(global, &args.selection, &run_id, args.concurrency).await?;
    report_inactive(&settings);
    let plan = make_plan(&settings, args.fail_fast, args.concurrency, args.deadline).await?;
    let caller = (
        settings.caller.arn.clone(),
        settings.caller.account_id.clone(),
    );
    crate::audit::lock(audit)?.append(
        &run_id,
        &caller.1,
        &caller.0,
        Entry::Plan(summary(&plan)?),
    )?;

    let modes = policy.decide(&plan);
    let count = |mode: Mode| modes.iter().filter(|m| **m == mode).count();
    println!(
        "harden enforce {run_id}: {} change(s) planned over {} account(s): {} to apply now, {} held for approval, {} reported.",
        plan.changes.len(),
        plan.accounts.len(),
        count(Mode::Auto),
        count(Mode::Approve),
        count(Mode::Report)
    );
    let report_dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| global.state_dir.join("reports").join(&run_id));
    std::fs::create_dir_all(&report_dir).map_err(|e| Error::io(&report_dir, e))?;

    let now = plan.subset(|i| modes[i] == Mode::Auto);
    let mut outcomes = BTreeMap::new();
    let mut run_dir: Option<PathBuf> = None;
    let applied;
    if now.changes.is_empty() {
        applied = None;
    } else {
        let lease = settings::lease_store(global, &super::settings::home_region(&now)).await?;
        let (report, dir) = run_apply(
            audit,
            Applying {
                state_dir: &global.state_dir,
                run_id: &run_id,
                sessions: &settings.sessions,
                plan: &now,
                unreachable: BTreeMap::new(),
                caller: &caller,
                concurrency: args.concurrency,
                fail_fast: args.fail_fast,
                cause: None,
                interrupted: None,
                deadline: args.deadline,
                lease: lease.as_ref(),
            },
        )
        .await?;
        run_dir = Some(dir);
        applied = Some(report);
    }
    if let Some(report) = &applied {
        for (id, outcome) in &report.outcomes {
            outcomes.insert(id.as_str(), outcome);
        }
    }

    let held = plan.subset(|i| modes[i] == Mode::Approve);
    let pending = report_dir.join(PENDING_PLAN);
    if !held.changes.is_empty() {
        let mut log = crate::audit::lock(audit)?;
        super::plan::save_for_apply(&mut log, &run_id, (&caller.0, &caller.1), &held, &pending)?;
        println!(
            "\n{} change(s) await approval in {}: review it, then apply it exactly with: harden apply --plan {}",
            held.changes.len(),
            pending.display(),
            pending.display()
        );
    }

    let built = report::build(
        &plan,
        &report::Run {
            run_id: Some(&run_id),
            modes: Some(&modes),
            outcomes,
        },
        Source::Enforce,
    );
    save(&report_dir, &built)?;
    let html = report_dir.join("report.html");
    std::fs::write(&html, rendered(&built, ReportFormat::Html)).map_err(|e| Error::io(&html, e))?;
    // The run's folder keeps it too, for `harden report --run`.
    let run_dir = run_dir.unwrap_or_else(|| global.state_dir.join("runs").join(&run_id));
    std::fs::create_dir_all(&run_dir).map_err(|e| Error::io(&run_dir, e))?;
    save(&run_dir, &built)?;
    // The whole plan, whatever the policy applied: what the report is of.
    plan.save(&run_dir.join(super::report::PLANNED_FILE))?;
    println!();
    print!("{}", rendered(&built, ReportFormat::Text));
    println!(
        "\nReport: {} and {}",
        report_dir.join(super::report::REPORT_FILE).display(),
        html.display()
    );
    let destination = ship::Destination {
        account: &caller.1,
        shard: args.selection.accounts.shard,
        run_id: &run_id,
    };
    let clients = settings.caller_aws.region(&settings.home_region);
    let kms = args.ship_kms_key.as_deref();
    if let Some(bucket) = &args.report_bucket {
        let mut files = vec![
            ("report.json", "application/json"),
            ("report.html", "text/html"),
        ];
        if !held.changes.is_empty() {
            files.push((PENDING_PLAN, "application/json"));
        }
        for (file, kind) in files {
            let path = report_dir.join(file);
            let body = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let key = destination.report_key(file);
            ship::put(&clients, bucket, &key, body, kind, kms).await?;
            println!("Shipped s3://{bucket}/{key}");
        }
    }
    if let Some(bucket) = &args.audit_bucket {
        // The audit log is held open by this run, so its records so far are all here.
        let segment = ship::audit_segment(&crate::audit::log_path(&global.state_dir), &run_id)?;
        let key = destination.audit_key();
        ship::put(&clients, bucket, &key, segment, "application/x-ndjson", kms).await?;
        println!("Shipped s3://{bucket}/{key}");
    }
    let imported = if args.security_hub {
        super::report::import_findings(&settings.sessions, &built).await?
    } else {
        true
    };
    let totals = &built.summary;
    if !imported {
        return Ok(Status::Failure);
    }
    Ok(if totals.has_errors() {
        eprintln!(
            "error: enforce did not cover everything: see the failed, not planned and not reached entries above"
        );
        Status::Failure
    } else if totals.is_compliant() {
        Status::Success
    } else {
        Status::ChangesPending
    })
}
