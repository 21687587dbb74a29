//! What the flags mean, resolved once: the runbooks and parameters (checked before
//! anything is contacted), the caller, the regions, and the accounts of the run with a
//! session for each one reached.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::args::{AccountArgs, GlobalArgs, Selection};
use crate::accounts::{self, Reach, Session, Target, Unreachable};
use crate::aws::{Aws, CallerIdentity, Connection, Ec2Rates};
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::runbook::{self, LoadedRunbook, params};
use crate::validate::validate;

/// Everything planning needs, resolved from the flags.
pub struct Settings {
    /// Validated runbooks, in apply order.
    pub runbooks: Vec<LoadedRunbook>,
    /// Their parameter values.
    pub params: params::ResolvedParams,
    /// Who runs harden.
    pub caller: CallerIdentity,
    /// The caller's own connection (for what the run writes outside the accounts).
    pub caller_aws: Aws,
    /// The run's first region.
    pub home_region: String,
    /// The accounts reached, each with its regions and clients.
    pub sessions: Vec<Session>,
    /// The accounts that could not be reached, with why.
    pub unreachable: Vec<Unreachable>,
    /// Organization accounts left out because they are not active, with their state.
    pub inactive: Vec<(Target, String)>,
}

/// Loads and validates the runbooks the paths name.
pub fn load(paths: &[PathBuf]) -> Result<Vec<LoadedRunbook>> {
    if paths.is_empty() {
        return Err(Error::Usage(
            "name at least one runbook file or folder".into(),
        ));
    }
    validate(runbook::load_paths(paths)?)
}

/// The connection the global flags describe.
pub fn connection(global: &GlobalArgs) -> Result<Connection> {
    let ec2_rates = if global.ec2_rates.iter().any(|r| r == "off") {
        None
    } else {
        let mut rates = Ec2Rates::default();
        for assignment in &global.ec2_rates {
            rates.set(assignment)?;
        }
        Some(rates)
    };
    Ok(Connection {
        endpoint_url: global.endpoint_url.clone(),
        profile: global.profile.clone(),
        localstack: global.localstack,
        ec2_rates,
    })
}

/// The lease store `--lease-bucket` names, reached with the caller's credentials in
/// `region` (the run's first region, where the bucket is expected).
pub async fn lease_store(
    global: &GlobalArgs,
    region: &str,
) -> Result<Option<crate::aws::lease::LeaseStore>> {
    let Some(bucket) = &global.lease_bucket else {
        return Ok(None);
    };
    let aws = Aws::connect(&connection(global)?).await;
    Ok(Some(crate::aws::lease::LeaseStore {
        bucket: bucket.clone(),
        clients: aws.region(region),
    }))
}

/// The session name of a run's assumed roles: it carries the run id, so each account's
/// CloudTrail ties the calls to the run.
pub fn session_name(run_id: &str) -> String {
    format!("harden-{run_id}")
}

/// Resolves a selection: files first (runbooks, parameters, the accounts file), then
/// the caller, the regions, the accounts and their sessions.
pub async fn resolve(
    global: &GlobalArgs,
    selection: &Selection,
    run_id: &str,
    concurrency: usize,
) -> Result<Settings> {
    // Everything the user typed is checked before anything is contacted.
    let runbooks = load(&selection.paths)?;
    let params = params::resolve(&runbooks, &selection.params)?;
    let listed = selection
        .accounts
        .accounts
        .as_deref()
        .map(accounts::load_file)
        .transpose()?;
    let connection = connection(global)?;
    let aws = Aws::connect(&connection).await;
    let first = first_region(&aws, &selection.regions)?;
    let caller = aws.caller_identity(&first).await?;
    let regions = regions(&aws, &selection.regions, &first).await?;
    let (targets, inactive) = targets(&aws, &caller, &selection.accounts, listed, &first).await?;
    let (sessions, unreachable) = accounts::connect(
        Reach {
            base: &aws,
            caller: &caller,
            role: &selection.accounts.assume_role,
            external_id: selection.accounts.external_id.as_deref(),
            session_name: &session_name(run_id),
            regions: &regions,
            concurrency,
        },
        targets,
    )
    .await;
    Ok(Settings {
        runbooks,
        params,
        caller,
        caller_aws: aws,
        home_region: first,
        sessions,
        unreachable,
        inactive,
    })
}

/// The accounts to cover: the file's, the organization's, or the caller's own; with
/// the organization's inactive ones left out (and returned).
pub(super) async fn targets(
    aws: &Aws,
    caller: &CallerIdentity,
    flags: &AccountArgs,
    listed: Option<Vec<Target>>,
    region: &str,
) -> Result<(Vec<Target>, Vec<(Target, String)>)> {
    let (targets, inactive) = match listed {
        Some(targets) => (targets, Vec::new()),
        None if flags.org => {
            let listing = accounts::org::list(&aws.organizations(region), &flags.org_units).await?;
            (listing.active, listing.inactive)
        }
        None => (
            vec![Target {
                id: caller.account_id.clone(),
                name: None,
                regions: Vec::new(),
                role: None,
                external_id: None,
                tags: BTreeMap::new(),
            }],
            Vec::new(),
        ),
    };
    let targets = accounts::with_tags(targets, &flags.account_tags);
    if targets.is_empty() {
        return Err(Error::Usage(
            "no account to cover: the accounts file, the organization or --account-tag left none"
                .into(),
        ));
    }
    Ok((targets, inactive))
}

/// Where to ask STS and EC2 before the regions are known: the first region named, else
/// the SDK's, else (for `--region all` alone) us-east-1.
fn first_region(aws: &Aws, requested: &[String]) -> Result<String> {
    requested
        .iter()
        .find(|r| *r != "all")
        .cloned()
        .or_else(|| aws.default_region())
        .or_else(|| {
            requested
                .iter()
                .any(|r| r == "all")
                .then(|| "us-east-1".to_string())
        })
        .ok_or_else(|| Error::Usage("no region: pass --region REGION or set AWS_REGION".into()))
}

async fn regions(aws: &Aws, requested: &[String], first: &str) -> Result<Vec<String>> {
    if requested.is_empty() {
        return Ok(vec![first.to_string()]);
    }
    let mut regions = Vec::new();
    for region in requested {
        if region == "all" {
            let mut enabled = aws.enabled_regions(first).await?;
            enabled.sort();
            // The configured region leads: it is the home region of account-wide setup.
            if let Some(at) = enabled.iter().position(|r| r == first) {
                let home = enabled.remove(at);
                enabled.insert(0, home);
            }
            regions.extend(enabled);
        } else {
            regions.push(region.clone());
        }
    }
    // Order as given (the first is the home region runbooks default to), once each.
    let mut seen = std::collections::BTreeSet::new();
    regions.retain(|r| seen.insert(r.clone()));
    Ok(regions)
}

/// The sessions a saved plan needs: each of its accounts reached as it was when the
/// plan was made (the same role and external id, or the caller's own credentials),
/// its identity checked again before its first change. Returns the sessions and, for
/// each account not reached, why; when none is reached, that is an error.
pub async fn sessions_for_plan(
    global: &GlobalArgs,
    plan: &Plan,
    run_id: &str,
    concurrency: usize,
) -> Result<(Vec<Session>, BTreeMap<String, String>)> {
    let aws = Aws::connect(&connection(global)?).await;
    let home = plan
        .regions()
        .first()
        .cloned()
        .ok_or_else(|| Error::Usage("the plan names no region".into()))?;
    let caller = aws.caller_identity(&home).await?;
    let mut unreachable = BTreeMap::new();
    let mut targets = Vec::new();
    for account in plan.accounts.iter().map(|a| &a.target) {
        if account.role.is_none() && account.id != caller.account_id {
            // Planned with the caller's own credentials: these are another account's.
            unreachable.insert(
                account.id.clone(),
                format!(
                    "the plan was made for account {} with the caller's own credentials, but the credentials are for account {}",
                    account.id, caller.account_id
                ),
            );
            continue;
        }
        targets.push(account.clone());
    }
    let (sessions, failed) = accounts::connect(
        Reach {
            base: &aws,
            caller: &caller,
            role: accounts::DEFAULT_ROLE,
            external_id: None,
            session_name: &session_name(run_id),
            regions: &[home],
            concurrency,
        },
        targets,
    )
    .await;
    for failure in failed {
        unreachable.insert(failure.target.id, failure.reason);
    }
    if sessions.is_empty() && !plan.accounts.is_empty() {
        let reasons: Vec<String> = unreachable
            .iter()
            .map(|(id, why)| format!("{id}: {why}"))
            .collect();
        return Err(Error::AccountUnreachable {
            account: "every account of the plan".into(),
            reason: format!("{}; refusing to apply", reasons.join("; ")),
        });
    }
    Ok((sessions, unreachable))
}

/// A new run id: the UTC time to the second and 8 random hex digits, so ids sort by
/// time and two runs started in the same second differ.
pub(super) fn new_run_id() -> String {
    let now = jiff::Timestamp::now();
    let unique = uuid::Uuid::now_v7().simple().to_string();
    format!(
        "{}-{}",
        now.strftime("%Y%m%dT%H%M%SZ"),
        &unique[unique.len() - 8..]
    )
}

/// The first region of a plan: where its account-wide things, and the lease bucket, are.
pub(super) fn home_region(plan: &Plan) -> String {
    plan.regions()
        .first()
        .cloned()
        .unwrap_or_else(|| "us-east-1".into())
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
