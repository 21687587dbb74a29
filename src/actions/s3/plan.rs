//! `s3:ensure-bucket`: an exact plan of the bucket's creation and settings, a policy
//! merged by `Sid`, and the inverse of each change.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::actions::{
    Action, ActionInfo, ActionPlan, ArgSpec, Calls, DraftChain, Inverse, Resource, ResourceKind,
    arg, arguments_of, state_of, typed_args,
};
use crate::plan::{ApiCall, ChangeKind};
use crate::template::KNOWN_AFTER_APPLY;

use super::calls::BucketCalls;
use super::kind::{Bucket, BucketEncryption, PublicAccessBlock};

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
        let mut chain = DraftChain::new("s3", state_of(bucket));
        if !bucket.exists {
            current.exists = true;
            let mut after = state_of(&current);
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
        let was: Bucket = crate::actions::recorded(before, "bucket")?;
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
