//! S3 buckets that receive logs (CloudTrail, VPC flow logs, AWS Config): created when
//! missing, then held to Block Public Access, default encryption, versioning and a
//! bucket policy whose statements the runbook declares.
//!
//! A bucket is named, not listed: discovery looks each name up and reports a missing
//! bucket as `exists: false`, which plans a `CreateBucket`. Settings are separate calls,
//! each its own change, each read back. An existing bucket policy is merged by `Sid`:
//! statements the runbook declares replace those with the same `Sid`, the rest are kept.
//! S3 has no `DryRun`: dry-run lists its changes as not probed.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::operation::RequestId;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    Action, ActionInfo, ActionPlan, Applied, ArgSpec, Calls, DraftChain, Inverse, arg,
    arguments_of, typed_args, typed_call,
};
use crate::actions::{Resource, ResourceKind};
use crate::aws::{RegionClients, failure};
use crate::error::{AwsFailure, Error, Result};
use crate::inventory::{Filters, Kind, Narrowing, named};
use crate::plan::{ApiCall, Change, ChangeKind};
use crate::template::KNOWN_AFTER_APPLY;

/// Creates a bucket if missing and holds it to the given protections.
pub struct EnsureBucket;

static ENSURE: ActionInfo = ActionInfo {
    name: "s3:ensure-bucket",
    description: "create the bucket if missing (no LocationConstraint in us-east-1), then block public access, set default encryption, turn on versioning and merge the given policy statements into its policy (by Sid; other statements are kept)",
    resource_kind: ResourceKind::Bucket,
    outputs: &[],
    waits: false,
};

/// What the runbook asks of the bucket.
struct Wanted {
    block_public_access: bool,
    encryption: BucketEncryption,
    /// Whether the key was named: only then is an existing encryption replaced.
    key_given: bool,
    versioning: bool,
    statements: Vec<Value>,
}

/// The arguments of `s3:ensure-bucket`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BucketArgs {
    /// Turn on all four Block Public Access switches (default true).
    #[serde(default, deserialize_with = "arg::flag")]
    pub block_public_access: Option<bool>,
    /// Default encryption: AES256 (default) or aws:kms; an existing bucket already
    /// encrypted with either is left alone unless kms_key_id is given.
    #[serde(default, deserialize_with = "arg::text")]
    pub encryption: Option<String>,
    /// KMS key for aws:kms; empty for the AWS-managed key.
    #[serde(default, deserialize_with = "arg::text")]
    pub kms_key_id: Option<String>,
    /// Turn versioning on (default true).
    #[serde(default, deserialize_with = "arg::flag")]
    pub versioning: Option<bool>,
    /// IAM policy statements, each with a Sid, merged into the bucket policy.
    #[serde(default)]
    pub policy_statements: Vec<Value>,
}

fn wanted(args: &Value) -> std::result::Result<Wanted, String> {
    let args: BucketArgs = typed_args(args)?;
    let algorithm = match args.encryption {
        None => "AES256".to_string(),
        Some(s) if s == "AES256" || s == "aws:kms" => s,
        Some(other) => {
            return Err(format!(
                "encryption: expected AES256 or aws:kms, given {other}"
            ));
        }
    };
    let kms_key_id = args.kms_key_id;
    if kms_key_id.is_some() && algorithm != "aws:kms" {
        return Err("kms_key_id is given but encryption is not aws:kms".into());
    }
    let statements: Vec<Value> = args
        .policy_statements
        .iter()
        .map(normalize_policy)
        .collect();
    let mut sids = std::collections::BTreeSet::new();
    for (index, statement) in statements.iter().enumerate() {
        match statement.get("Sid").and_then(Value::as_str) {
            Some(sid) if !sid.is_empty() => {
                if !sids.insert(sid.to_string()) {
                    return Err(format!("policy_statements: Sid {sid} is given twice"));
                }
            }
            _ => {
                return Err(format!(
                    "policy_statements[{index}]: every statement needs a Sid, by which it is merged into an existing policy"
                ));
            }
        }
    }
    Ok(Wanted {
        block_public_access: args.block_public_access.unwrap_or(true),
        key_given: kms_key_id.is_some(),
        encryption: BucketEncryption {
            algorithm,
            kms_key_id,
        },
        versioning: args.versioning.unwrap_or(true),
        statements,
    })
}

/// A policy document in one canonical form, so a read-back compares equal to what was
/// sent: lists of one become the value itself (IAM treats both alike).
pub fn normalize_policy(value: &Value) -> Value {
    match value {
        Value::Array(items) if items.len() == 1 => normalize_policy(&items[0]),
        Value::Array(items) => Value::Array(items.iter().map(normalize_policy).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), normalize_policy(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `policy` with `statements` merged in by `Sid`: same-Sid statements are replaced in
/// place, new ones appended, everything else kept.
fn merge_policy(policy: Option<&Value>, statements: &[Value]) -> Value {
    let mut merged = policy
        .cloned()
        .unwrap_or_else(|| json!({"Version": "2012-10-17"}));
    let mut existing: Vec<Value> = match merged.get("Statement") {
        Some(Value::Array(items)) => items.clone(),
        Some(Value::Null) | None => Vec::new(),
        Some(one) => vec![one.clone()],
    };
    for statement in statements {
        let sid = statement.get("Sid");
        match existing.iter_mut().find(|s| s.get("Sid") == sid) {
            Some(slot) => *slot = statement.clone(),
            None => existing.push(statement.clone()),
        }
    }
    merged["Statement"] = Value::Array(existing);
    normalize_policy(&merged)
}

/// PutBucketEncryption's input for `encryption` (with an S3 Bucket Key for KMS, which
/// cuts KMS requests).
fn encryption_input(bucket: &str, encryption: &BucketEncryption) -> Value {
    let mut by_default = json!({"SSEAlgorithm": encryption.algorithm});
    if let Some(key) = &encryption.kms_key_id {
        by_default["KMSMasterKeyID"] = json!(key);
    }
    json!({"Bucket": bucket, "ServerSideEncryptionConfiguration": {"Rules": [{
        "ApplyServerSideEncryptionByDefault": by_default,
        "BucketKeyEnabled": encryption.algorithm == "aws:kms"}]}})
}

fn state(bucket: &Bucket) -> Value {
    serde_json::to_value(bucket).unwrap_or_default()
}

impl Action for EnsureBucket {
    fn arguments(&self) -> Vec<ArgSpec> {
        arguments_of::<BucketArgs>()
    }

    fn info(&self) -> &'static ActionInfo {
        &ENSURE
    }

    fn plan(&self, target: &Resource, args: &Value) -> std::result::Result<ActionPlan, String> {
        let Resource::Bucket(bucket) = target else {
            return Err(format!("expected an S3 bucket, given {}", target.kind()));
        };
        let wanted = wanted(args)?;
        let name = bucket.name.clone();
        let mut current = bucket.clone();
        let mut chain = DraftChain::new("s3", state(bucket));
        if !bucket.exists {
            current.exists = true;
            let mut after = state(&current);
            // New buckets' defaults differ by partition and date (AWS now blocks public
            // access and encrypts with SSE-S3 by default); the next changes set both.
            after["public_access_block"] = Value::String(KNOWN_AFTER_APPLY.into());
            after["encryption"] = Value::String(KNOWN_AFTER_APPLY.into());
            let mut input = json!({"Bucket": name});
            // us-east-1 refuses a LocationConstraint naming itself.
            if bucket.region != "us-east-1" {
                input["CreateBucketConfiguration"] = json!({"LocationConstraint": bucket.region});
            }
            chain.push(
                ChangeKind::Create,
                format!("create bucket {name} in {}", bucket.region),
                after,
                "CreateBucket",
                input,
            );
        }
        let fresh = !bucket.exists;
        if wanted.block_public_access
            && (fresh || current.public_access_block != Some(PublicAccessBlock::ALL_ON))
        {
            current.public_access_block = Some(PublicAccessBlock::ALL_ON);
            let mut after = chain.state().clone();
            after["public_access_block"] = json!(PublicAccessBlock::ALL_ON);
            chain.push(
                ChangeKind::Update,
                format!("block all public access to bucket {name}"),
                after,
                "PutPublicAccessBlock",
                json!({"Bucket": name, "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": true, "IgnorePublicAcls": true,
                    "BlockPublicPolicy": true, "RestrictPublicBuckets": true}}),
            );
        }
        let encryption_ok = match &current.encryption {
            _ if fresh => false,
            None => false,
            Some(_) if !wanted.key_given => true,
            Some(e) => *e == wanted.encryption,
        };
        if !encryption_ok {
            current.encryption = Some(wanted.encryption.clone());
            let mut after = chain.state().clone();
            after["encryption"] = json!(wanted.encryption);
            chain.push(
                ChangeKind::Update,
                format!(
                    "encrypt bucket {name} by default with {}",
                    wanted.encryption.algorithm
                ),
                after,
                "PutBucketEncryption",
                encryption_input(&name, &wanted.encryption),
            );
        }
        if wanted.versioning && current.versioning.as_deref() != Some("Enabled") {
            current.versioning = Some("Enabled".into());
            let mut after = chain.state().clone();
            after["versioning"] = json!("Enabled");
            chain.push(
                ChangeKind::Update,
                format!("turn on versioning of bucket {name}"),
                after,
                "PutBucketVersioning",
                json!({"Bucket": name, "VersioningConfiguration": {"Status": "Enabled"}}),
            );
        }
        if !wanted.statements.is_empty() {
            let merged = merge_policy(current.policy.as_ref(), &wanted.statements);
            if current.policy.as_ref() != Some(&merged) {
                let sids: Vec<&str> = wanted
                    .statements
                    .iter()
                    .filter_map(|s| s.get("Sid").and_then(Value::as_str))
                    .collect();
                let summary = if current.policy.is_some() {
                    format!(
                        "merge statements {} into the policy of bucket {name} (other statements kept)",
                        sids.join(", ")
                    )
                } else {
                    format!("set the policy of bucket {name}: {}", sids.join(", "))
                };
                current.policy = Some(merged.clone());
                let mut after = chain.state().clone();
                after["policy"] = merged.clone();
                chain.push(
                    ChangeKind::Update,
                    summary,
                    after,
                    "PutBucketPolicy",
                    json!({"Bucket": name, "Policy": merged}),
                );
            }
        }
        Ok(chain.into_plan(Resource::Bucket(current)))
    }

    fn calls(&self) -> &'static dyn Calls {
        &BucketCalls
    }

    /// A bucket the run created is deleted (S3 refuses while it holds any object or
    /// version, so only an empty one goes); on a bucket that existed, each setting gets
    /// its recorded value back, or is deleted when it had none. Versioning never turned
    /// on cannot return to that: S3 can only suspend it, so that change is refused.
    fn inverse(
        &self,
        call: &ApiCall,
        before: &Value,
        _after: &Value,
    ) -> std::result::Result<Inverse, String> {
        let was: Bucket = super::recorded(before, "bucket")?;
        let name = was.name.clone();
        let bucket = json!({"Bucket": name});
        match call.operation.as_str() {
            "CreateBucket" if !was.exists => Ok(Inverse::deleting_created(
                before,
                format!("delete bucket {name}, which the run created, if it is empty"),
                "DeleteBucket",
                bucket,
            )),
            "CreateBucket" => Err(format!("bucket {name} existed before the run")),
            "PutPublicAccessBlock" => Ok(match was.public_access_block {
                None => Inverse::restoring(
                    before,
                    format!("remove bucket {name}'s public access block, as before the run"),
                    "DeletePublicAccessBlock",
                    bucket,
                ),
                Some(block) => Inverse::restoring(
                    before,
                    format!("put bucket {name}'s public access block back"),
                    "PutPublicAccessBlock",
                    json!({"Bucket": name, "PublicAccessBlockConfiguration": {
                        "BlockPublicAcls": block.block_public_acls,
                        "IgnorePublicAcls": block.ignore_public_acls,
                        "BlockPublicPolicy": block.block_public_policy,
                        "RestrictPublicBuckets": block.restrict_public_buckets}}),
                ),
            }),
            "PutBucketEncryption" => Ok(match was.encryption {
                None => Inverse::restoring(
                    before,
                    format!("remove bucket {name}'s default encryption, as before the run"),
                    "DeleteBucketEncryption",
                    bucket,
                ),
                Some(encryption) => Inverse::restoring(
                    before,
                    format!("put bucket {name}'s default encryption back"),
                    "PutBucketEncryption",
                    encryption_input(&name, &encryption),
                ),
            }),
            "PutBucketVersioning" => match was.versioning.as_deref() {
                Some("Suspended") => Ok(Inverse::restoring(
                    before,
                    format!("suspend versioning of bucket {name} again"),
                    "PutBucketVersioning",
                    json!({"Bucket": name, "VersioningConfiguration": {"Status": "Suspended"}}),
                )),
                _ => Err(format!(
                    "versioning of bucket {name} was never on before the run; S3 can only suspend it"
                )),
            },
            "PutBucketPolicy" => Ok(match was.policy {
                None => Inverse::restoring(
                    before,
                    format!("delete bucket {name}'s policy, as before the run"),
                    "DeleteBucketPolicy",
                    bucket,
                ),
                Some(policy) => Inverse::restoring(
                    before,
                    format!("put bucket {name}'s policy back as it was"),
                    "PutBucketPolicy",
                    json!({"Bucket": name, "Policy": policy}),
                ),
            }),
            other => Err(format!("no inverse for {other}")),
        }
    }
}

/// Every call of this concern, as a plan stores it (S3's field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
enum BucketCall {
    CreateBucket(CreateBucketInput),
    PutPublicAccessBlock(PutBlockInput),
    PutBucketEncryption(PutEncryptionInput),
    PutBucketVersioning(PutVersioningInput),
    PutBucketPolicy(PutPolicyInput),
    /// Rollback: a bucket the run created, while empty.
    DeleteBucket(BucketName),
    DeletePublicAccessBlock(BucketName),
    DeleteBucketEncryption(BucketName),
    DeleteBucketPolicy(BucketName),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct BucketName {
    bucket: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CreateBucketInput {
    bucket: String,
    #[serde(default)]
    create_bucket_configuration: Option<LocationInput>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct LocationInput {
    location_constraint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PutBlockInput {
    bucket: String,
    public_access_block_configuration: BlockSwitches,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct BlockSwitches {
    block_public_acls: bool,
    ignore_public_acls: bool,
    block_public_policy: bool,
    restrict_public_buckets: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PutEncryptionInput {
    bucket: String,
    server_side_encryption_configuration: EncryptionConfigurationInput,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct EncryptionConfigurationInput {
    rules: Vec<EncryptionRuleInput>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct EncryptionRuleInput {
    apply_server_side_encryption_by_default: ByDefaultInput,
    #[serde(default)]
    bucket_key_enabled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ByDefaultInput {
    #[serde(rename = "SSEAlgorithm")]
    sse_algorithm: String,
    #[serde(rename = "KMSMasterKeyID", default)]
    kms_master_key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PutVersioningInput {
    bucket: String,
    versioning_configuration: VersioningInput,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct VersioningInput {
    status: String,
}

/// The policy is shown in the plan as a document and sent as its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PutPolicyInput {
    bucket: String,
    policy: Value,
}

/// Reads, applies (and cannot probe) bucket changes.
pub struct BucketCalls;

fn built<T, E: std::fmt::Display>(what: &str, result: std::result::Result<T, E>) -> Result<T> {
    result.map_err(|e| Error::Internal(format!("{what} does not build: {e}")))
}

#[async_trait]
impl Calls for BucketCalls {
    fn rights(&self) -> &'static crate::actions::Rights {
        &crate::actions::Rights {
            reads: &[
                "s3:ListBucket",
                "s3:GetEncryptionConfiguration",
                "s3:GetBucketPolicy",
                "s3:GetBucketTagging",
                "s3:GetBucketVersioning",
                "s3:GetBucketPublicAccessBlock",
            ],
            changes: &[
                "s3:CreateBucket",
                "s3:PutEncryptionConfiguration",
                "s3:PutBucketPolicy",
                "s3:PutBucketVersioning",
                "s3:PutBucketPublicAccessBlock",
                "s3:DeleteBucket",
                "s3:DeleteBucketPolicy",
            ],
            passes_role_to: &[],
            kms_via_ec2: false,
            includes: &[],
        }
    }

    fn check(&self, change: &Change) -> Result<()> {
        typed_call::<BucketCall>(change).map(drop)
    }

    async fn read(&self, clients: &RegionClients, resource_id: &str) -> Result<Value> {
        Ok(state(&read_bucket(clients, resource_id).await?))
    }

    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        _current: &Value,
    ) -> Result<Applied> {
        let s3 = &clients.s3;
        let operation = change.call.operation.as_str();
        let aws = |e| Error::Aws(e);
        let request_id = match typed_call::<BucketCall>(change)? {
            BucketCall::CreateBucket(input) => {
                let mut request = s3.create_bucket().bucket(input.bucket);
                if let Some(location) = input.create_bucket_configuration {
                    request = request.create_bucket_configuration(
                        CreateBucketConfiguration::builder()
                            .location_constraint(BucketLocationConstraint::from(
                                location.location_constraint.as_str(),
                            ))
                            .build(),
                    );
                }
                request
                    .send()
                    .await
                    .map_err(|e| aws(failure(operation, &e)))?
                    .request_id()
                    .map(str::to_string)
            }
            BucketCall::PutPublicAccessBlock(input) => {
                let switches = input.public_access_block_configuration;
                s3.put_public_access_block()
                    .bucket(input.bucket)
                    .public_access_block_configuration(
                        PublicAccessBlockConfiguration::builder()
                            .block_public_acls(switches.block_public_acls)
                            .ignore_public_acls(switches.ignore_public_acls)
                            .block_public_policy(switches.block_public_policy)
                            .restrict_public_buckets(switches.restrict_public_buckets)
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| aws(failure(operation, &e)))?
                    .request_id()
                    .map(str::to_string)
            }
            BucketCall::PutBucketEncryption(input) => {
                let rules = input
                    .server_side_encryption_configuration
                    .rules
                    .into_iter()
                    .map(|rule| {
                        let by_default = rule.apply_server_side_encryption_by_default;
                        let default = built(
                            "ServerSideEncryptionByDefault",
                            ServerSideEncryptionByDefault::builder()
                                .sse_algorithm(ServerSideEncryption::from(
                                    by_default.sse_algorithm.as_str(),
                                ))
                                .set_kms_master_key_id(by_default.kms_master_key_id)
                                .build(),
                        )?;
                        Ok(ServerSideEncryptionRule::builder()
                            .apply_server_side_encryption_by_default(default)
                            .set_bucket_key_enabled(rule.bucket_key_enabled)
                            .build())
                    })
                    .collect::<Result<Vec<_>>>()?;
                let config = built(
                    "ServerSideEncryptionConfiguration",
                    ServerSideEncryptionConfiguration::builder()
                        .set_rules(Some(rules))
                        .build(),
                )?;
                s3.put_bucket_encryption()
                    .bucket(input.bucket)
                    .server_side_encryption_configuration(config)
                    .send()
                    .await
                    .map_err(|e| aws(failure(operation, &e)))?
                    .request_id()
                    .map(str::to_string)
            }
            BucketCall::PutBucketVersioning(input) => s3
                .put_bucket_versioning()
                .bucket(input.bucket)
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::from(
                            input.versioning_configuration.status.as_str(),
                        ))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
            BucketCall::PutBucketPolicy(input) => s3
                .put_bucket_policy()
                .bucket(input.bucket)
                .policy(input.policy.to_string())
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
            BucketCall::DeleteBucket(input) => s3
                .delete_bucket()
                .bucket(input.bucket)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
            BucketCall::DeletePublicAccessBlock(input) => s3
                .delete_public_access_block()
                .bucket(input.bucket)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
            BucketCall::DeleteBucketEncryption(input) => s3
                .delete_bucket_encryption()
                .bucket(input.bucket)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
            BucketCall::DeleteBucketPolicy(input) => s3
                .delete_bucket_policy()
                .bucket(input.bucket)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
        };
        Ok(Applied::request(request_id.as_deref()))
    }
}

/// True when an S3 error is the "not configured" answer of a Get call.
fn not_configured<E: ProvideErrorMetadata>(error: &E, codes: &[&str]) -> bool {
    error.code().is_some_and(|c| codes.contains(&c))
}

/// The versioning status in a 200 answer the SDK could not parse. moto names the root
/// element `GetBucketVersioningResponse` where AWS says `VersioningConfiguration`; the
/// SDK refuses the name, but the answer is fine: `<Status>` holds the status, and no
/// `<Status>` means versioning was never turned on.
fn versioning_from_body<E>(
    error: &aws_sdk_s3::error::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> Option<Option<String>> {
    let raw = error.raw_response()?;
    if raw.status().as_u16() != 200 {
        return None;
    }
    let body = std::str::from_utf8(raw.body().bytes()?).ok()?;
    let status = body
        .split_once("<Status>")
        .and_then(|(_, rest)| rest.split_once("</Status>"))
        .map(|(status, _)| status.trim().to_string());
    Some(status)
}

/// Reads a bucket by name: whether it exists, its protections, policy and tags.
pub async fn read_bucket(clients: &RegionClients, name: &str) -> Result<Bucket> {
    let s3 = &clients.s3;
    match s3.head_bucket().bucket(name).send().await {
        Ok(_) => {}
        Err(e) => {
            let status = e.raw_response().map(|r| r.status().as_u16());
            if status == Some(404) {
                return Ok(Bucket::missing(name, &clients.region));
            }
            let mut f = failure("HeadBucket", &e);
            if status == Some(403) {
                f.message = format!(
                    "bucket {name} exists but this account may not use it (it may belong to another account): give another bucket name"
                );
            } else if status == Some(301) {
                f.message = format!(
                    "bucket {name} exists in another region than {}: give another bucket name",
                    clients.region
                );
            }
            return Err(Error::Aws(f));
        }
    }
    let (pab, encryption, versioning, policy, tags) = tokio::join!(
        s3.get_public_access_block().bucket(name).send(),
        s3.get_bucket_encryption().bucket(name).send(),
        s3.get_bucket_versioning().bucket(name).send(),
        s3.get_bucket_policy().bucket(name).send(),
        s3.get_bucket_tagging().bucket(name).send(),
    );
    let public_access_block = match pab {
        Ok(out) => out
            .public_access_block_configuration()
            .map(|c| PublicAccessBlock {
                block_public_acls: c.block_public_acls().unwrap_or(false),
                ignore_public_acls: c.ignore_public_acls().unwrap_or(false),
                block_public_policy: c.block_public_policy().unwrap_or(false),
                restrict_public_buckets: c.restrict_public_buckets().unwrap_or(false),
            }),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| not_configured(s, &["NoSuchPublicAccessBlockConfiguration"])) =>
        {
            None
        }
        Err(e) => return Err(Error::Aws(failure("GetPublicAccessBlock", &e))),
    };
    let encryption = match encryption {
        Ok(out) => out
            .server_side_encryption_configuration()
            .and_then(|c| c.rules().first())
            .and_then(|r| r.apply_server_side_encryption_by_default())
            .map(|d| BucketEncryption {
                algorithm: d.sse_algorithm().as_str().to_string(),
                kms_key_id: d.kms_master_key_id().map(str::to_string),
            }),
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                not_configured(s, &["ServerSideEncryptionConfigurationNotFoundError"])
            }) =>
        {
            None
        }
        Err(e) => return Err(Error::Aws(failure("GetBucketEncryption", &e))),
    };
    let versioning = match versioning {
        Ok(out) => out.status().map(|s| s.as_str().to_string()),
        Err(e) => match versioning_from_body(&e) {
            Some(status) => status,
            None => return Err(Error::Aws(failure("GetBucketVersioning", &e))),
        },
    };
    let policy = match policy {
        Ok(out) => match out.policy() {
            Some(text) => Some(normalize_policy(&serde_json::from_str(text).map_err(
                |e| {
                    Error::Aws(AwsFailure {
                        operation: "GetBucketPolicy".into(),
                        code: "UnreadablePolicy".into(),
                        message: format!("the policy of bucket {name} is not JSON: {e}"),
                        request_id: out.request_id().map(str::to_string),
                    })
                },
            )?)),
            None => None,
        },
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| not_configured(s, &["NoSuchBucketPolicy"])) =>
        {
            None
        }
        Err(e) => return Err(Error::Aws(failure("GetBucketPolicy", &e))),
    };
    let tags: BTreeMap<String, String> = match tags {
        Ok(out) => out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| not_configured(s, &["NoSuchTagSet"])) =>
        {
            BTreeMap::new()
        }
        Err(e) => return Err(Error::Aws(failure("GetBucketTagging", &e))),
    };
    Ok(Bucket {
        name: name.to_string(),
        region: clients.region.clone(),
        exists: true,
        public_access_block,
        encryption,
        versioning,
        policy,
        tags,
    })
}

/// An S3 bucket a runbook names (a log destination), as far as harden cares: whether it
/// exists and how it is protected. The whole struct is the state bucket changes compare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Bucket name, which is also its id.
    pub name: String,
    /// The region it is in (or will be created in).
    pub region: String,
    /// False when no bucket has the name yet.
    pub exists: bool,
    /// The bucket's public access block; `None` when none is set.
    pub public_access_block: Option<PublicAccessBlock>,
    /// Default encryption; `None` when none is configured.
    pub encryption: Option<BucketEncryption>,
    /// `Enabled` or `Suspended`; `None` when versioning was never turned on.
    pub versioning: Option<String>,
    /// The bucket policy as JSON; `None` when it has none.
    pub policy: Option<serde_json::Value>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Bucket {
    /// A bucket that does not exist yet.
    pub fn missing(name: &str, region: &str) -> Self {
        Self {
            name: name.into(),
            region: region.into(),
            exists: false,
            public_access_block: None,
            encryption: None,
            versioning: None,
            policy: None,
            tags: BTreeMap::new(),
        }
    }
}

/// The four switches of S3 Block Public Access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicAccessBlock {
    /// BlockPublicAcls.
    pub block_public_acls: bool,
    /// IgnorePublicAcls.
    pub ignore_public_acls: bool,
    /// BlockPublicPolicy.
    pub block_public_policy: bool,
    /// RestrictPublicBuckets.
    pub restrict_public_buckets: bool,
}

impl PublicAccessBlock {
    /// Every switch on.
    pub const ALL_ON: Self = Self {
        block_public_acls: true,
        ignore_public_acls: true,
        block_public_policy: true,
        restrict_public_buckets: true,
    };
}

/// A bucket's default encryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketEncryption {
    /// `AES256` or `aws:kms` (or `aws:kms:dsse`).
    pub algorithm: String,
    /// The KMS key, for `aws:kms`; `None` means the AWS-managed key.
    pub kms_key_id: Option<String>,
}

impl Kind for Bucket {
    const NAME: &'static str = "s3:bucket";
    const FILTERS: &'static [&'static str] =
        // Looked up by name, not listed: `name` is required.
        &["name"];
    const NARROWING: Narrowing = Narrowing::Named;

    fn sample() -> Self {
        Bucket::missing("sample", "us-east-1")
    }

    fn id(&self) -> &str {
        &self.name
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.tags)
    }

    /// Looks up each bucket named.
    async fn discover(clients: &RegionClients, filters: &Filters) -> Result<Vec<Self>> {
        named(filters, "name", |name| read_bucket(clients, name)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(operation: &str) -> ApiCall {
        ApiCall {
            service: "s3".into(),
            operation: operation.into(),
            input: json!({"Bucket": "logs"}),
        }
    }

    #[test]
    fn a_created_bucket_is_deleted_and_an_existing_one_gets_its_settings_back() {
        let missing = state(&Bucket::missing("logs", "eu-west-1"));
        let created = EnsureBucket
            .inverse(&call("CreateBucket"), &missing, &json!(null))
            .expect("a way back");
        assert_eq!(
            (created.operation.as_str(), created.removes_created),
            ("DeleteBucket", true)
        );
        let existing = Bucket {
            exists: true,
            policy: Some(json!({"Version": "2012-10-17", "Statement": []})),
            ..Bucket::missing("logs", "eu-west-1")
        };
        let policy = EnsureBucket
            .inverse(&call("PutBucketPolicy"), &state(&existing), &json!(null))
            .expect("a way back");
        assert_eq!(policy.operation, "PutBucketPolicy");
        assert_eq!(
            policy.input["Policy"],
            existing.policy.clone().unwrap_or_default()
        );
        assert!(!policy.removes_created);
        let block = EnsureBucket
            .inverse(
                &call("PutPublicAccessBlock"),
                &state(&existing),
                &json!(null),
            )
            .expect("a way back");
        assert_eq!(block.operation, "DeletePublicAccessBlock");
        let never_versioned = EnsureBucket
            .inverse(
                &call("PutBucketVersioning"),
                &state(&existing),
                &json!(null),
            )
            .expect_err("S3 can only suspend versioning");
        assert!(
            never_versioned.contains("only suspend"),
            "{never_versioned}"
        );
    }

    fn statement(sid: &str, action: &str) -> Value {
        json!({"Sid": sid, "Effect": "Allow", "Principal": {"Service": "delivery.logs.amazonaws.com"},
               "Action": [action], "Resource": "arn:aws:s3:::b/*"})
    }

    fn plan(bucket: &Bucket, args: Value) -> ActionPlan {
        EnsureBucket
            .plan(&Resource::Bucket(bucket.clone()), &args)
            .expect("plans")
    }

    #[test]
    fn a_missing_bucket_is_created_then_protected_and_us_east_1_has_no_location_constraint() {
        let args = json!({"policy_statements": [statement("Write", "s3:PutObject")]});
        let planned = plan(&Bucket::missing("logs", "us-east-1"), args.clone());
        let operations: Vec<&str> = planned
            .changes
            .iter()
            .map(|c| c.call.operation.as_str())
            .collect();
        assert_eq!(
            operations,
            [
                "CreateBucket",
                "PutPublicAccessBlock",
                "PutBucketEncryption",
                "PutBucketVersioning",
                "PutBucketPolicy"
            ]
        );
        assert_eq!(planned.changes[0].call.input, json!({"Bucket": "logs"}));
        // Each change starts where the previous one ends.
        for pair in planned.changes.windows(2) {
            assert_eq!(pair[0].after, pair[1].before);
        }
        let elsewhere = plan(&Bucket::missing("logs", "eu-west-1"), args.clone());
        assert_eq!(
            elsewhere.changes[0].call.input,
            json!({"Bucket": "logs", "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1"}})
        );
        // Planned again on what it projects, nothing is left to do.
        let Some(Resource::Bucket(projected)) = planned.projected else {
            panic!("projects the bucket")
        };
        assert_eq!(plan(&projected, args).changes, Vec::new());
    }

    #[test]
    fn an_existing_policy_is_merged_by_sid_never_overwritten() {
        let mut bucket = Bucket::missing("logs", "eu-west-1");
        bucket.exists = true;
        bucket.public_access_block = Some(PublicAccessBlock::ALL_ON);
        bucket.encryption = Some(BucketEncryption {
            algorithm: "aws:kms".into(),
            kms_key_id: None,
        });
        bucket.versioning = Some("Enabled".into());
        bucket.policy = Some(normalize_policy(&json!({
            "Version": "2012-10-17",
            "Statement": [statement("Theirs", "s3:GetObject"), statement("Write", "s3:GetObject")]
        })));
        let planned = plan(
            &bucket,
            json!({"policy_statements": [statement("Write", "s3:PutObject"), statement("Check", "s3:GetBucketAcl")]}),
        );
        assert_eq!(planned.changes.len(), 1, "only the policy differs");
        assert_eq!(
            planned.changes[0].call.input["Policy"]["Statement"],
            normalize_policy(&json!([
                statement("Theirs", "s3:GetObject"),
                statement("Write", "s3:PutObject"),
                statement("Check", "s3:GetBucketAcl")
            ]))
        );
    }

    #[test]
    fn statements_without_a_sid_are_refused() {
        let error = EnsureBucket
            .plan(
                &Resource::Bucket(Bucket::missing("logs", "eu-west-1")),
                &json!({"policy_statements": [{"Effect": "Allow"}]}),
            )
            .expect_err("refused");
        assert!(error.contains("needs a Sid"), "{error}");
    }
}
