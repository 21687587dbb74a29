//! `harden respond`, and the [`Responder`] it shares with `harden watch`: one event in,
//! the runbooks its triggers match planned for just the resources it names (read
//! afresh: the event is a hint, the live state decides), decided by the enforcement
//! policy, applied and verified, every change's audit record naming the event.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use super::Status;
use super::apply::{Applying, run_apply};
use super::args::{GlobalArgs, ResponseArgs};
use super::plan::summary;
use super::settings;
use super::settings::new_run_id;
use crate::accounts::{self, Reach, Session, Target};
use crate::audit::{AuditLog, Entry};
use crate::aws::{Aws, CallerIdentity};
use crate::error::{Error, Result};
use crate::event::{self, CloudTrailEvent, Parsed};
use crate::plan::{self, render};
use crate::planner::PlanRequest;
use crate::policy::{Mode, Policy};
use crate::runbook::LoadedRunbook;
use crate::runbook::params::{self, ResolvedParams};
use crate::trigger;

/// What handling one event came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Response {
    /// What it names is compliant now; `fixed` changes were made and verified.
    Compliant {
        /// Changes made.
        fixed: usize,
    },
    /// Drift is left: reported, or held for approval in a saved plan.
    DriftLeft {
        /// Changes the policy reports.
        reported: usize,
        /// Changes awaiting approval.
        held: usize,
    },
    /// A change failed (the apply's output says which).
    Failed {
        /// Changes that failed.
        failed: usize,
    },
}

/// Everything answering events needs, resolved once: the runbooks, the policy, the
/// caller and how to reach the accounts events name.
pub(super) struct Responder {
    runbooks: Vec<LoadedRunbook>,
    params: ResolvedParams,
    policy: Policy,
    pub(super) caller: CallerIdentity,
    pub(super) aws: Aws,
    /// The accounts of the file or organization, when given: an event's account must
    /// be one of them.
    listed: Option<Vec<Target>>,
    role: String,
    external_id: Option<String>,
    /// Regions acted in; empty: whichever an event names.
    regions: Vec<String>,
    pub(super) concurrency: usize,
    /// How long one event's throttled calls are sent again (`--deadline`).
    deadline: std::time::Duration,
    /// The SNS topic people are told on.
    notify: Option<String>,
    /// Where account-region leases are held (`--lease-bucket`).
    lease: Option<crate::aws::lease::LeaseStore>,
    state_dir: PathBuf,
    /// Held while the responder lives: one writer of the state directory.
    pub(super) audit: Mutex<AuditLog>,
    /// Sessions reached so far, by account and region.
    sessions: Mutex<BTreeMap<(String, String), Session>>,
}

impl Responder {
    /// Checks the input (runbooks, parameters, policy, accounts file) before contacting
    /// anything, then who the caller is. `region_hint` is where to ask STS when no
    /// `--region` is given and the SDK has none.
    pub(super) async fn new(
        global: &GlobalArgs,
        args: &ResponseArgs,
        region_hint: Option<&str>,
    ) -> Result<Self> {
        let selection = &args.selection;
        let runbooks = settings::load(&selection.paths)?;
        let params = params::resolve(&runbooks, &selection.params)?;
        let policy = match &args.policy {
            Some(path) => Policy::load(path)?,
            None => Policy::default(),
        };
        let file = selection
            .accounts
            .accounts
            .as_deref()
            .map(accounts::load_file)
            .transpose()?;
        if selection.regions.iter().any(|r| r == "all") {
            return Err(Error::Usage(
                "--region all: name the regions to act in, or leave --region out to act in whichever region an event names".into(),
            ));
        }
        let audit = Mutex::new(AuditLog::open(&global.state_dir)?);
        let aws = Aws::connect(&settings::connection(global)?).await;
        let first = selection
            .regions
            .first()
            .cloned()
            .or_else(|| aws.default_region())
            .or_else(|| region_hint.map(str::to_string))
            .unwrap_or_else(|| "us-east-1".to_string());
        let caller = aws.caller_identity(&first).await?;
        // An event's account must be one of the file's or the organization's, when
        // either is given; otherwise any account the role reaches.
        let listed = if file.is_some() || selection.accounts.org {
            Some(
                settings::targets(&aws, &caller, &selection.accounts, file, &first)
                    .await?
                    .0,
            )
        } else {
            None
        };
        let lease = global
            .lease_bucket
            .as_ref()
            .map(|bucket| crate::aws::lease::LeaseStore {
                bucket: bucket.clone(),
                clients: aws.region(&first),
            });
        Ok(Responder {
            lease,
            runbooks,
            params,
            policy,
            caller,
            aws,
            listed,
            role: selection.accounts.assume_role.clone(),
            external_id: selection.accounts.external_id.clone(),
            regions: selection.regions.clone(),
            concurrency: args.concurrency,
            deadline: args.deadline,
            notify: args.notify.clone(),
            sessions: Mutex::default(),
            state_dir: global.state_dir.clone(),
            audit,
        })
    }

    /// Which runbooks `event` concerns and what they are narrowed to; `Err` says why
    /// none is acted on.
    pub(super) fn focus(
        &self,
        event: &CloudTrailEvent,
    ) -> std::result::Result<trigger::Focus, String> {
        let name = &event.detail.event_name;
        let focus = trigger::focus(&self.runbooks, event);
        if focus.is_empty() {
            return Err(match &event.detail.error_code {
                Some(code) => {
                    format!("{name} failed ({code}), so it changed nothing: no runbook to run")
                }
                None => format!(
                    "no runbook matches {name} from {} (or the event names no resource a trigger can act on)",
                    event.detail.event_source
                ),
            });
        }
        if !self.regions.is_empty() && !self.regions.iter().any(|r| r == event.region()) {
            return Err(format!(
                "{name} in {} is outside the regions acted in ({})",
                event.region(),
                self.regions.join(", ")
            ));
        }
        Ok(focus)
    }

    /// Handles one event whose `focus` (from [`Responder::focus`]) says what it
    /// concerns: plans that, applies what the policy allows now, holds or reports the
    /// rest. `interrupted` stops starting changes.
    pub(super) async fn respond(
        &self,
        event: &CloudTrailEvent,
        focus: &trigger::Focus,
        interrupted: Option<Arc<AtomicBool>>,
    ) -> Result<Response> {
        let run_id = new_run_id();
        let sessions = vec![self.session(event, &run_id).await?];
        let plan = crate::planner::plan(
            &sessions,
            PlanRequest {
                runbooks: &self.runbooks,
                params: &self.params,
                principal: &self.caller.arn,
                unreachable: &[],
                fail_fast: false,
                concurrency: self.concurrency,
                progress: &crate::progress::Silent,
                focus: Some(focus),
                deadline: std::time::Instant::now() + self.deadline,
            },
        )
        .await?;
        let caller = (self.caller.arn.clone(), self.caller.account_id.clone());
        crate::audit::lock(&self.audit)?.append(
            &run_id,
            &caller.1,
            &caller.0,
            Entry::Plan(summary(&plan)?),
        )?;
        println!("harden respond {run_id}: {}", event.summary());
        if !plan.not_planned.is_empty() || !plan.changes.is_empty() || !plan.blocked.is_empty() {
            print!("{}", render::text(&plan));
        } else {
            println!("  compliant: the live state needs no change");
        }
        if !plan.not_planned.is_empty() {
            return Err(Error::DiscoveryFailed {
                runbook: plan.not_planned[0].runbook.clone(),
                account: plan.not_planned[0].account_id.clone(),
                region: plan.not_planned[0].region.clone(),
                reason: plan.not_planned[0].reason.clone(),
            });
        }
        let modes = self.policy.decide(&plan);
        let count = |mode: Mode| modes.iter().filter(|m| **m == mode).count();
        let now = plan.subset(|i| modes[i] == Mode::Auto);
        let mut fixed = 0;
        if !now.changes.is_empty() {
            let (report, _) = run_apply(
                &self.audit,
                Applying {
                    state_dir: &self.state_dir,
                    run_id: &run_id,
                    sessions: &sessions,
                    plan: &now,
                    unreachable: Default::default(),
                    caller: &caller,
                    concurrency: self.concurrency,
                    fail_fast: false,
                    cause: Some(event.cause()),
                    interrupted,
                    deadline: self.deadline,
                    lease: self.lease.as_ref(),
                },
            )
            .await?;
            if report.failed() > 0 || report.skipped() > 0 {
                // Skipped without a failure: the apply was interrupted.
                let failed = report.failed().max(1);
                self.notify(
                    event,
                    &format!(
                        "harden tried to revert it and {failed} change(s) failed (run {run_id}); the event is retried."
                    ),
                )
                .await;
                return Ok(Response::Failed { failed });
            }
            fixed = report.succeeded();
        }
        let summaries = |subset: &plan::Plan| {
            subset
                .changes
                .iter()
                .map(|c| format!("{} {}", c.resource.id, c.summary))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let held = plan.subset(|i| modes[i] == Mode::Approve);
        if !held.changes.is_empty() {
            let dir = self.state_dir.join("reports").join(&run_id);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            let pending = dir.join(super::enforce::PENDING_PLAN);
            let mut log = crate::audit::lock(&self.audit)?;
            super::plan::save_for_apply(
                &mut log,
                &run_id,
                (&caller.0, &caller.1),
                &held,
                &pending,
            )?;
            println!(
                "  {} change(s) await approval: review, then apply exactly with: harden apply --plan {}",
                held.changes.len(),
                pending.display()
            );
        }
        let reported = count(Mode::Report);
        if reported > 0 {
            println!("  {reported} change(s) reported, not made (policy: report)");
        }
        let mut outcome = Vec::new();
        if fixed > 0 {
            outcome.push(format!(
                "harden reverted it and verified the result ({}; run {run_id}).",
                summaries(&now)
            ));
        }
        if reported > 0 {
            outcome.push(format!(
                "By policy harden only reports it, so it is still open: {}.",
                summaries(&plan.subset(|i| modes[i] == Mode::Report))
            ));
        }
        if !held.changes.is_empty() {
            outcome.push(format!(
                "{} change(s) await a person's approval ({}).",
                held.changes.len(),
                summaries(&held)
            ));
        }
        if !outcome.is_empty() {
            self.notify(event, &outcome.join(" ")).await;
        }
        Ok(if held.changes.is_empty() && reported == 0 {
            Response::Compliant { fixed }
        } else {
            Response::DriftLeft {
                reported,
                held: held.changes.len(),
            }
        })
    }

    /// The session acting in the event's account and region: reached (and its identity
    /// checked) the first time, then reused, so an event costs no STS call. Assumed
    /// credentials renew themselves before they expire.
    async fn session(&self, event: &CloudTrailEvent, run_id: &str) -> Result<Session> {
        let key = (event.account_id.clone(), event.region().to_string());
        if let Some(session) = self
            .sessions
            .lock()
            .ok()
            .and_then(|cache| cache.get(&key).cloned())
        {
            return Ok(session);
        }
        let (sessions, unreachable) = accounts::connect(
            Reach {
                base: &self.aws,
                caller: &self.caller,
                role: &self.role,
                external_id: self.external_id.as_deref(),
                session_name: &settings::session_name(run_id),
                regions: &[event.region().to_string()],
                concurrency: 1,
            },
            vec![self.target(event)?],
        )
        .await;
        if let Some(failed) = unreachable.into_iter().next() {
            return Err(Error::AccountUnreachable {
                account: failed.target.label(),
                reason: failed.reason,
            });
        }
        let session = sessions
            .into_iter()
            .next()
            .ok_or_else(|| Error::Internal("connect returned no session".into()))?;
        if let Ok(mut cache) = self.sessions.lock() {
            cache.insert(key, session.clone());
        }
        Ok(session)
    }

    /// Tells people on the `--notify` topic; a failure to publish is said, not fatal
    /// (the change itself is done and audited).
    async fn notify(&self, event: &CloudTrailEvent, outcome: &str) {
        let Some(topic) = &self.notify else {
            return;
        };
        let region = topic.split(':').nth(3).unwrap_or(event.region());
        let cause = event.cause();
        let subject = format!(
            "harden: {} in {} {}",
            cause.event_name, cause.account_id, cause.region
        );
        let clients = self.aws.region(region);
        match crate::actions::sns::publish(&clients, topic, &subject, &cause.notification(outcome))
            .await
        {
            Ok(id) => println!("  told {topic} (message {id})"),
            Err(e) => eprintln!("error: could not tell {topic}: {e}"),
        }
    }

    /// The account an event names, as the run reaches it: from the accounts file or
    /// organization when given (then it must be one of them), otherwise the caller's
    /// own or reached with `--assume-role`.
    fn target(&self, event: &CloudTrailEvent) -> Result<Target> {
        let id = &event.account_id;
        let mut target = match &self.listed {
            Some(listed) => listed.iter().find(|t| &t.id == id).cloned().ok_or_else(|| {
                Error::AccountUnreachable {
                    account: id.clone(),
                    reason: "the event names an account that is not one of the accounts given (--accounts or --org): nothing done".into(),
                }
            })?,
            None => Target {
                id: id.clone(),
                name: None,
                regions: Vec::new(),
                role: None,
                external_id: None,
                tags: Default::default(),
            },
        };
        target.regions = vec![event.region().to_string()];
        Ok(target)
    }
}

/// Reads an event from a file or `-` (standard input), never more than an event may be.
fn read_event(path: &Path) -> Result<(Vec<u8>, String)> {
    let limit = event::MAX_EVENT_BYTES as u64;
    if path == Path::new("-") {
        let origin = Path::new("<stdin>");
        let bytes = crate::input::read_limited(std::io::stdin(), origin, limit, "event")?;
        return Ok((bytes, origin.display().to_string()));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let bytes = crate::input::read_limited(file, path, limit, "event")?;
    Ok((bytes, path.display().to_string()))
}

/// Runs `harden respond`: exit 0 compliant afterwards (or unrelated), 2 drift left,
/// 1 error. A malformed event is refused before anything is contacted.
pub async fn respond_command(
    global: &GlobalArgs,
    event_path: &Path,
    args: ResponseArgs,
) -> Result<Status> {
    let (bytes, origin) = read_event(event_path)?;
    let event = match event::parse(&bytes, &origin)? {
        Parsed::CloudTrail(event) => event,
        Parsed::Other {
            detail_type,
            source,
        } => {
            println!(
                "no runbook matches: {origin} is an EventBridge event \"{detail_type}\" from {source}, not a CloudTrail API call"
            );
            return Ok(Status::Success);
        }
    };
    let responder = Responder::new(global, &args, Some(event.region())).await?;
    let focus = match responder.focus(&event) {
        Ok(focus) => focus,
        Err(why) => {
            println!("{why}");
            return Ok(Status::Success);
        }
    };
    Ok(match responder.respond(&event, &focus, None).await? {
        Response::Compliant { .. } => Status::Success,
        Response::DriftLeft { .. } => Status::ChangesPending,
        Response::Failed { .. } => Status::Failure,
    })
}
