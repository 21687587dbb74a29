//! `harden rollback RUN_ID`: undo a run's changes (see [`crate::execute::rollback`]).

use std::sync::Mutex;

use super::Status;
use super::apply::{Applying, run_apply, save_run_report};
use super::args::{GlobalArgs, RollbackArgs};
use super::output::{confirm, shown};
use super::plan::save_for_apply;
use super::settings::{self, new_run_id};
use crate::audit::{self, AuditLog};
use crate::error::{Error, Result};
use crate::execute::resume::PastRun;
use crate::execute::rollback::{self, ROLLS_BACK_FILE};

/// Plans the rollback of `args.run_id`, shows it, and applies it (or saves it).
pub async fn rollback_command(global: &GlobalArgs, args: RollbackArgs) -> Result<Status> {
    audit::check_appendable(&global.state_dir)?;
    let run = PastRun::load(&global.state_dir, &args.run_id)?;
    if let Some(by) = crate::execute::runs::rolled_back_by(&global.state_dir, &args.run_id)? {
        return Err(Error::RolledBackAlready {
            run: args.run_id.clone(),
            by,
        });
    }
    let records = audit::read(&global.state_dir)?;
    let run_id = new_run_id();
    let (sessions, unreachable) =
        settings::sessions_for_plan(global, &run.plan, &run_id, args.concurrency).await?;
    let mut plan = rollback::plan(&args.run_id, &run.plan, &records, &run.plan.principal);
    let deadline = std::time::Instant::now() + args.deadline;
    rollback::refuse_changed(&sessions, &mut plan, deadline).await;
    print!("{}", shown(&plan));
    println!(
        "\nRollback of run {}: {} change(s) to undo, {} that cannot be (listed as no way back).",
        args.run_id,
        plan.pending(),
        plan.blocked.len()
    );
    let caller = (
        plan.principal.clone(),
        super::settings::caller_account(&sessions, &plan),
    );
    if let Some(out) = &args.out {
        let mut log = AuditLog::open(&global.state_dir)?;
        save_for_apply(&mut log, &run_id, (&caller.0, &caller.1), &plan, out)?;
        println!(
            "Saved the rollback plan to {}; apply it exactly with: harden apply --plan {}",
            out.display(),
            out.display()
        );
        return Ok(Status::Success);
    }
    if plan.pending() == 0 {
        println!("Nothing to roll back.");
        return Ok(if plan.blocked.is_empty() {
            Status::Success
        } else {
            Status::Failure
        });
    }
    if !args.yes && !confirm(&plan)? {
        println!("Rollback cancelled; nothing was changed.");
        return Ok(Status::Failure);
    }
    // Only a rollback of everything makes the run "rolled back" once it completes.
    if plan.blocked.is_empty() {
        let run_dir = global.state_dir.join("runs").join(&run_id);
        std::fs::create_dir_all(&run_dir).map_err(|e| Error::io(&run_dir, e))?;
        let marker = run_dir.join(ROLLS_BACK_FILE);
        std::fs::write(&marker, format!("{}\n", args.run_id)).map_err(|e| Error::io(&marker, e))?;
    }
    let audit = Mutex::new(AuditLog::open(&global.state_dir)?);
    let lease = settings::lease_store(global, &super::settings::home_region(&plan)).await?;
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
            fail_fast: false,
            cause: None,
            interrupted: None,
            deadline: args.deadline,
            lease: lease.as_ref(),
        },
    )
    .await?;
    let status = save_run_report(&plan, &run_id, &report, &run_dir)?;
    if !plan.blocked.is_empty() {
        eprintln!(
            "error: {} change(s) of run {} were not undone (listed above as no way back)",
            plan.blocked.len(),
            args.run_id
        );
        return Ok(Status::Failure);
    }
    Ok(status)
}
