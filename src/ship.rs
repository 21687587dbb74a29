//! Shipping a run's report and audit segment to S3, where a scheduled run on a machine
//! (or a Kubernetes pod) that keeps nothing can leave them. Objects are written with
//! server-side encryption, and their keys name the account that ran harden, the shard
//! and the run (ids unique per run), so runs, shards and accounts never overwrite one
//! another: `harden/reports/ACCOUNT/SHARD/RUN_ID/report.json` and
//! `harden/audit/ACCOUNT/SHARD/RUN_ID.jsonl`.

use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;

use crate::accounts::Shard;
use crate::aws::{Answer, RegionClients};
use crate::error::{Error, Result};

/// Where a run's objects go.
#[derive(Debug, Clone)]
pub struct Destination<'a> {
    /// The account harden ran as.
    pub account: &'a str,
    /// The shard, when the run covered one.
    pub shard: Option<Shard>,
    /// The run.
    pub run_id: &'a str,
}

impl Destination<'_> {
    fn shard_part(&self) -> String {
        match self.shard {
            Some(s) => format!("shard-{}-of-{}", s.index, s.count),
            None => "all".into(),
        }
    }

    /// The key of one report file.
    pub fn report_key(&self, file: &str) -> String {
        format!(
            "harden/reports/{}/{}/{}/{file}",
            self.account,
            self.shard_part(),
            self.run_id
        )
    }

    /// The key of the run's audit segment.
    pub fn audit_key(&self) -> String {
        format!(
            "harden/audit/{}/{}/{}.jsonl",
            self.account,
            self.shard_part(),
            self.run_id
        )
    }
}

/// Writes `body` to `bucket/key`, encrypted at rest (SSE-S3, or SSE-KMS with `kms_key`).
pub async fn put(
    clients: &RegionClients,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    content_type: &str,
    kms_key: Option<&str>,
) -> Result<()> {
    let mut request = clients
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type(content_type)
        .body(ByteStream::from(body));
    request = match kms_key {
        Some(key_id) => request
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .ssekms_key_id(key_id),
        None => request.server_side_encryption(ServerSideEncryption::Aes256),
    };
    request.send().await.or_failure("PutObject")?;
    Ok(())
}

/// The lines of the audit log that belong to `run_id`, exactly as written (each keeps
/// its own and its predecessor's hash, so the segment can be checked against the log).
pub fn audit_segment(log: &Path, run_id: &str) -> Result<Vec<u8>> {
    let text = std::fs::read_to_string(log).map_err(|e| Error::io(log, e))?;
    let mut out = String::new();
    for line in text.lines() {
        let ours = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .is_some_and(|record| record["run_id"] == run_id);
        if ours {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out.into_bytes())
}
