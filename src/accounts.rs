//! The accounts a run covers. Without `--accounts` or `--org` a run covers the caller's
//! own account, as it always did. An accounts file (YAML or CSV) or the organization
//! (`ListAccounts` from the management account) names many; each is then reached by
//! assuming a role in it ([`crate::aws::Aws::assume`]).
//!
//! Everything here is checked before anything is contacted: a bad file names its line
//! and column (YAML) or its line and field (CSV).

pub mod org;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize};
use serde_saphyr::Spanned;

use futures::stream::{self, StreamExt};

use crate::aws::{Aws, CallerIdentity};
use crate::error::{Error, Problems, Result, SourceLocation};
use crate::runbook::load::source_location;

/// The role assumed in each account unless the account or `--assume-role` says
/// otherwise: the one AWS Organizations creates in accounts it creates.
pub const DEFAULT_ROLE: &str = "OrganizationAccountAccessRole";

static ACCOUNT_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[0-9]{12}$").expect("static regex is valid"));
static REGION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[a-z]{2}(-[a-z]+)+-[0-9]+$").expect("static regex is valid"));
// IAM role names: up to 64 of letters, digits and +=,.@_- (a path is not a name).
static ROLE_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\w+=,.@-]{1,64}$").expect("static regex is valid"));

/// One account to cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The 12-digit account id.
    pub id: String,
    /// A name for people (the organization's account name, or the file's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Regions to cover in it; empty: the run's `--region`s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    /// The role to assume in it; `None`: `--assume-role`, else [`DEFAULT_ROLE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The external id the role's trust policy asks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Tags (the organization's, or the file's), for policies and reports.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl Target {
    /// The account as people name it: `dev (111111111111)`, or the id alone.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{name} ({})", self.id),
            None => self.id.clone(),
        }
    }
}

/// An account as planning sees it: which it is, who harden acts as in it, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The account (id, name, tags).
    pub target: Target,
    /// Who harden acts as there (STS GetCallerIdentity through the assumed role).
    pub identity: CallerIdentity,
    /// Regions to cover, the home region (account-wide setup) first.
    pub regions: Vec<String>,
    /// The role assumed; `None` when the caller's own credentials reach it.
    pub role: Option<String>,
}

impl Scope {
    /// The caller's own account, reached with its own credentials.
    pub fn own(identity: CallerIdentity, regions: Vec<String>) -> Self {
        Self {
            target: Target {
                id: identity.account_id.clone(),
                name: None,
                regions: Vec::new(),
                role: None,
                external_id: None,
                tags: BTreeMap::new(),
            },
            identity,
            regions,
            role: None,
        }
    }
}

/// An account reached: its scope and its clients.
#[derive(Debug, Clone)]
pub struct Session {
    /// Which account, as whom, where.
    pub scope: Scope,
    /// Clients acting in it.
    pub aws: Aws,
}

/// An account that could not be reached, and why; the others go on without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    /// The account.
    pub target: Target,
    /// What failed: the AssumeRole refusal, or STS naming another account.
    pub reason: String,
}

/// How to reach the accounts of a run.
#[derive(Debug, Clone, Copy)]
pub struct Reach<'a> {
    /// The caller's connection.
    pub base: &'a Aws,
    /// Who the caller is.
    pub caller: &'a CallerIdentity,
    /// `--assume-role`: the role in accounts that do not name one.
    pub role: &'a str,
    /// `--external-id`: for accounts that do not give one.
    pub external_id: Option<&'a str>,
    /// The session name: carries the run id, so CloudTrail ties calls to the run.
    pub session_name: &'a str,
    /// The run's regions, for accounts that do not name theirs.
    pub regions: &'a [String],
    /// Accounts reached at once.
    pub concurrency: usize,
}

/// Reaches every target: the caller's own account with its own credentials (unless
/// the target names a role), any other by assuming its role. Each account's identity
/// is checked before anything else is asked of it. An account that cannot be reached is
/// returned with the reason, and the others go on.
pub async fn connect(reach: Reach<'_>, targets: Vec<Target>) -> (Vec<Session>, Vec<Unreachable>) {
    let results: Vec<(Target, Result<Session>)> = stream::iter(targets)
        .map(|target| async move {
            let result = connect_one(reach, &target).await;
            (target, result)
        })
        .buffered(reach.concurrency.max(1))
        .collect()
        .await;
    let mut sessions = Vec::new();
    let mut unreachable = Vec::new();
    for (target, result) in results {
        match result {
            Ok(session) => sessions.push(session),
            Err(error) => unreachable.push(Unreachable {
                target,
                reason: match error {
                    // The account is named beside the reason wherever it is shown.
                    Error::AccountUnreachable { reason, .. } => reason,
                    other => other.to_string(),
                },
            }),
        }
    }
    (sessions, unreachable)
}

async fn connect_one(reach: Reach<'_>, target: &Target) -> Result<Session> {
    let regions = if target.regions.is_empty() {
        reach.regions.to_vec()
    } else {
        target.regions.clone()
    };
    let home = regions
        .first()
        .cloned()
        .ok_or_else(|| Error::Usage(format!("account {}: no region to act in", target.id)))?;
    let own = target.id == reach.caller.account_id && target.role.is_none();
    let (aws, role) = if own {
        (reach.base.clone(), None)
    } else {
        let role = target.role.as_deref().unwrap_or(reach.role);
        let arn = format!(
            "arn:{}:iam::{}:role/{role}",
            reach.caller.partition, target.id
        );
        let external_id = target.external_id.as_deref().or(reach.external_id);
        let aws = reach
            .base
            .assume(&arn, external_id, reach.session_name, &home)
            .await
            .map_err(|e| Error::AccountUnreachable {
                account: target.label(),
                reason: format!("cannot assume {arn}: {e}"),
            })?;
        (aws, Some(role.to_string()))
    };
    let identity = aws.caller_identity(&home).await?;
    if identity.account_id != target.id {
        return Err(Error::AccountUnreachable {
            account: target.label(),
            reason: format!(
                "the credentials act for account {} ({}), not for it",
                identity.account_id, identity.arn
            ),
        });
    }
    Ok(Session {
        scope: Scope {
            target: target.clone(),
            identity,
            regions,
            role,
        },
        aws,
    })
}

/// An account id as YAML may give it: quoted, or a plain number (which loses leading
/// zeros, so those must be quoted).
#[derive(Debug, Clone)]
struct AccountId(String);

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(u64),
        }
        Ok(AccountId(match Either::deserialize(deserializer)? {
            Either::Text(text) => text,
            Either::Number(number) => number.to_string(),
        }))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsFile {
    accounts: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: Spanned<AccountId>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    regions: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    role: Option<Spanned<String>>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

/// A row of an accounts CSV file (header row: these names; only `id` is required).
#[derive(Debug, Deserialize)]
struct Row {
    id: String,
    #[serde(default)]
    name: Option<String>,
    /// Space- or semicolon-separated.
    #[serde(default)]
    regions: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    external_id: Option<String>,
    /// `KEY=VALUE` pairs separated by semicolons.
    #[serde(default)]
    tags: Option<String>,
}

/// Reads an accounts file: CSV when its name ends in `.csv`, YAML otherwise. Every
/// problem is reported together, each with its place.
pub fn load_file(path: &Path) -> Result<Vec<Target>> {
    let text = crate::input::read_text(path, crate::input::MAX_DOCUMENT_BYTES, "accounts file")?;
    let is_csv = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv {
        parse_csv(path, &text)
    } else {
        parse_yaml(path, &text)
    }
}

fn at(path: &Path, line: u64, column: u64) -> Option<SourceLocation> {
    Some(SourceLocation {
        file: path.to_path_buf(),
        line,
        column,
    })
}

/// Parses the YAML form: `accounts: [{id, name, regions, role, external_id, tags}]`.
pub fn parse_yaml(path: &Path, text: &str) -> Result<Vec<Target>> {
    let file: AccountsFile = serde_saphyr::from_str(text).map_err(|error| {
        let location = error.location().map(|l| source_location(path, &l));
        let message = error.to_string();
        let first = message.lines().next().unwrap_or_default();
        let mut problems = Problems::default();
        problems.push(
            location.or_else(|| at(path, 0, 0)),
            format!(
                "invalid accounts file: {first} (expected accounts: [{{id, name, regions, role, external_id, tags}}])"
            ),
        );
        Error::Invalid(problems)
    })?;
    let mut problems = Problems::default();
    let mut targets = Vec::new();
    for entry in file.accounts {
        let here = |l: &serde_saphyr::Location| Some(source_location(path, l));
        let id = entry.id.value.0.clone();
        check_id(&id, here(&entry.id.referenced), &mut problems);
        let regions = entry.regions.map(|r| (r.value, r.referenced));
        if let Some((regions, location)) = &regions {
            check_regions(regions, here(location), &mut problems);
        }
        if let Some(role) = &entry.role {
            check_role(&role.value, here(&role.referenced), &mut problems);
        }
        targets.push((
            here(&entry.id.referenced),
            Target {
                id,
                name: entry.name,
                regions: regions.map(|(r, _)| r).unwrap_or_default(),
                role: entry.role.map(|r| r.value),
                external_id: entry.external_id,
                tags: entry.tags,
            },
        ));
    }
    finish(targets, problems)
}

/// Parses the CSV form: a header row naming the columns `id`, `name`, `regions`
/// (separated by spaces or semicolons), `role`, `external_id`, `tags` (`KEY=VALUE`
/// pairs separated by semicolons); only `id` is required.
pub fn parse_csv(path: &Path, text: &str) -> Result<Vec<Target>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_reader(text.as_bytes());
    let mut problems = Problems::default();
    let mut targets = Vec::new();
    let headers = reader
        .headers()
        .map_err(|e| {
            let mut problems = Problems::default();
            problems.push(at(path, 1, 1), format!("invalid accounts file: {e}"));
            Error::Invalid(problems)
        })?
        .clone();
    if !headers.iter().any(|h| h == "id") {
        problems.push(
            at(path, 1, 1),
            "invalid accounts file: the header row has no id column (expected id,name,regions,role,external_id,tags)",
        );
        return Err(Error::Invalid(problems));
    }
    for unknown in headers
        .iter()
        .filter(|h| !["id", "name", "regions", "role", "external_id", "tags"].contains(h))
    {
        problems.push(
            at(path, 1, 1),
            format!("invalid accounts file: unknown column {unknown:?} (expected id, name, regions, role, external_id, tags)"),
        );
    }
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                problems.push(at(path, line, 0), format!("invalid accounts file: {e}"));
                break;
            }
        }
        let line = record.position().map_or(0, csv::Position::line);
        let row: Row = match record.deserialize(Some(&headers)) {
            Ok(row) => row,
            Err(e) => {
                problems.push(at(path, line, 0), format!("invalid accounts file: {e}"));
                continue;
            }
        };
        let field = |name: &str| {
            let column = headers.iter().position(|h| h == name).map_or(0, |i| i + 1);
            at(path, line, column as u64)
        };
        check_id(&row.id, field("id"), &mut problems);
        let regions: Vec<String> = row
            .regions
            .as_deref()
            .unwrap_or_default()
            .split([' ', ';'])
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect();
        check_regions(&regions, field("regions"), &mut problems);
        let role = row.role.filter(|r| !r.is_empty());
        if let Some(role) = &role {
            check_role(role, field("role"), &mut problems);
        }
        let mut tags = BTreeMap::new();
        for pair in row
            .tags
            .as_deref()
            .unwrap_or_default()
            .split(';')
            .filter(|p| !p.trim().is_empty())
        {
            match pair.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => {
                    tags.insert(key.trim().to_string(), value.trim().to_string());
                }
                _ => problems.push(
                    field("tags"),
                    format!("tag {pair:?}: expected KEY=VALUE pairs separated by semicolons"),
                ),
            }
        }
        targets.push((
            field("id"),
            Target {
                id: row.id,
                name: row.name.filter(|n| !n.is_empty()),
                regions,
                role,
                external_id: row.external_id.filter(|e| !e.is_empty()),
                tags,
            },
        ));
    }
    finish(targets, problems)
}

fn check_id(id: &str, location: Option<SourceLocation>, problems: &mut Problems) {
    if !ACCOUNT_ID.is_match(id) {
        problems.push(
            location,
            format!("account id {id:?}: expected 12 digits (quote it in YAML if it starts with 0)"),
        );
    }
}

fn check_regions(regions: &[String], location: Option<SourceLocation>, problems: &mut Problems) {
    for region in regions.iter().filter(|r| !REGION.is_match(r)) {
        problems.push(
            location.clone(),
            format!("region {region:?}: expected a region name such as eu-west-1"),
        );
    }
}

fn check_role(role: &str, location: Option<SourceLocation>, problems: &mut Problems) {
    if !ROLE_NAME.is_match(role) {
        problems.push(
            location,
            format!("role {role:?}: expected a role name (not an ARN or a path)"),
        );
    }
}

/// Refuses duplicates, then returns the targets or every problem found.
fn finish(
    targets: Vec<(Option<SourceLocation>, Target)>,
    mut problems: Problems,
) -> Result<Vec<Target>> {
    let mut seen = BTreeSet::new();
    for (location, target) in &targets {
        if !seen.insert(target.id.clone()) {
            problems.push(
                location.clone(),
                format!("account {} is listed twice", target.id),
            );
        }
    }
    if targets.is_empty() && problems.is_empty() {
        problems.push(None, "the accounts file lists no account");
    }
    problems.into_result()?;
    Ok(targets.into_iter().map(|(_, t)| t).collect())
}

/// One of N shards of the accounts: shard K holds the accounts whose id hashes to K
/// modulo N. Each id is hashed alone, so adding or removing accounts moves no other
/// account to another shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, 0-based.
    pub index: u32,
    /// How many shards.
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let bad = || format!("expected K/N with 0 <= K < N (for example 0/4), found {text:?}");
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let index: u32 = index.trim().parse().map_err(|_| bad())?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl Shard {
    /// Whether the account belongs to this shard.
    pub fn holds(&self, account_id: &str) -> bool {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(account_id.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first) % u64::from(self.count) == u64::from(self.index)
    }
}

/// Keeps the targets tagged with every `KEY=VALUE` of `filters`.
pub fn with_tags(targets: Vec<Target>, filters: &[(String, String)]) -> Vec<Target> {
    targets
        .into_iter()
        .filter(|t| {
            filters
                .iter()
                .all(|(k, v)| t.tags.get(k).is_some_and(|have| have == v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(result: Result<Vec<Target>>) -> Vec<String> {
        match result {
            Err(Error::Invalid(found)) => found.0.iter().map(ToString::to_string).collect(),
            Err(other) => vec![format!("unexpected: {other}")],
            Ok(targets) => vec![format!("parsed: {targets:?}")],
        }
    }

    #[test]
    fn yaml_accounts_with_every_field_or_only_an_id() {
        let targets = parse_yaml(
            Path::new("a.yaml"),
            "accounts:\n  - id: \"111111111111\"\n    name: dev\n    regions: [us-east-1]\n    role: Auditor\n    external_id: x-1\n    tags: {env: dev}\n  - id: 222222222222\n",
        )
        .expect("parses");
        assert_eq!(
            targets,
            vec![
                Target {
                    id: "111111111111".into(),
                    name: Some("dev".into()),
                    regions: vec!["us-east-1".into()],
                    role: Some("Auditor".into()),
                    external_id: Some("x-1".into()),
                    tags: BTreeMap::from([("env".into(), "dev".into())]),
                },
                Target {
                    id: "222222222222".into(),
                    name: None,
                    regions: Vec::new(),
                    role: None,
                    external_id: None,
                    tags: BTreeMap::new(),
                },
            ]
        );
    }

    #[test]
    fn yaml_problems_are_located_and_reported_together() {
        assert_eq!(
            problems(parse_yaml(
                Path::new("a.yaml"),
                "accounts:\n  - id: \"12345\"\n    regions: [mars-1]\n  - id: \"111111111111\"\n    role: arn:aws:iam::1:role/x\n  - id: \"111111111111\"\n",
            )),
            [
                "a.yaml:2:9: account id \"12345\": expected 12 digits (quote it in YAML if it starts with 0)",
                "a.yaml:3:14: region \"mars-1\": expected a region name such as eu-west-1",
                "a.yaml:5:11: role \"arn:aws:iam::1:role/x\": expected a role name (not an ARN or a path)",
                "a.yaml:6:9: account 111111111111 is listed twice",
            ]
        );
        let unknown = problems(parse_yaml(
            Path::new("a.yaml"),
            "accounts:\n  - id: \"111111111111\"\n    owner: me\n",
        ));
        assert_eq!(unknown.len(), 1);
        assert!(
            unknown[0].starts_with("a.yaml:3:5: invalid accounts file:")
                && unknown[0].contains("owner"),
            "{unknown:?}"
        );
    }

    #[test]
    fn csv_accounts_and_their_problems() {
        let targets = parse_csv(
            Path::new("a.csv"),
            "id,name,regions,role,external_id,tags\n111111111111,dev,us-east-1;eu-west-1,,,env=dev;team=a\n222222222222,prod,,Auditor,x,\n",
        )
        .expect("parses");
        assert_eq!(targets[0].regions, ["us-east-1", "eu-west-1"]);
        assert_eq!(targets[0].tags.get("team").map(String::as_str), Some("a"));
        assert_eq!(targets[0].role, None);
        assert_eq!(targets[1].role.as_deref(), Some("Auditor"));
        assert_eq!(targets[1].external_id.as_deref(), Some("x"));
        assert_eq!(
            problems(parse_csv(
                Path::new("a.csv"),
                "id,regions,tags\n111111111111,us-east-1,env\n9,,\n",
            )),
            [
                "a.csv:2:3: tag \"env\": expected KEY=VALUE pairs separated by semicolons",
                "a.csv:3:1: account id \"9\": expected 12 digits (quote it in YAML if it starts with 0)",
            ]
        );
        assert_eq!(
            problems(parse_csv(Path::new("a.csv"), "name\ndev\n")),
            [
                "a.csv:1:1: invalid accounts file: the header row has no id column (expected id,name,regions,role,external_id,tags)"
            ]
        );
    }

    #[test]
    fn every_account_is_in_exactly_one_shard_and_stays_there_when_accounts_are_added() {
        let ids: Vec<String> = (0..500u64)
            .map(|n| format!("{:012}", 100_000_000_000 + n * 7919))
            .collect();
        let shards: Vec<Shard> = (0..4).map(|index| Shard { index, count: 4 }).collect();
        let home = |id: &str| -> Vec<u32> {
            shards
                .iter()
                .filter(|s| s.holds(id))
                .map(|s| s.index)
                .collect()
        };
        for id in &ids {
            assert_eq!(home(id).len(), 1, "{id} is in exactly one shard");
        }
        // Roughly even: no shard holds less than a sixth of the accounts.
        for shard in &shards {
            assert!(ids.iter().filter(|id| shard.holds(id)).count() > ids.len() / 6);
        }
        // Adding accounts moves none: a shard's membership depends on the id alone.
        let before: Vec<Vec<u32>> = ids.iter().map(|id| home(id)).collect();
        let mut more = ids.clone();
        more.extend((0..100u64).map(|n| format!("{:012}", 900_000_000_000 + n)));
        let after: Vec<Vec<u32>> = more.iter().take(ids.len()).map(|id| home(id)).collect();
        assert_eq!(before, after);
        assert!("3/4".parse::<Shard>().is_ok());
        assert!("4/4".parse::<Shard>().is_err());
        assert!("x".parse::<Shard>().is_err());
    }

    #[test]
    fn tag_filters_keep_accounts_with_every_tag() {
        let tagged = |id: &str, env: &str| Target {
            id: id.into(),
            name: None,
            regions: Vec::new(),
            role: None,
            external_id: None,
            tags: BTreeMap::from([("env".into(), env.into())]),
        };
        let kept = with_tags(
            vec![
                tagged("111111111111", "dev"),
                tagged("222222222222", "prod"),
            ],
            &[("env".into(), "prod".into())],
        );
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].id, "222222222222");
    }
}
