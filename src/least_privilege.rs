//! The least IAM policy a runbook set needs (`harden iam-policy`): the IAM actions each
//! concern's calls declare ([`Rights`]), split into what planning reads and what
//! applying changes, with `iam:PassRole` held to the services roles are passed to and
//! the KMS rights EC2 uses on the caller's behalf when it encrypts EBS copies. The
//! declarations are checked against every call the integration suite records (see
//! [`crate::aws::record`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::actions::Action;

/// The IAM actions one AWS concern's calls need, as `service:Action`.
#[derive(Debug)]
pub struct Rights {
    /// Discovery, the reads of the stale-plan check and read-back, and waiters.
    pub reads: &'static [&'static str],
    /// The changes, their compensations and their inverses (rollback). EC2 checks a
    /// `DryRun` probe against these too.
    pub changes: &'static [&'static str],
    /// Services a change passes a role to (`iam:PassedToService`), e.g.
    /// `config.amazonaws.com`.
    pub passes_role_to: &'static [&'static str],
    /// Whether EC2 uses KMS keys for these calls on the caller's behalf (encrypted
    /// snapshot copies and volumes).
    pub kms_via_ec2: bool,
    /// The rights of other calls these build on (an instance's swap makes its volumes'
    /// calls), held too.
    pub includes: &'static [&'static Rights],
}

impl Rights {
    /// These rights and, depth first, those they include.
    pub fn all(&'static self) -> Vec<&'static Rights> {
        let mut all = vec![self];
        for included in self.includes {
            all.extend(included.all());
        }
        all
    }
}

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

/// The least policy for `actions` (the runbooks' steps' actions), for `access`, with
/// the rights `features` need.
pub fn policy(actions: &[&dyn Action], access: Access, features: &Features) -> PolicyDocument {
    let everything = vec!["*".to_string()];
    let mut reads: BTreeSet<String> = strings(ENGINE_READS).collect();
    let mut changes = BTreeSet::new();
    let mut passed_to = BTreeSet::new();
    let mut kms = false;
    for rights in actions.iter().flat_map(|a| a.calls().rights().all()) {
        reads.extend(strings(rights.reads));
        changes.extend(strings(rights.changes));
        passed_to.extend(strings(rights.passes_role_to));
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
    if !passed_to.is_empty() {
        statement.push(
            Statement::new(
                "HardenPassRoles",
                strings(&["iam:PassRole"]),
                vec!["arn:*:iam::*:role/*".to_string()],
            )
            .with_condition(
                "StringEquals",
                "iam:PassedToService",
                passed_to.into_iter().collect(),
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
        let read_only = policy(&all, Access::ReadOnly, &Features::default());
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
        let apply = policy(&all, Access::Apply, &Features::default());
        let pass = apply
            .statement
            .iter()
            .find(|s| s.sid == "HardenPassRoles")
            .expect("a pass-role statement");
        assert_eq!(
            pass.condition["StringEquals"]["iam:PassedToService"],
            [
                "config.amazonaws.com",
                "events.amazonaws.com",
                "vpc-flow-logs.amazonaws.com"
            ]
        );
        assert!(apply.statement.iter().any(|s| s.sid == "HardenKmsForEbs"
            && s.condition["StringLike"]["kms:ViaService"] == ["ec2.*.amazonaws.com"]));
    }

    #[test]
    fn the_readme_lists_the_policies_of_the_shipped_runbooks() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let runbooks = crate::cli::settings::load(&[root.join("runbooks")]).expect("runbooks load");
        let actions = actions_of(&runbooks);
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
            let expected =
                serde_json::to_string_pretty(&policy(&actions, access, &Features::default()))
                    .expect("a policy serializes");
            assert_eq!(
                block, expected,
                "README.md: paste `harden iam-policy runbooks/ --for {flag}`"
            );
        }
    }
}
