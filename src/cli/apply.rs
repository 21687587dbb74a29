//! `harden apply` and the apply every command that changes things goes through
//! (`run_apply`): lease, journal, executor, audit, report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::Status;
use super::args::{ApplyArgs, GlobalArgs};
use super::output::{confirm, refuse_partial, report_inactive, shown};
use super::plan::{make_plan, summary};
use super::settings::{self, caller_account, home_region, new_run_id};
use crate::accounts::Session;
use crate::audit::{self, AuditLog, Entry, Outcome};
use crate::error::{Error, Result};
use crate::execute::journal::Journal;
use crate::execute::{self, ApplyOptions};
use crate::plan::{self, Plan};

pub(super) async fn apply_command(global: &GlobalArgs, args: ApplyArgs) -> Result<Status> {
    // A chain that cannot be appended to stops the apply before anything is contacted.
    audit::check_appendable(&global.state_dir)?;
    let run_id = new_run_id();
    let mut edited = None;
    let (sessions, unreachable, plan, caller) = match &args.plan {
        Some(path) => {
            let plan = Plan::load(path)?;
            // Before any AWS call: every call can be made as written, and the plan is
            // applied only as it was reviewed.
            crate::actions::registry::check_calls(&plan, path)?;
            if let Err(refusal) = plan::seal::check(&plan, path, &audit::seals(&global.state_dir)?)
            {
                let Error::EditedPlan { detail, .. } = &refusal else {
                    return Err(refusal);
                };
                if !args.accept_edited_plan {
                    return Err(refusal);
                }
                eprintln!(
                    "warning: {}: applying an edited plan as it is (--accept-edited-plan): {detail}",
                    path.display()
                );
                edited = Some(Entry::EditedPlanAccepted {
                    path: path.display().to_string(),
                    plan_digest: plan.digest()?,
                    detail: detail.clone(),
                });
            }
            let (sessions, unreachable) =
                settings::sessions_for_plan(global, &plan, &run_id, args.concurrency).await?;
            let caller = (plan.principal.clone(), caller_account(&sessions, &plan));
            (sessions, unreachable, plan, caller)
        }
        None => {
            let settings =
                settings::resolve(global, &args.selection, &run_id, args.concurrency).await?;
            report_inactive(&settings);
            let plan =
                make_plan(&settings, args.fail_fast, args.concurrency, args.deadline).await?;
            if plan.is_partial() && !args.allow_partial {
                print!("{}", shown(&plan));
                refuse_partial(&plan, "nothing was changed; fix what failed");
                return Ok(Status::Failure);
            }
            let caller = (
                settings.caller.arn.clone(),
                settings.caller.account_id.clone(),
            );
            // Accounts not reached at planning have no changes in the plan.
            (settings.sessions, BTreeMap::new(), plan, caller)
        }
    };
    print!("{}", shown(&plan));
    let leaves_out = || {
        for account in &plan.unreachable {
            println!(
                "  ? account {}: not reached: {}",
                account.id, account.reason
            );
        }
        for left in &plan.not_planned {
            println!(
                "  ? {} in {}, {}: {}",
                left.runbook, left.account_id, left.region, left.reason
            );
        }
    };
    if plan.is_partial() {
        println!(
            "\nThis apply leaves out {} account(s) and {} runbook-region(s) the plan could not cover:",
            plan.unreachable.len(),
            plan.not_planned.len()
        );
        leaves_out();
    }
    if plan.pending() == 0 {
        println!("Nothing to apply.");
        return Ok(Status::Success);
    }
    if !args.yes && !confirm(&plan)? {
        println!("Apply cancelled; nothing was changed.");
        return Ok(Status::Failure);
    }
    let mut log = AuditLog::open(&global.state_dir)?;
    if let Some(entry) = edited {
        log.append(&run_id, &caller.1, &caller.0, entry)?;
    }
    let audit = Mutex::new(log);
    let lease = settings::lease_store(global, &home_region(&plan)).await?;
    let (report, run_dir) = run_apply(
        &audit,
        Applying {
            state_dir: &global.state_dir,
            run_id: &run_id,
            sessions: &sessions,
            plan: &plan,
            unreachable,
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
    if plan.is_partial() {
        println!("Left out, not planned:");
        leaves_out();
    }
    save_run_report(&plan, &run_id, &report, &run_dir)
}

/// A plan about to be applied, and how.
pub(super) struct Applying<'a> {
    pub(super) state_dir: &'a std::path::Path,
    pub(super) run_id: &'a str,
    pub(super) sessions: &'a [Session],
    pub(super) plan: &'a Plan,
    /// Accounts of the plan not reached now, with why.
    pub(super) unreachable: BTreeMap<String, String>,
    /// (principal, account) of the caller, for the summary record.
    pub(super) caller: &'a (String, String),
    pub(super) concurrency: usize,
    pub(super) fail_fast: bool,
    /// The event the apply responds to, named in each change's audit record.
    pub(super) cause: Option<crate::event::EventCause>,
    /// Set to stop starting changes; without it, Ctrl-C sets one.
    pub(super) interrupted: Option<Arc<AtomicBool>>,
    /// How long throttled calls are sent again (`--deadline`).
    pub(super) deadline: std::time::Duration,
    /// Where the account-regions' leases are held (`--lease-bucket`), if anywhere.
    pub(super) lease: Option<&'a crate::aws::lease::LeaseStore>,
}

/// Applies a plan: Ctrl-C stops starting changes, the run is journaled, every change
/// audited, the summary recorded, and each outcome printed with what each failure held
/// back and what was put back. Returns the executor's report and the run's folder.
pub(super) async fn run_apply(
    audit: &Mutex<AuditLog>,
    applying: Applying<'_>,
) -> Result<(execute::ApplyReport, PathBuf)> {
    let Applying {
        state_dir,
        run_id,
        sessions,
        plan,
        unreachable,
        caller,
        concurrency,
        fail_fast,
        cause,
        interrupted,
        deadline,
        lease,
    } = applying;
    let interrupted = match interrupted {
        Some(flag) => flag,
        None => stop_on_ctrl_c(),
    };
    // Before anything is journaled: a run refused its leases never started.
    let held = match lease {
        Some(store) => {
            let places = plan
                .changes
                .iter()
                .map(|c| (c.account_id.clone(), c.region.clone()))
                .collect();
            let now = jiff::Timestamp::now();
            // Held past the run's deadline by the longest wait a change may take.
            let hold = jiff::SignedDuration::try_from(deadline).unwrap_or_default()
                + jiff::SignedDuration::from_mins(15);
            let record = crate::aws::lease::LeaseRecord {
                run_id: run_id.to_string(),
                principal: caller.0.clone(),
                acquired_at: now,
                expires_at: now + hold,
            };
            crate::aws::lease::acquire_all(store, &places, &record).await?
        }
        None => Vec::new(),
    };
    let journal = Journal::create(state_dir, run_id, plan)?;
    for (account, why) in &unreachable {
        eprintln!(
            "error: account {account} could not be reached, its changes are not attempted: {why}"
        );
    }
    let report = execute::apply(
        sessions,
        plan,
        audit,
        &journal,
        &ApplyOptions {
            concurrency,
            run_id: run_id.to_string(),
            interrupted,
            fail_fast,
            unreachable,
            progress: Arc::new(super::progress::Shown::new()),
            cause,
            deadline: std::time::Instant::now() + deadline,
        },
    )
    .await;
    if let Some(store) = lease {
        crate::aws::lease::release_all(store, &held).await;
    }
    let report = report?;
    let mut summary = summary(plan)?;
    summary.succeeded = report.succeeded();
    summary.failed = report.failed();
    summary.skipped = report.skipped();
    crate::audit::lock(audit)?.append(run_id, &caller.1, &caller.0, Entry::Apply(summary))?;
    println!("\nApply {run_id}:");
    for (id, outcome) in &report.outcomes {
        match outcome {
            Outcome::Succeeded => println!("  ok       {id}"),
            Outcome::Failed { code, message } => println!("  FAILED   {id}: {code}: {message}"),
            Outcome::Skipped { reason } => println!("  skipped  {id}: {reason}"),
        }
    }
    println!(
        "{} succeeded, {} failed, {} not attempted. Journal: {}",
        report.succeeded(),
        report.failed(),
        report.skipped(),
        journal.dir().display()
    );
    for (failed, held) in report.held_back() {
        if held.is_empty() {
            println!("  {failed} failed; nothing else depended on it");
        } else {
            println!(
                "  {failed} failed; not attempted because of it: {}",
                held.join(", ")
            );
        }
    }
    for undone in &report.compensations {
        match &undone.failure {
            None => println!(
                "  undone   {} ({}): put back as it was before {} ({})",
                undone.resource,
                undone.region,
                undone.change_id,
                undone.operations.join(", ")
            ),
            Some(failure) => eprintln!(
                "error: could not put {} ({}) back after {}: {failure}; a person must look (audit log and journal have every call made)",
                undone.resource, undone.region, undone.change_id
            ),
        }
    }
    if !report.unrecorded.is_empty() {
        return Err(Error::NotRecorded(report.unrecorded));
    }
    Ok((report, journal.dir().to_path_buf()))
}

/// Saves an apply's report in its run folder; a failure unless every change was made.
pub(super) fn save_run_report(
    plan: &Plan,
    run_id: &str,
    report: &execute::ApplyReport,
    run_dir: &Path,
) -> Result<Status> {
    let outcomes = report
        .outcomes
        .iter()
        .map(|(id, o)| (id.as_str(), o))
        .collect();
    crate::cli::report::save(
        run_dir,
        &crate::report::build(
            plan,
            &crate::report::Run {
                run_id: Some(run_id),
                modes: None,
                outcomes,
            },
            crate::report::Source::Apply,
        ),
    )?;
    if report.failed() > 0 || report.skipped() > 0 {
        eprintln!(
            "error: apply did not finish; the changes listed as ok were made and verified, the rest were not (`harden resume {run_id}` finishes it)"
        );
        return Ok(Status::Failure);
    }
    Ok(Status::Success)
}

/// A flag Ctrl-C sets: apply stops starting changes; those in flight finish and are
/// recorded. A second Ctrl-C exits at once.
fn stop_on_ctrl_c() -> Arc<AtomicBool> {
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "interrupted: finishing the changes in flight, starting no more (Ctrl-C again to exit at once)"
            );
            flag.store(true, Ordering::SeqCst);
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("exiting at once; the run's journal shows any change left in flight");
            super::EXIT_AT_ONCE.notify_one();
        }
    });
    interrupted
}
