//! One function per subcommand.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use comfy_table::Table;

use super::Status;
use super::args::{
    ApplyArgs, AuditCommand, Cli, Command, Format, GlobalArgs, PlanArgs, PlanFormat,
};
use super::settings::{self, Settings, load};
use crate::accounts::Session;
use crate::audit::{self, AuditLog, Entry, Outcome, Summary};
use crate::error::{Error, Result};
use crate::execute::journal::Journal;
use crate::execute::{self, ApplyOptions};
use crate::plan::{self, Plan, PlanRequest, Probe, render};
use crate::runbook;
use crate::{actions, inventory};

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<Status> {
    let global = cli.global;
    if let Some(dir) = std::env::var_os(crate::aws::record::RECORD_CALLS_ENV) {
        // The folder HARDEN_RECORD_CALLS names could not be written: an I/O error on it.
        crate::aws::record::start(std::path::Path::new(&dir), cli.command.name())
            .map_err(|e| Error::io(&dir, e))?;
    }
    match cli.command {
        Command::Enforce(args) => super::enforce::enforce_command(&global, args).await,
        Command::Respond { event, response } => {
            super::respond::respond_command(&global, &event, response).await
        }
        Command::Watch(args) => super::watch::watch_command(&global, args).await,
        Command::Report {
            run,
            plan,
            format,
            out,
            security_hub,
        } => super::report::report_command(&global, run, plan, format, out, security_hub).await,
        Command::Validate {
            paths,
            accounts,
            policy,
        } => validate_command(&paths, accounts.as_deref(), policy.as_deref()),
        Command::Plan(args) => plan_command(&global, args, false).await,
        Command::DryRun(args) => plan_command(&global, args, true).await,
        Command::Apply(args) => apply_command(&global, args).await,
        Command::Audit { command } => audit_command(&global, command),
        Command::Runs { format } => super::runs::runs_command(&global, format),
        Command::Resume(args) => super::resume::resume_command(&global, args).await,
        Command::Rollback(args) => super::rollback::rollback_command(&global, args).await,
        Command::Schema => {
            let schema = schemars::schema_for!(runbook::Runbook);
            println!(
                "{}",
                serde_json::to_string_pretty(&schema)
                    .map_err(|e| Error::Internal(e.to_string()))?
            );
            Ok(Status::Success)
        }
        Command::List { path } => list_command(path),
        Command::IamPolicy {
            paths,
            access,
            params,
            assume_role,
            org,
            lease_bucket,
            watch,
            notify,
            security_hub,
            ship_bucket,
        } => {
            let runbooks = load(&paths)?;
            let features = crate::least_privilege::Features {
                assume_role,
                organization: org,
                lease_bucket,
                watch,
                notify,
                security_hub,
                ship_bucket,
            };
            let params = crate::runbook::params::resolve(&runbooks, &params)?;
            let actions = crate::least_privilege::actions_of(&runbooks);
            let passed = crate::least_privilege::passed_roles(&runbooks, &params)?;
            let document = crate::least_privilege::policy(&actions, access, &features, &passed);
            println!(
                "{}",
                serde_json::to_string_pretty(&document)
                    .map_err(|e| Error::Internal(e.to_string()))?
            );
            Ok(Status::Success)
        }
    }
}

fn validate_command(
    paths: &[PathBuf],
    accounts: Option<&Path>,
    policy: Option<&Path>,
) -> Result<Status> {
    let runbooks = load(paths)?;
    for r in &runbooks {
        println!("ok  {}  {}", r.id(), r.path.display());
    }
    println!("{} runbook(s) valid.", runbooks.len());
    if let Some(path) = accounts {
        let listed = crate::accounts::load_file(path)?;
        println!("ok  {}: {} account(s)", path.display(), listed.len());
    }
    if let Some(path) = policy {
        let policy = crate::policy::Policy::load(path)?;
        println!(
            "ok  {}: {} rule(s), default {}",
            path.display(),
            policy.rules.len(),
            policy.default.name()
        );
    }
    Ok(Status::Success)
}

pub(super) fn new_run_id() -> String {
    let now = jiff::Timestamp::now();
    let unique = uuid::Uuid::now_v7().simple().to_string();
    format!(
        "{}-{}",
        now.strftime("%Y%m%dT%H%M%SZ"),
        &unique[unique.len() - 8..]
    )
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
    plan::plan(
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

/// Says which organization accounts were left out for not being active.
pub(super) fn report_inactive(settings: &Settings) {
    for (target, state) in &settings.inactive {
        eprintln!(
            "note: skipped account {} ({state}): not active",
            target.label()
        );
    }
}

/// The text plan, in colour on a terminal unless `NO_COLOR` is set.
pub(super) fn shown(plan: &Plan) -> String {
    let text = render::text(plan);
    if std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        render::coloured(&text)
    } else {
        text
    }
}

/// The error line for a partial plan not accepted with `--allow-partial`.
fn refuse_partial(plan: &Plan, what: &str) {
    eprintln!(
        "error: the plan is incomplete: {} account(s) could not be reached and {} runbook-region(s) could not be planned (listed at the top); {what}, or pass --allow-partial to accept the rest",
        plan.unreachable.len(),
        plan.not_planned.len()
    );
}

async fn plan_command(global: &GlobalArgs, args: PlanArgs, dry_run: bool) -> Result<Status> {
    // A chain that cannot be appended to stops the plan before anything is contacted.
    audit::check_appendable(&global.state_dir)?;
    let run_id = new_run_id();
    let settings = settings::resolve(global, &args.selection, &run_id, args.concurrency).await?;
    report_inactive(&settings);
    let mut plan = make_plan(&settings, args.fail_fast, args.concurrency, PLAN_DEADLINE).await?;
    if dry_run {
        plan::planner::probe(&settings.sessions, &mut plan, args.concurrency).await;
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

/// The first region of a plan: where its account-wide things, and the lease bucket, are.
pub(super) fn home_region(plan: &Plan) -> String {
    plan.regions()
        .first()
        .cloned()
        .unwrap_or_else(|| "us-east-1".into())
}

/// Asks on the terminal whether to apply `plan`; only "yes" is yes.
pub(super) fn confirm(plan: &Plan) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(
            "refusing to apply without confirmation: no terminal to ask on; pass --yes to apply non-interactively".into(),
        ));
    }
    let accounts: Vec<&str> = plan.accounts.iter().map(|a| a.target.id.as_str()).collect();
    print!(
        "\nApply {} change(s) to account(s) {}? Only 'yes' is accepted: ",
        plan.pending(),
        accounts.join(", ")
    );
    std::io::stdout()
        .flush()
        .map_err(|e| Error::io("stdout", e))?;
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Error::io("stdin", e))?;
    Ok(answer.trim() == "yes")
}

async fn apply_command(global: &GlobalArgs, args: ApplyArgs) -> Result<Status> {
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

/// The account the apply summary is recorded under: the caller's, which for a saved
/// plan is the account of the one reached with the caller's own credentials, else the
/// plan's first.
pub(super) fn caller_account(sessions: &[Session], plan: &Plan) -> String {
    sessions
        .iter()
        .find(|s| s.scope.role.is_none())
        .map(|s| s.scope.target.id.clone())
        .or_else(|| plan.accounts.first().map(|a| a.target.id.clone()))
        .unwrap_or_default()
}

fn audit_command(global: &GlobalArgs, command: AuditCommand) -> Result<Status> {
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

fn list_command(path: Option<PathBuf>) -> Result<Status> {
    // A path the user names must exist; the default folder is optional.
    let explicit = path.is_some();
    let path = path.unwrap_or_else(|| PathBuf::from("runbooks"));
    if explicit || Path::new(&path).exists() {
        for r in load(std::slice::from_ref(&path))? {
            let rb = &r.runbook;
            println!("{}  {}", rb.id.value, rb.title);
            println!("  file: {}", r.path.display());
            for c in &rb.controls {
                match &c.note {
                    Some(note) => println!("  control: {} {} ({note})", c.framework, c.id),
                    None => println!("  control: {} {}", c.framework, c.id),
                }
            }
            for (name, spec) in &rb.parameters {
                let default = spec
                    .default
                    .as_ref()
                    .map(|d| format!(" = {}", d.value))
                    .unwrap_or_else(|| " (required)".into());
                println!(
                    "  param: {name}: {}{default}  {}",
                    spec.kind.value.name(),
                    spec.description
                );
            }
            for t in &rb.triggers {
                let entry = &t.discover.value;
                let narrowing = rb
                    .discover
                    .get(entry)
                    .and_then(|d| inventory::ResourceKind::from_name(&d.resource.value))
                    .map(inventory::ResourceKind::narrowing);
                let place = match (&t.resource_id, narrowing) {
                    (Some(path), _) => {
                        format!("{entry}, narrowed to the ids at {path}", path = path.value)
                    }
                    (None, Some(inventory::Narrowing::Named)) => {
                        format!("{entry} (looked up by its name)")
                    }
                    (None, Some(inventory::Narrowing::ById(_))) => {
                        format!("{entry}, all of them in the event's region")
                    }
                    (None, _) => format!("{entry} of the event's region"),
                };
                println!("  trigger: {} -> {place}", t.event.value);
            }
            println!();
        }
    }
    println!("actions:");
    for a in actions::registry() {
        println!(
            "  {}  (on {}) {}",
            a.info().name,
            a.info().resource_kind,
            a.info().description
        );
    }
    println!("resource kinds:");
    for k in inventory::ResourceKind::ALL {
        println!("  {}  filters: {}", k.name(), k.filters().join(", "));
    }
    Ok(Status::Success)
}
