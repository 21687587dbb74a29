//! Command-line arguments. Only parsing and shape checks happen here; meaning is
//! resolved in [`super::commands`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::runbook::params::Assignment;

/// Hardens AWS accounts with declarative YAML remediation runbooks.
#[derive(Debug, Parser)]
#[command(name = "harden", version, about, long_about = None)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Send every AWS call to this endpoint (an emulator). AWS_ENDPOINT_URL also works.
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Named AWS profile.
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// Where the audit log and run journals live.
    #[arg(long, global = true, default_value = ".harden", value_name = "DIR")]
    pub state_dir: PathBuf,
    /// Review against a local LocalStack: http://127.0.0.1:4566 unless --endpoint-url says
    /// otherwise, test credentials when none are configured.
    #[arg(long, global = true)]
    pub localstack: bool,
    /// Pace EC2 calls by this bucket instead of EC2's published one, per account and
    /// region: CATEGORY=BURST/PER_SECOND, CATEGORY one of describe (default 100/20),
    /// mutating (50/5), tags (100/10), volumes (snapshot and volume creates and
    /// deletes, 100/5), start (5/2); repeat for several. `off` sends calls unpaced.
    #[arg(
        long = "ec2-rate",
        global = true,
        value_name = "CATEGORY=BURST/PER_SECOND"
    )]
    pub ec2_rates: Vec<String>,
    /// Hold a lease on each account-region changed, as an object in this S3 bucket
    /// (`harden/leases/ACCOUNT/REGION.json`, written with the caller's credentials), so
    /// a second harden changing the same account-region from another state directory
    /// is refused. Without it, only runs sharing a state directory exclude each other.
    #[arg(
        long,
        global = true,
        value_name = "BUCKET",
        env = "HARDEN_LEASE_BUCKET"
    )]
    pub lease_bucket: Option<String>,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// Versioned JSON (docs/plan-format.md, docs/audit-format.md).
    Json,
}

/// Plan output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// For people (colour on a terminal unless NO_COLOR is set).
    Text,
    /// Versioned JSON (docs/plan-format.md).
    Json,
    /// One self-contained HTML page for a reviewer.
    Html,
}

/// Selecting runbooks and their inputs.
#[derive(Debug, Clone, Args)]
pub struct Selection {
    /// Runbook files or folders of runbooks.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// KEY=VALUE for every selected runbook declaring KEY, or RUNBOOK_ID.KEY=VALUE.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<Assignment>,
    /// Region to act on; repeat for several, or `all` for every enabled region.
    /// Default: the SDK's region chain.
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
    /// Which accounts.
    #[command(flatten)]
    pub accounts: AccountArgs,
}

/// Which accounts a run covers (default: the caller's own) and how to reach them.
#[derive(Debug, Clone, Args)]
pub struct AccountArgs {
    /// Accounts to cover, from a YAML or CSV file (id, name, regions, role,
    /// external_id, tags; docs/accounts-format.md).
    #[arg(long, value_name = "FILE", conflicts_with = "org")]
    pub accounts: Option<PathBuf>,
    /// Cover the accounts of the organization (AWS Organizations ListAccounts, from
    /// the management account or a delegated administrator); suspended accounts are
    /// skipped and listed.
    #[arg(long)]
    pub org: bool,
    /// With --org: only the accounts under this organizational unit (nested units
    /// included); repeat for several.
    #[arg(long = "org-ou", value_name = "OU", requires = "org")]
    pub org_units: Vec<String>,
    /// Only accounts with this tag (KEY=VALUE); repeat to require several.
    #[arg(long = "account-tag", value_name = "KEY=VALUE", value_parser = parse_tag)]
    pub account_tags: Vec<(String, String)>,
    /// The role assumed in each account that does not name its own.
    #[arg(long, value_name = "NAME", default_value = crate::accounts::DEFAULT_ROLE)]
    pub assume_role: String,
    /// The external id the roles' trust policies ask for (unless an account gives its own).
    #[arg(long, value_name = "ID")]
    pub external_id: Option<String>,
    /// Cover only shard K of N (0-based K, as Kubernetes' JOB_COMPLETION_INDEX): a
    /// stable subset of the accounts, by a hash of each id, so adding accounts moves
    /// none of the others.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<crate::accounts::Shard>,
}

fn parse_shard(text: &str) -> Result<crate::accounts::Shard, String> {
    text.parse()
}

fn parse_tag(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, found {text:?}")),
    }
}

/// `plan` and `dry-run` options.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// What to plan.
    #[command(flatten)]
    pub selection: Selection,
    /// Save the plan for `harden apply --plan FILE`.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    pub format: PlanFormat,
    /// Exit 2 when changes are pending, 0 when none.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Account-regions planned at once, and probes made at once (dry-run).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Stop at the first runbook whose discovery fails, instead of leaving it out.
    #[arg(long)]
    pub fail_fast: bool,
    /// Accept a plan that leaves out runbooks whose discovery failed in some region
    /// (exit 0 or 2 instead of 1, and save it with --out).
    #[arg(long)]
    pub allow_partial: bool,
}

/// `apply` options.
#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// What to apply (omit with --plan).
    #[command(flatten)]
    pub selection: Selection,
    /// Apply a plan saved with `plan --out`, exactly.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["paths", "params", "regions", "accounts", "org"])]
    pub plan: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Account-regions planned and applied at once, and resources changed at once in each.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Stop everything at the first failure (and at the first failed discovery),
    /// instead of only what depends on it.
    #[arg(long)]
    pub fail_fast: bool,
    /// Apply a plan that leaves out runbooks whose discovery failed in some region.
    #[arg(long, conflicts_with = "plan")]
    pub allow_partial: bool,
    /// Apply a plan file that is not as this state directory saved it (edited by hand,
    /// or planned elsewhere), as it is; the audit records what differed.
    #[arg(long, requires = "plan")]
    pub accept_edited_plan: bool,
    /// How long the run keeps sending a throttled call again (after the SDK's own
    /// retries) before the throttling counts as that change's failure: e.g. 1h, 30m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    pub deadline: std::time::Duration,
}

/// `resume` options.
#[derive(Debug, Clone, Args)]
pub struct ResumeArgs {
    /// The run to finish, as `harden runs` lists it.
    #[arg(value_name = "RUN_ID")]
    pub run_id: String,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Account-regions planned and applied at once, and resources changed at once in each.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Stop everything at the first failure instead of only what depends on it.
    #[arg(long)]
    pub fail_fast: bool,
    /// How long the run keeps sending a throttled call again: e.g. 1h, 30m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    pub deadline: std::time::Duration,
}

/// `rollback` options.
#[derive(Debug, Clone, Args)]
pub struct RollbackArgs {
    /// The run to undo, as `harden runs` lists it.
    #[arg(value_name = "RUN_ID")]
    pub run_id: String,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Save the rollback plan here (sealed, for `harden apply --plan`) instead of applying it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<std::path::PathBuf>,
    /// Account-regions applied at once, and resources changed at once in each.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// How long the run keeps sending a throttled call again: e.g. 1h, 30m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    pub deadline: std::time::Duration,
}

/// `enforce` options.
#[derive(Debug, Clone, Args)]
pub struct EnforceArgs {
    /// What to enforce.
    #[command(flatten)]
    pub selection: Selection,
    /// The enforcement policy (docs/policy-format.md); without it every change is
    /// reported, none applied.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Where the report (report.json, report.html) and the held changes
    /// (pending-plan.json) go. Default: STATE_DIR/reports/RUN_ID/.
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Account-regions planned and applied at once, and resources changed at once in each.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Stop everything at the first failure instead of only what depends on it.
    #[arg(long)]
    pub fail_fast: bool,
    /// Also write the report (report.json, report.html, pending-plan.json) to this S3
    /// bucket, encrypted, under harden/reports/ACCOUNT/SHARD/RUN_ID/.
    #[arg(long, value_name = "BUCKET")]
    pub report_bucket: Option<String>,
    /// Ship the run's audit records to this S3 bucket, encrypted, as
    /// harden/audit/ACCOUNT/SHARD/RUN_ID.jsonl.
    #[arg(long, value_name = "BUCKET")]
    pub audit_bucket: Option<String>,
    /// Encrypt what is shipped with this KMS key (SSE-KMS) instead of SSE-S3.
    #[arg(long, value_name = "KEY_ID")]
    pub ship_kms_key: Option<String>,
    /// Import the report's findings into each account's Security Hub (fixed ones
    /// resolved, with a note naming the run).
    #[arg(long)]
    pub security_hub: bool,
    /// How long the run keeps sending a throttled call again (after the SDK's own
    /// retries) before the throttling counts as that change's failure: e.g. 1h, 30m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    pub deadline: std::time::Duration,
}

/// Options of `respond` and `watch`: which runbooks answer events, and how.
#[derive(Debug, Clone, Args)]
pub struct ResponseArgs {
    /// The runbooks whose triggers events are matched against, their parameters, the
    /// regions acted in (default: whichever region an event names) and the accounts
    /// (an event's account must be among them when a file or the organization is
    /// given; it is reached with --assume-role unless it is the caller's own).
    #[command(flatten)]
    pub selection: Selection,
    /// The enforcement policy (docs/policy-format.md) deciding each change; without it
    /// every change is reported, none applied.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Resources changed at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Tell people of each event handled on this SNS topic (the alerting runbook's,
    /// with notify_email): what was done, by whom, from where, and what harden did.
    #[arg(long, value_name = "TOPIC_ARN")]
    pub notify: Option<String>,
    /// How long the run keeps sending a throttled call again (after the SDK's own
    /// retries) for one event's changes before the throttling counts as that change's failure: e.g. 1h, 30m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m")]
    pub deadline: std::time::Duration,
}

/// `watch` options.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// The SQS queue the alerting runbook's rule delivers events to.
    #[arg(long, value_name = "URL")]
    pub queue: String,
    /// What to respond with.
    #[command(flatten)]
    pub response: ResponseArgs,
    /// Exit 0 once the queue has been empty this many seconds (for scripts and tests).
    #[arg(long, value_name = "SECONDS")]
    pub until_idle: Option<u64>,
    /// Also run a full enforcement (every runbook, every account and region selected)
    /// this often, for what events missed: e.g. 1h, 30m, 90s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub sweep_every: Option<std::time::Duration>,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let parsed: jiff::SignedDuration = text
        .parse()
        .map_err(|e| format!("expected a duration such as 1h, 30m or 90s: {e}"))?;
    let duration = std::time::Duration::try_from(parsed)
        .map_err(|_| format!("expected a positive duration, found {text}"))?;
    if duration.is_zero() {
        return Err("expected a positive duration, found zero".into());
    }
    Ok(duration)
}

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    /// A table per account, for people.
    Text,
    /// Versioned JSON (docs/report-format.md).
    Json,
    /// One self-contained HTML page.
    Html,
    /// OCSF 1.3 Detection Findings (JSON array), one per resource not compliant or fixed.
    Ocsf,
    /// AWS Security Finding Format (JSON array), as Security Hub imports them.
    Asff,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check runbooks (and an accounts file or a policy) without contacting AWS.
    Validate {
        /// Runbook files or folders.
        #[arg(value_name = "PATH", required = true)]
        paths: Vec<PathBuf>,
        /// Also check this accounts file.
        #[arg(long, value_name = "FILE")]
        accounts: Option<PathBuf>,
        /// Also check this enforcement policy.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// Show what apply would change; read-only.
    Plan(PlanArgs),
    /// Plan, then probe every EC2 call with DryRun=true; never changes anything.
    DryRun(PlanArgs),
    /// Change the account, step by step, verifying every change.
    Apply(ApplyArgs),
    /// Plan, apply what the policy says to apply now, hold what needs approval as a
    /// saved plan, report the rest; exit 0 compliant, 2 drift left, 1 error.
    Enforce(EnforceArgs),
    /// Remediate what one CloudTrail event (a record, or its EventBridge event) names:
    /// exit 0 compliant afterwards (or no runbook matches), 2 drift left, 1 error.
    Respond {
        /// The event, as a file or `-` for standard input.
        #[arg(long, value_name = "FILE|-")]
        event: PathBuf,
        /// What to respond with.
        #[command(flatten)]
        response: ResponseArgs,
    },
    /// Long-poll a queue of CloudTrail events and remediate what each names, deleting
    /// a message only once its resource is verified (or its drift reported).
    Watch(WatchArgs),
    /// The compliance report of a run (default: the last) or of a saved plan.
    Report {
        /// The run (see STATE_DIR/runs/).
        #[arg(long = "run", value_name = "RUN_ID", conflicts_with = "plan")]
        run: Option<String>,
        /// A saved plan: everything it would change is drift.
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
        /// Write it here instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Import the findings into Security Hub, each account's with its own session
        /// (reached as the run or plan reached it); fixed ones are marked resolved with
        /// a note naming the run.
        #[arg(long)]
        security_hub: bool,
    },
    /// The apply runs of the state directory: complete, failed or interrupted, with
    /// their accounts, regions and counts, as their journals tell them.
    Runs {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Finish a failed or interrupted apply: record what its changes in flight did,
    /// plan its runbooks again with the values it used, and apply what is left for
    /// the resources it was changing (shown first, like apply).
    Resume(ResumeArgs),
    /// Undo a run's changes in reverse order where an inverse exists, from what the
    /// audit recorded; refuses, with the reason, what has no inverse or changed since.
    /// Shown first, like apply.
    Rollback(RollbackArgs),
    /// Inspect the audit log.
    Audit {
        /// What to do.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print the least IAM policy the runbooks need, for planning (read-only) or for
    /// applying (the changes, `iam:PassRole` to the services roles are passed to, and
    /// the KMS rights EC2 uses for encrypted copies).
    IamPolicy {
        /// Runbook files or folders.
        #[arg(value_name = "PATH", required = true)]
        paths: Vec<PathBuf>,
        /// Which principal the policy is for.
        #[arg(long = "for", value_enum, default_value = "apply")]
        access: crate::least_privilege::Access,
        /// Runbook parameters, as the runs will give them: the roles the steps pass
        /// (`iam:PassRole`) are rendered from them.
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<Assignment>,
        /// Add AssumeRole of this role in each target account (`--accounts`, `--org`).
        #[arg(long, value_name = "ROLE_NAME")]
        assume_role: Option<String>,
        /// Add listing the organization's accounts (`--org`).
        #[arg(long)]
        org: bool,
        /// Add the lease objects in this bucket (`--lease-bucket`).
        #[arg(long, value_name = "BUCKET")]
        lease_bucket: Option<String>,
        /// Add receiving and deleting events from the queue (`watch`).
        #[arg(long)]
        watch: bool,
        /// Add publishing notifications to SNS (`respond`, `watch`).
        #[arg(long)]
        notify: bool,
        /// Add importing findings into Security Hub (`report --security-hub`).
        #[arg(long)]
        security_hub: bool,
        /// Add shipping reports and audit segments to this bucket (`enforce`).
        #[arg(long, value_name = "BUCKET")]
        ship_bucket: Option<String>,
    },
    /// Print the JSON Schema of the runbook format.
    Schema,
    /// List runbooks with their controls and parameters, and the actions they can use.
    List {
        /// A runbook file or folder (default: runbooks/).
        #[arg(value_name = "PATH")]
        path: Option<PathBuf>,
    },
}

impl Command {
    /// The subcommand's name, as typed.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Validate { .. } => "validate",
            Command::Plan(_) => "plan",
            Command::DryRun(_) => "dry-run",
            Command::Apply(_) => "apply",
            Command::Enforce(_) => "enforce",
            Command::Respond { .. } => "respond",
            Command::Watch(_) => "watch",
            Command::Report { .. } => "report",
            Command::Runs { .. } => "runs",
            Command::Resume(_) => "resume",
            Command::Rollback(_) => "rollback",
            Command::Audit { .. } => "audit",
            Command::IamPolicy { .. } => "iam-policy",
            Command::Schema => "schema",
            Command::List { .. } => "list",
        }
    }
}

/// `audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain; names the first bad line.
    Verify,
    /// Show records.
    Show {
        /// Only this run.
        #[arg(long = "run", value_name = "RUN_ID")]
        run: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}
