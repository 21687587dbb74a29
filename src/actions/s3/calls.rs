//! The S3 calls of this concern as typed inputs in AWS's field names, and how each is
//! applied.

use async_trait::async_trait;
use aws_sdk_s3::operation::RequestId;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
    ServerSideEncryptionConfiguration, ServerSideEncryptionRule, VersioningConfiguration,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::actions::{Applied, Calls, state_of, typed_call};
use crate::aws::{Answer, RegionClients};
use crate::error::{Error, Result};
use crate::plan::Change;

use super::read::read_bucket;

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
            ..crate::actions::Rights::NONE
        }
    }

    fn check(&self, change: &Change) -> Result<()> {
        typed_call::<BucketCall>(change).map(drop)
    }

    async fn read(&self, clients: &RegionClients, resource_id: &str) -> Result<Value> {
        Ok(state_of(&read_bucket(clients, resource_id).await?))
    }

    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        _current: &Value,
    ) -> Result<Applied> {
        let s3 = &clients.s3;
        let operation = change.call.operation.as_str();
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
                    .or_failure(operation)?
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
                    .or_failure(operation)?
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
                    .or_failure(operation)?
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
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            BucketCall::PutBucketPolicy(input) => s3
                .put_bucket_policy()
                .bucket(input.bucket)
                .policy(input.policy.to_string())
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            BucketCall::DeleteBucket(input) => s3
                .delete_bucket()
                .bucket(input.bucket)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            BucketCall::DeletePublicAccessBlock(input) => s3
                .delete_public_access_block()
                .bucket(input.bucket)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            BucketCall::DeleteBucketEncryption(input) => s3
                .delete_bucket_encryption()
                .bucket(input.bucket)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            BucketCall::DeleteBucketPolicy(input) => s3
                .delete_bucket_policy()
                .bucket(input.bucket)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
        };
        Ok(Applied::request(request_id.as_deref()))
    }
}
