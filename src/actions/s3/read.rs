//! Reading a bucket's settings: each a call, a setting never made read as none.

use std::collections::BTreeMap;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::operation::RequestId;

use crate::aws::{RegionClients, failure};
use crate::error::{AwsFailure, Error, Result};

use super::kind::{Bucket, BucketEncryption, PublicAccessBlock};
use super::plan::normalize_policy;

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
pub(super) async fn read_bucket(clients: &RegionClients, name: &str) -> Result<Bucket> {
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
