//! The lease a run holds on each account-region while it changes it, so that two runs
//! from different state directories (each with its own lock) never change the same
//! account-region at once: the measured case is two EBS applies both snapshotting the
//! same volumes.
//!
//! With `--lease-bucket BUCKET`, a run writes `harden/leases/ACCOUNT/REGION.json` there
//! before its first change, with `If-None-Match: *`, so S3 lets exactly one writer
//! create it. A lease found expired (its holder died) is taken over with `If-Match` its
//! ETag, so of two runs taking it over only one succeeds. The run deletes its leases
//! when it ends. A run refused names the holder, its principal and until when.

use std::collections::BTreeSet;

use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};

use super::{RegionClients, failure};
use crate::aws::Answer;
use crate::error::{Error, Result};

/// Where leases are kept, and the clients to reach it.
#[derive(Debug, Clone)]
pub struct LeaseStore {
    /// The bucket.
    pub bucket: String,
    /// S3 clients of the bucket's region, with the caller's credentials.
    pub clients: RegionClients,
}

/// What a lease object says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The run holding it.
    pub run_id: String,
    /// Who runs it.
    pub principal: String,
    /// Since when.
    pub acquired_at: jiff::Timestamp,
    /// Until when; past it, another run may take it over.
    pub expires_at: jiff::Timestamp,
}

/// A lease this run holds.
#[derive(Debug, Clone)]
pub struct Held {
    key: String,
}

/// The key of an account-region's lease.
pub fn key(account: &str, region: &str) -> String {
    format!("harden/leases/{account}/{region}.json")
}

/// Takes the lease of each (account, region), in order; on a refusal, releases those
/// taken and says who holds it.
pub async fn acquire_all(
    store: &LeaseStore,
    places: &BTreeSet<(String, String)>,
    record: &LeaseRecord,
) -> Result<Vec<Held>> {
    let mut held = Vec::new();
    for (account, region) in places {
        match acquire(store, account, region, record).await {
            Ok(lease) => held.push(lease),
            Err(e) => {
                release_all(store, &held).await;
                return Err(e);
            }
        }
    }
    Ok(held)
}

async fn acquire(
    store: &LeaseStore,
    account: &str,
    region: &str,
    record: &LeaseRecord,
) -> Result<Held> {
    let key = key(account, region);
    let body = serde_json::to_vec(record).map_err(|e| Error::Internal(e.to_string()))?;
    let s3 = &store.clients.s3;
    let created = s3
        .put_object()
        .bucket(&store.bucket)
        .key(&key)
        .if_none_match("*")
        .body(ByteStream::from(body.clone()))
        .send()
        .await;
    let error = match created {
        Ok(_) => return Ok(Held { key }),
        Err(e) => e,
    };
    if !precondition_failed(&error) {
        return Err(Error::Aws(failure("PutObject", &error)));
    }
    // Someone holds it: refuse, unless it expired, then take it over by its ETag.
    let found = s3
        .get_object()
        .bucket(&store.bucket)
        .key(&key)
        .send()
        .await
        .or_failure("GetObject")?;
    let etag = found.e_tag().unwrap_or_default().to_string();
    let bytes = found
        .body
        .collect()
        .await
        .map_err(|e| Error::Internal(format!("reading lease {key}: {e}")))?
        .into_bytes();
    let holder: Option<LeaseRecord> = serde_json::from_slice(&bytes).ok();
    // An unreadable lease is treated as expired: it cannot say who holds it.
    if let Some(holder) = holder.filter(|h| h.expires_at > jiff::Timestamp::now()) {
        return Err(Error::Leased {
            account: account.to_string(),
            region: region.to_string(),
            run: holder.run_id,
            principal: holder.principal,
            until: holder.expires_at.to_string(),
        });
    }
    let taken = s3
        .put_object()
        .bucket(&store.bucket)
        .key(&key)
        .if_match(etag)
        .body(ByteStream::from(body))
        .send()
        .await;
    match taken {
        Ok(_) => Ok(Held { key }),
        Err(e) if precondition_failed(&e) => Err(Error::Leased {
            account: account.to_string(),
            region: region.to_string(),
            run: "another run".into(),
            principal: "(it took over the expired lease first)".into(),
            until: "its end".into(),
        }),
        Err(e) => Err(Error::Aws(failure("PutObject", &e))),
    }
}

fn precondition_failed<E>(
    error: &aws_smithy_runtime_api::client::result::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> bool {
    error
        .raw_response()
        .is_some_and(|r| matches!(r.status().as_u16(), 412 | 409))
}

/// Deletes the leases; a lease that cannot be deleted expires on its own, so this only
/// warns.
pub async fn release_all(store: &LeaseStore, held: &[Held]) {
    for lease in held {
        if let Err(e) = store
            .clients
            .s3
            .delete_object()
            .bucket(&store.bucket)
            .key(&lease.key)
            .send()
            .await
        {
            tracing::warn!(key = %lease.key, error = %e, "could not release a lease; it expires on its own");
        }
    }
}
