//! `harden plan` and `harden dry-run`, and what other commands share of planning: making
//! a plan, its audit summary, saving it sealed for a later `apply --plan`.

use std::path::Path;

use super::Status;
use super::args::{GlobalArgs, PlanArgs, PlanFormat};
use super::output::{refuse_partial, report_inactive, shown};
use super::settings::{self, Settings, new_run_id};
use crate::audit::{self, AuditLog, Entry, Summary};
use crate::error::Result;
use crate::plan::{self, Plan, Probe, render};
use crate::planner::{self, PlanRequest};

/// How long `plan` and `dry-run` keep sending a throttled discovery read again.
const PLAN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Plans the settings' runbooks in every account and region reached; throttled reads
/// are sent again for up to `deadline`.
pub(super) async fn make_plan(
    settings: &Settings,
    fail_fast: bool,
    concurrency: usize,
    deadline: std::time::Duration,
) -> Result<Plan> {
    crate::planner::plan(
        &settings.sessions,
        PlanRequest {
            runbooks: &settings.runbooks,
            params: &settings.params,
            principal: &settings.caller.arn,
            unreachable: &settings.unreachable,
            fail_fast,
            concurrency,
            progress: &super::progress::Shown::new(),
            focus: None,
            deadline: std::time::Instant::now() + deadline,
        },
    )
    .await
}

pub(super) fn summary(plan: &Plan) -> Result<Summary> {
    Ok(Summary {
        plan_digest: plan.digest()?,
        runbooks: plan
            .runbooks
            .iter()
            .map(|r| (r.id.clone(), r.digest.clone()))
            .collect(),
        regions: plan.regions(),
        accounts: plan.accounts.iter().map(|a| a.target.id.clone()).collect(),
        changes: plan.pending(),
        blocked: plan.blocked.len(),
        succeeded: 0,
        failed: 0,
        skipped: 0,
        unauthorized: plan
            .changes
            .iter()
            .filter(|c| matches!(c.probe, Some(Probe::Unauthorized { .. })))
            .count(),
        not_planned: plan.not_planned.clone(),
    })
}

/// Saves `plan` at `path` for a later `apply --plan`, and records its seal: the audit
/// is how apply tells this plan from an edited one.
pub(super) fn save_for_apply(
    log: &mut AuditLog,
    run_id: &str,
    (principal, account): (&String, &String),
    plan: &Plan,
    path: &Path,
) -> Result<()> {
    plan.save(path)?;
    let seal = plan::seal::Seal::of(plan, path)?;
    log.append(run_id, account, principal, Entry::PlanSaved(Box::new(seal)))
        .map(drop)
}

pub(super) async fn plan_command(
    global: &GlobalArgs,
    args: PlanArgs,
    dry_run: bool,
) -> Result<Status> {
    // A chain that cannot be appended to stops the plan before anything is contacted.
    audit::check_appendable(&global.state_dir)?;
    let run_id = new_run_id();
    let settings = settings::resolve(global, &args.selection, &run_id, args.concurrency).await?;
    report_inactive(&settings);
    let mut plan = make_plan(&settings, args.fail_fast, args.concurrency, PLAN_DEADLINE).await?;
    if dry_run {
        planner::probe(&settings.sessions, &mut plan, args.concurrency).await;
    }
    let entry = if dry_run {
        Entry::DryRun(summary(&plan)?)
    } else {
        Entry::Plan(summary(&plan)?)
    };
    let mut log = AuditLog::open(&global.state_dir)?;
    log.append(
        &run_id,
        &settings.caller.account_id,
        &settings.caller.arn,
        entry,
    )?;
    match args.format {
        PlanFormat::Text => print!("{}", shown(&plan)),
        PlanFormat::Json => println!("{}", render::json(&plan)),
        PlanFormat::Html => print!("{}", render::html(&plan)),
    }
    if plan.is_partial() && !args.allow_partial {
        refuse_partial(
            &plan,
            if args.out.is_some() {
                "it was not saved; fix what failed"
            } else {
                "fix what failed"
            },
        );
        return Ok(Status::Failure);
    }
    if let Some(out) = &args.out {
        let caller = (&settings.caller.arn, &settings.caller.account_id);
        save_for_apply(&mut log, &run_id, caller, &plan, out)?;
        if args.format == PlanFormat::Text {
            println!(
                "Saved the plan to {}; apply it exactly with: harden apply --plan {}",
                out.display(),
                out.display()
            );
        }
    }
    let failed_probes = plan
        .changes
        .iter()
        .filter(|c| {
            matches!(
                c.probe,
                Some(Probe::Unauthorized { .. } | Probe::Failed { .. })
            )
        })
        .count();
    if failed_probes > 0 {
        eprintln!("error: {failed_probes} change(s) would fail (see dry-run lines above)");
        return Ok(Status::Failure);
    }
    Ok(if args.detailed_exitcode && plan.pending() > 0 {
        Status::ChangesPending
    } else {
        Status::Success
    })
}
