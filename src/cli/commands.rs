//! The dispatch: each subcommand to its file.

use super::Status;
use super::args::{Cli, Command};
use crate::error::{Error, Result};
use crate::runbook;

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
        } => super::validate::validate_command(&paths, accounts.as_deref(), policy.as_deref()),
        Command::Plan(args) => super::plan::plan_command(&global, args, false).await,
        Command::DryRun(args) => super::plan::plan_command(&global, args, true).await,
        Command::Apply(args) => super::apply::apply_command(&global, args).await,
        Command::Audit { command } => super::audit::audit_command(&global, command),
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
        Command::List { path } => super::list::list_command(path),
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
        } => super::iam_policy::iam_policy_command(
            &paths,
            access,
            &params,
            crate::least_privilege::Features {
                assume_role,
                organization: org,
                lease_bucket,
                watch,
                notify,
                security_hub,
                ship_bucket,
            },
        ),
    }
}
