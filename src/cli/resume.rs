//! `harden resume RUN_ID`: finish a run that failed or was interrupted (see
//! [`crate::execute::resume`] for what finishing means).

use std::sync::Mutex;

use super::Status;
use super::apply::{Applying, run_apply, save_run_report};
use super::args::{GlobalArgs, ResumeArgs};
use super::output::{confirm, shown};
use super::settings;
use super::settings::new_run_id;
use crate::audit::{self, AuditLog};
use crate::error::{Error, Result};
use crate::execute::resume::{self, Found, PastRun, RESUMES_FILE};
use crate::execute::runs;
use crate::planner::PlanRequest;
use crate::runbook::{self, LoadedRunbook};
use crate::validate::validate;

/// Resumes run `args.run_id` of the state directory.
pub async fn resume_command(global: &GlobalArgs, args: ResumeArgs) -> Result<Status> {
    audit::check_appendable(&global.state_dir)?;
    let old = PastRun::load(&global.state_dir, &args.run_id)?;
    let not_resumable = |reason: String| Error::NotResumable {
        run: args.run_id.clone(),
        reason,
    };
    if let Some(by) = runs::resumed_by(&global.state_dir, &args.run_id)? {
        return Err(not_resumable(format!(
            "run {by} resumed it already; resume {by} if it did not finish"
        )));
    }
    if old.is_complete() {
        println!(
            "Run {} is complete: every change was made and verified. Nothing to resume.",
            old.run_id
        );
        return Ok(Status::Success);
    }
    // Everything local is checked before anything is contacted.
    let runbooks = planned_runbooks(&old).map_err(|e| match e {
        Error::NotResumable { .. } => e,
        other => not_resumable(format!("its runbooks no longer load: {other}")),
    })?;
    let params = crate::plan::recorded_params(&old.plan.runbooks);
    let run_id = new_run_id();
    let (sessions, unreachable) =
        settings::sessions_for_plan(global, &old.plan, &run_id, args.concurrency).await?;
    let deadline = std::time::Instant::now() + args.deadline;

    let in_flight = old.in_flight();
    let found = resume::read_in_flight(&sessions, &in_flight, deadline).await;
    for one in &found {
        let what = match &one.found {
            Found::Made => "made (recorded as a success)".to_string(),
            Found::NotMade => "not made (made by this run)".to_string(),
            Found::Neither(detail) => format!("neither as before nor as planned: {detail}"),
            Found::Unread(why) => format!("could not be read: {why}"),
        };
        println!(
            "In flight when run {} stopped: {}: {what}",
            old.run_id, one.change.id
        );
    }
    let principal = old.plan.principal.clone();
    {
        let mut log = AuditLog::open(&global.state_dir)?;
        resume::record_in_flight(&mut log, &old, &run_id, &principal, &found)?;
    }

    let fresh = crate::planner::plan(
        &sessions,
        PlanRequest {
            runbooks: &runbooks,
            params: &params,
            principal: &principal,
            unreachable: &[],
            fail_fast: args.fail_fast,
            concurrency: args.concurrency,
            progress: &super::progress::Shown::new(),
            focus: None,
            deadline,
        },
    )
    .await?;
    let remaining = old.remaining(&fresh);
    print!("{}", shown(&remaining));
    println!(
        "\nResuming run {}: {} change(s) left for the {} resource(s) it was changing.",
        old.run_id,
        remaining.pending(),
        old.resources().len()
    );
    if remaining.pending() > 0 && !args.yes && !confirm(&remaining)? {
        println!("Resume cancelled; nothing was changed.");
        return Ok(Status::Failure);
    }
    let run_dir = global.state_dir.join("runs").join(&run_id);
    std::fs::create_dir_all(&run_dir).map_err(|e| Error::io(&run_dir, e))?;
    let marker = run_dir.join(RESUMES_FILE);
    std::fs::write(&marker, format!("{}\n", old.run_id)).map_err(|e| Error::io(&marker, e))?;

    let caller = (
        principal,
        super::settings::caller_account(&sessions, &remaining),
    );
    let audit = Mutex::new(AuditLog::open(&global.state_dir)?);
    let lease = settings::lease_store(global, &super::settings::home_region(&remaining)).await?;
    let (report, run_dir) = run_apply(
        &audit,
        Applying {
            state_dir: &global.state_dir,
            run_id: &run_id,
            sessions: &sessions,
            plan: &remaining,
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
    let unresolved = found
        .iter()
        .filter(|f| matches!(f.found, Found::Neither(_) | Found::Unread(_)))
        .count();
    let status = save_run_report(&remaining, &run_id, &report, &run_dir)?;
    if unresolved > 0 {
        eprintln!(
            "error: {unresolved} change(s) in flight when run {} stopped could not be told made or not (above); look at them before planning again",
            old.run_id
        );
        return Ok(Status::Failure);
    }
    Ok(status)
}

/// The runbooks the run planned, loaded again from where they were, each refused if
/// its file changed since: a resumed run applies what was reviewed, or nothing.
fn planned_runbooks(old: &PastRun) -> Result<Vec<LoadedRunbook>> {
    let paths: Vec<std::path::PathBuf> = old
        .plan
        .runbooks
        .iter()
        .map(|r| r.path.clone().into())
        .collect();
    let loaded = validate(runbook::load_paths(&paths)?)?;
    for planned in &old.plan.runbooks {
        let Some(now) = loaded.iter().find(|r| r.id() == planned.id) else {
            return Err(Error::NotResumable {
                run: old.run_id.clone(),
                reason: format!("{} no longer holds runbook {}", planned.path, planned.id),
            });
        };
        if now.digest != planned.digest {
            return Err(Error::NotResumable {
                run: old.run_id.clone(),
                reason: format!(
                    "{} changed since the run was planned (sha256 {}, now {}): resume applies only what the run planned; plan and apply again instead",
                    planned.path, planned.digest, now.digest
                ),
            });
        }
    }
    Ok(loaded)
}
