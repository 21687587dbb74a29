//! The least IAM policy a runbook set needs (`harden iam-policy`): the IAM actions each
//! concern's calls declare ([`crate::actions::Rights`]), split into what planning reads and what
//! applying changes, with `iam:PassRole` held to the services roles are passed to and
//! the KMS rights EC2 uses on the caller's behalf when it encrypts EBS copies. The
//! declarations are checked against every call the integration suite records (see
//! [`crate::aws::record`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Value, json};

use crate::actions::Action;
use crate::runbook::LoadedRunbook;
use crate::runbook::params::ResolvedParams;
use crate::template::Renderer;

/// What the principal running harden does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Access {
    /// `plan` and `report`: reads only.
    ReadOnly,
    /// `dry-run`, `apply`, `enforce`, `respond`, `watch`, `resume`, `rollback`: the
    /// reads and the changes. EC2 authorizes a `DryRun` probe exactly as the call, so a
    /// dry-run made with the read-only policy reports every probe as unauthorized.
    Apply,
}

/// Engine features beyond the runbooks that need rights of their own.
#[derive(Debug, Clone, Default)]
pub struct Features {
    /// `--assume-role NAME`: the role assumed in each target account.
    pub assume_role: Option<String>,
    /// `--org`: the organization's accounts are listed.
    pub organization: bool,
    /// `--lease-bucket BUCKET`: the per-account-region lease objects.
    pub lease_bucket: Option<String>,
    /// `watch --queue`: events are received and deleted from an SQS queue.
    pub watch: bool,
    /// Notifications published to an SNS topic (`respond`, `watch`).
    pub notify: bool,
    /// `report --security-hub`: findings imported into Security Hub.
    pub security_hub: bool,
    /// Reports shipped to an S3 bucket.
    pub ship_bucket: Option<String>,
}

/// What every command that reaches AWS reads: who is calling, the enabled regions.
const ENGINE_READS: &[&str] = &["sts:GetCallerIdentity", "ec2:DescribeRegions"];

/// Listing an organization's accounts (`--org`, `--org-ou`, `--account-tag`).
const ORGANIZATION_READS: &[&str] = &[
    "organizations:ListAccounts",
    "organizations:ListAccountsForParent",
    "organizations:ListOrganizationalUnitsForParent",
    "organizations:ListTagsForResource",
];

/// What EC2 asks KMS for, as the caller, when it copies a snapshot into an encrypted
/// one or makes a volume from it.
const KMS_FOR_EBS: &[&str] = &[
    "kms:CreateGrant",
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
];

/// An IAM policy document.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    /// Always `2012-10-17`.
    pub version: &'static str,
    /// The statements.
    pub statement: Vec<Statement>,
}

/// One `Allow` statement.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    /// What it is for.
    pub sid: String,
    /// Always `Allow`.
    pub effect: &'static str,
    /// The IAM actions, sorted.
    pub action: Vec<String>,
    /// The resources.
    pub resource: Vec<String>,
    /// Conditions by operator, key and values.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub condition: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl Statement {
    fn new(sid: &str, actions: impl IntoIterator<Item = String>, resource: Vec<String>) -> Self {
        let action: BTreeSet<String> = actions.into_iter().collect();
        Self {
            sid: sid.to_string(),
            effect: "Allow",
            action: action.into_iter().collect(),
            resource,
            condition: BTreeMap::new(),
        }
    }

    fn with_condition(mut self, operator: &str, key: &str, values: Vec<String>) -> Self {
        self.condition
            .entry(operator.to_string())
            .or_default()
            .insert(key.to_string(), values);
        self
    }
}

fn strings<'a>(actions: &'a [&'a str]) -> impl Iterator<Item = String> + 'a {
    actions.iter().map(|a| a.to_string())
}

/// Every role: what a step's role argument allows when it depends on what only
/// discovery or an earlier step knows.
pub const ANY_ROLE: &str = "arn:*:iam::*:role/*";

/// The roles the runbooks' steps pass, as IAM resource ARNs, by the service each is
/// passed to (`iam:PassedToService`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassedRoles(pub BTreeMap<&'static str, BTreeSet<String>>);

/// The roles the steps of `runbooks` pass to services with `params`: each step's role
/// argument (`Action::passed_role_arg`) rendered as the planner renders it, with `*`
/// for the account, partition and regions, which IAM matches as wildcards. An argument
/// that renders empty passes no role; one that needs a discovered resource or an
/// earlier step's output to render allows [`ANY_ROLE`]. Parameter defaults render as
/// the planner renders them ([`crate::planner::parameter_values`]).
pub fn passed_roles(
    runbooks: &[LoadedRunbook],
    params: &ResolvedParams,
) -> crate::error::Result<PassedRoles> {
    let renderer = Renderer::new();
    let scope = json!({
        "account_id": "*",
        "partition": "*",
        "region": "*",
        "home_region": "*",
        "regions": ["*"],
    });
    let mut passed = PassedRoles::default();
    for runbook in runbooks {
        let values = crate::planner::parameter_values(&renderer, runbook, params, &scope)?;
        let mut context = scope.clone();
        context["params"] = Value::Object(values);
        for step in &runbook.runbook.steps {
            let Some(action) = crate::actions::find(&step.action.value) else {
                continue;
            };
            let Some(arg) = action.passed_role_arg() else {
                continue;
            };
            let Some(template) = step.args.get(arg) else {
                continue;
            };
            let role = match renderer.render_value(&template.value, &context) {
                Ok(Value::Null) => continue,
                Ok(Value::String(arn)) if arn.trim().is_empty() => continue,
                Ok(Value::String(arn)) if arn.starts_with("arn:") => arn,
                _ => ANY_ROLE.to_string(),
            };
            for service in action.calls().rights().passes_role_to {
                passed.0.entry(service).or_default().insert(role.clone());
            }
        }
    }
    Ok(passed)
}

/// `config.amazonaws.com` -> `Config`, `vpc-flow-logs.amazonaws.com` -> `VpcFlowLogs`:
/// a statement id names the service (ids are alphanumeric).
fn sid_word(service: &str) -> String {
    service
        .split('.')
        .next()
        .unwrap_or(service)
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The least policy for `actions` (the runbooks' steps' actions), for `access`, with
/// the rights `features` need and `iam:PassRole` on the roles `passed` names only.
pub fn policy(
    actions: &[&dyn Action],
    access: Access,
    features: &Features,
    passed: &PassedRoles,
) -> PolicyDocument {
    let everything = vec!["*".to_string()];
    let mut reads: BTreeSet<String> = strings(ENGINE_READS).collect();
    let mut changes = BTreeSet::new();
    let mut kms = false;
    for rights in actions.iter().flat_map(|a| a.calls().rights().all()) {
        reads.extend(strings(rights.reads));
        changes.extend(strings(rights.changes));
        kms |= rights.kms_via_ec2;
    }
    if features.organization {
        reads.extend(strings(ORGANIZATION_READS));
    }
    // Describe and list calls take no resource-level permission in most of these
    // services, so reads are on every resource.
    let mut statement = vec![Statement::new("HardenReads", reads, everything.clone())];
    if let Some(role) = &features.assume_role {
        statement.push(Statement::new(
            "HardenAssumeTargetRole",
            strings(&["sts:AssumeRole"]),
            vec![format!("arn:*:iam::*:role/{role}")],
        ));
    }
    if features.security_hub {
        statement.push(Statement::new(
            "HardenImportFindings",
            strings(&["securityhub:BatchImportFindings"]),
            everything.clone(),
        ));
    }
    if let Some(bucket) = &features.ship_bucket {
        statement.push(Statement::new(
            "HardenShipReports",
            strings(&["s3:PutObject"]),
            vec![format!("arn:*:s3:::{bucket}/*")],
        ));
    }
    if access == Access::ReadOnly {
        return PolicyDocument {
            version: "2012-10-17",
            statement,
        };
    }
    if !changes.is_empty() {
        statement.push(Statement::new("HardenChanges", changes, everything.clone()));
    }
    for (service, roles) in &passed.0 {
        statement.push(
            Statement::new(
                &format!("HardenPassRoleTo{}", sid_word(service)),
                strings(&["iam:PassRole"]),
                roles.iter().cloned().collect(),
            )
            .with_condition(
                "StringEquals",
                "iam:PassedToService",
                vec![service.to_string()],
            ),
        );
    }
    if kms {
        statement.push(
            Statement::new("HardenKmsForEbs", strings(KMS_FOR_EBS), everything.clone())
                .with_condition(
                    "StringLike",
                    "kms:ViaService",
                    vec!["ec2.*.amazonaws.com".to_string()],
                ),
        );
    }
    if let Some(bucket) = &features.lease_bucket {
        statement.push(Statement::new(
            "HardenLease",
            strings(&["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]),
            vec![format!("arn:*:s3:::{bucket}/*")],
        ));
    }
    if features.watch {
        statement.push(Statement::new(
            "HardenWatchQueue",
            strings(&["sqs:ReceiveMessage", "sqs:DeleteMessage"]),
            everything.clone(),
        ));
    }
    if features.notify {
        statement.push(Statement::new(
            "HardenNotify",
            strings(&["sns:Publish"]),
            everything,
        ));
    }
    PolicyDocument {
        version: "2012-10-17",
        statement,
    }
}

/// The IAM action an SDK operation is authorized as (`EC2`, `DescribeVpcs` ->
/// `ec2:DescribeVpcs`). Most are the operation's name under the service's prefix; S3
/// and the batch calls are not.
pub fn iam_action(service: &str, operation: &str) -> String {
    // S3 Control's account-level Block Public Access is authorized as S3's, under
    // names of its own (S3's operations of the same names act on one bucket).
    if matches!(service, "S3 Control" | "S3Control") {
        return match operation {
            "GetPublicAccessBlock" => "s3:GetAccountPublicAccessBlock".into(),
            "PutPublicAccessBlock" | "DeletePublicAccessBlock" => {
                "s3:PutAccountPublicAccessBlock".into()
            }
            other => format!("s3:{other}"),
        };
    }
    let prefix = match service {
        "EC2" => "ec2",
        "S3" => "s3",
        "CloudTrail" => "cloudtrail",
        "Config Service" => "config",
        "IAM" => "iam",
        "CloudWatch Logs" => "logs",
        "EventBridge" => "events",
        "SQS" => "sqs",
        "SNS" => "sns",
        "STS" => "sts",
        "Organizations" => "organizations",
        "SecurityHub" => "securityhub",
        other => return format!("{}:{operation}", other.to_lowercase().replace(' ', "")),
    };
    let action = match (prefix, operation) {
        ("s3", "HeadBucket" | "ListObjectsV2" | "ListObjects") => "ListBucket",
        ("s3", "HeadObject") => "GetObject",
        ("s3", "ListBuckets") => "ListAllMyBuckets",
        ("s3", "GetBucketEncryption") => "GetEncryptionConfiguration",
        // S3 authorizes removing a configuration with the right to put it.
        ("s3", "PutBucketEncryption" | "DeleteBucketEncryption") => "PutEncryptionConfiguration",
        ("s3", "GetPublicAccessBlock") => "GetBucketPublicAccessBlock",
        ("s3", "PutPublicAccessBlock" | "DeletePublicAccessBlock") => "PutBucketPublicAccessBlock",
        ("s3", "GetBucketLifecycleConfiguration") => "GetLifecycleConfiguration",
        ("s3", "PutBucketLifecycleConfiguration") => "PutLifecycleConfiguration",
        ("sqs", "DeleteMessageBatch") => "DeleteMessage",
        ("sqs", "SendMessageBatch") => "SendMessage",
        (_, operation) => operation,
    };
    format!("{prefix}:{action}")
}

/// The actions the runbooks' steps name, each once, in registry order.
pub fn actions_of(runbooks: &[crate::runbook::LoadedRunbook]) -> Vec<&'static dyn Action> {
    let named: BTreeSet<&str> = runbooks
        .iter()
        .flat_map(|r| r.runbook.steps.iter().map(|s| s.action.value.as_str()))
        .collect();
    crate::actions::registry()
        .iter()
        .copied()
        .filter(|a| named.contains(a.info().name))
        .collect()
}

/// The rights that are not themselves calls harden makes, so no recording shows them:
/// `iam:PassRole` (checked on the call that passes the role) and what EC2 asks KMS for.
pub fn is_implied(action: &str) -> bool {
    action == "iam:PassRole" || KMS_FOR_EBS.contains(&action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_operations_are_authorized_by_their_iam_names() {
        assert_eq!(iam_action("S3", "HeadBucket"), "s3:ListBucket");
        assert_eq!(
            iam_action("S3", "PutBucketEncryption"),
            "s3:PutEncryptionConfiguration"
        );
        assert_eq!(
            iam_action("Config Service", "PutDeliveryChannel"),
            "config:PutDeliveryChannel"
        );
        assert_eq!(
            iam_action("CloudWatch Logs", "CreateLogGroup"),
            "logs:CreateLogGroup"
        );
        assert_eq!(iam_action("SQS", "DeleteMessageBatch"), "sqs:DeleteMessage");
    }

    #[test]
    fn the_read_only_policy_holds_no_change_and_the_apply_policy_passes_roles_only_to_named_services()
     {
        let all: Vec<&dyn Action> = crate::actions::registry().to_vec();
        let read_only = policy(
            &all,
            Access::ReadOnly,
            &Features::default(),
            &PassedRoles::default(),
        );
        let actions: Vec<&String> = read_only.statement.iter().flat_map(|s| &s.action).collect();
        assert!(
            actions.iter().all(|a| {
                let verb = a.split(':').nth(1).unwrap_or_default();
                ["Describe", "Get", "List", "Head"]
                    .iter()
                    .any(|p| verb.starts_with(p))
            }),
            "{actions:?}"
        );
        let passed = PassedRoles(BTreeMap::from([(
            "config.amazonaws.com",
            BTreeSet::from([ANY_ROLE.to_string()]),
        )]));
        let apply = policy(&all, Access::Apply, &Features::default(), &passed);
        let pass = apply
            .statement
            .iter()
            .find(|s| s.action == ["iam:PassRole"])
            .expect("a pass-role statement");
        assert_eq!(pass.sid, "HardenPassRoleToConfig");
        assert_eq!(
            pass.condition["StringEquals"]["iam:PassedToService"],
            ["config.amazonaws.com"]
        );
        assert!(apply.statement.iter().any(|s| s.sid == "HardenKmsForEbs"
            && s.condition["StringLike"]["kms:ViaService"] == ["ec2.*.amazonaws.com"]));
    }

    #[test]
    fn the_readme_lists_the_policies_of_the_shipped_runbooks() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let runbooks = crate::cli::settings::load(&[root.join("runbooks")]).expect("runbooks load");
        let actions = actions_of(&runbooks);
        let params = crate::runbook::params::resolve(&runbooks, &[]).expect("defaults resolve");
        let passed = passed_roles(&runbooks, &params).expect("renders");
        assert_eq!(
            actions.len(),
            crate::actions::registry().len(),
            "every action is shipped"
        );
        let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
        for (access, flag) in [(Access::ReadOnly, "read-only"), (Access::Apply, "apply")] {
            let marker = format!("<!-- iam-policy --for {flag} -->\n```json\n");
            let start = readme.find(&marker).expect("the README marks the policy") + marker.len();
            let block =
                &readme[start..start + readme[start..].find("\n```").expect("a closed block")];
            let expected = serde_json::to_string_pretty(&policy(
                &actions,
                access,
                &Features::default(),
                &passed,
            ))
            .expect("a policy serializes");
            assert_eq!(
                block, expected,
                "README.md: paste `harden iam-policy runbooks/ --for {flag}`"
            );
        }
    }

    /// The roles the shipped runbooks pass with `--param` assignments `given`.
    fn shipped_passing(given: &[&str]) -> BTreeMap<&'static str, BTreeSet<String>> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let runbooks = crate::cli::settings::load(&[root.join("runbooks")]).expect("runbooks load");
        let assignments: Vec<crate::runbook::params::Assignment> = given
            .iter()
            .map(|a| a.parse().expect("an assignment"))
            .collect();
        let params = crate::runbook::params::resolve(&runbooks, &assignments).expect("resolves");
        passed_roles(&runbooks, &params).expect("renders").0
    }

    fn roles(arns: &[&str]) -> BTreeSet<String> {
        arns.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn with_the_defaults_only_configs_service_linked_role_is_passed() {
        assert_eq!(
            shipped_passing(&[]),
            BTreeMap::from([(
                "config.amazonaws.com",
                roles(&[
                    "arn:*:iam::*:role/aws-service-role/config.amazonaws.com/AWSServiceRoleForConfig"
                ])
            )])
        );
    }

    #[test]
    fn the_roles_passed_follow_the_parameters_given() {
        let passed = shipped_passing(&[
            "destination_type=cloud-watch-logs",
            "enable-aws-config.role_arn=arn:aws:iam::111111111111:role/recorder",
            "target_arn=arn:aws:events:us-east-1:999999999999:event-bus/central",
            "target_role_arn=arn:aws:iam::111111111111:role/to-central-bus",
        ]);
        assert_eq!(
            passed,
            BTreeMap::from([
                (
                    "config.amazonaws.com",
                    roles(&["arn:aws:iam::111111111111:role/recorder"])
                ),
                (
                    "events.amazonaws.com",
                    roles(&["arn:aws:iam::111111111111:role/to-central-bus"])
                ),
                (
                    "vpc-flow-logs.amazonaws.com",
                    roles(&["arn:*:iam::*:role/harden-vpc-flow-logs-delivery"])
                ),
            ])
        );
        let renamed = shipped_passing(&[
            "destination_type=cloud-watch-logs",
            "delivery_role_name=team-flow-logs",
        ]);
        assert_eq!(
            renamed["vpc-flow-logs.amazonaws.com"],
            roles(&["arn:*:iam::*:role/team-flow-logs"])
        );
    }

    #[test]
    fn a_role_only_discovery_can_name_allows_every_role_and_the_statement_says_which_service() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("recorder.yaml");
        std::fs::write(
            &path,
            r#"version: 1
id: recorder-from-item
title: A recorder role per region
description: A recorder role per region, named from the discovered setup.
discover:
  recorder:
    resource: config:recorder
steps:
  - id: recorder
    description: Hold the recorder to its own role.
    action: config:ensure-recorder
    for_each: recorder
    args:
      role_arn: "arn:aws:iam::111111111111:role/recorder-{{item.region}}"
      bucket_name: logs
"#,
        )
        .expect("write");
        let runbooks = crate::cli::settings::load(&[path]).expect("loads");
        let params = crate::runbook::params::resolve(&runbooks, &[]).expect("resolves");
        let passed = passed_roles(&runbooks, &params).expect("renders");
        assert_eq!(
            passed.0,
            BTreeMap::from([("config.amazonaws.com", roles(&[ANY_ROLE]))])
        );
        let document = policy(
            &actions_of(&runbooks),
            Access::Apply,
            &Features::default(),
            &passed,
        );
        let pass: Vec<&Statement> = document
            .statement
            .iter()
            .filter(|s| s.action == ["iam:PassRole"])
            .collect();
        assert_eq!(pass.len(), 1);
        assert_eq!(pass[0].resource, [ANY_ROLE]);
        assert_eq!(
            pass[0].condition["StringEquals"]["iam:PassedToService"],
            ["config.amazonaws.com"]
        );
        assert_eq!(sid_word("vpc-flow-logs.amazonaws.com"), "VpcFlowLogs");
    }
}
