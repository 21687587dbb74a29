//! The S3 Control calls on the account's Block Public Access configuration, typed.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::kind::{self, s3control};
use crate::actions::{Applied, Calls, typed_call};
use crate::aws::{Answer, RegionClients};
use crate::error::Result;
use crate::inventory::PublicAccessBlock;
use crate::plan::Change;

/// Every call this concern makes, as a plan stores it: the operation and its input in
/// S3 Control's field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
pub(super) enum S3ControlCall {
    /// Sets the four switches (all four: the call replaces the configuration).
    PutPublicAccessBlock(PutInput),
    /// Removes the configuration (rollback, where the account had none).
    DeletePublicAccessBlock(DeleteInput),
}

/// PutPublicAccessBlock's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct PutInput {
    pub account_id: String,
    pub public_access_block_configuration: Switches,
}

/// The configuration, in S3 Control's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct Switches {
    pub block_public_acls: bool,
    pub ignore_public_acls: bool,
    pub block_public_policy: bool,
    pub restrict_public_buckets: bool,
}

impl From<PublicAccessBlock> for Switches {
    fn from(p: PublicAccessBlock) -> Self {
        Self {
            block_public_acls: p.block_public_acls,
            ignore_public_acls: p.ignore_public_acls,
            block_public_policy: p.block_public_policy,
            restrict_public_buckets: p.restrict_public_buckets,
        }
    }
}

/// DeletePublicAccessBlock's input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct DeleteInput {
    pub account_id: String,
}

/// Reads and changes the account's configuration.
pub(super) struct S3ControlCalls;

#[async_trait]
impl Calls for S3ControlCalls {
    fn rights(&self) -> &'static crate::actions::Rights {
        &crate::actions::Rights {
            reads: &["s3:GetAccountPublicAccessBlock"],
            // S3 authorizes removing the configuration with the right to put it.
            changes: &["s3:PutAccountPublicAccessBlock"],
            ..crate::actions::Rights::NONE
        }
    }

    fn check(&self, change: &Change) -> Result<()> {
        typed_call::<S3ControlCall>(change).map(drop)
    }

    async fn read(&self, clients: &RegionClients, account: &str) -> Result<Value> {
        Ok(crate::actions::state_of(
            &kind::read(clients, account).await?,
        ))
    }

    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        _current: &Value,
    ) -> Result<Applied> {
        let client = s3control(clients);
        match typed_call::<S3ControlCall>(change)? {
            S3ControlCall::PutPublicAccessBlock(input) => {
                let switches = input.public_access_block_configuration;
                let configuration =
                    aws_sdk_s3control::types::PublicAccessBlockConfiguration::builder()
                        .block_public_acls(switches.block_public_acls)
                        .ignore_public_acls(switches.ignore_public_acls)
                        .block_public_policy(switches.block_public_policy)
                        .restrict_public_buckets(switches.restrict_public_buckets)
                        .build();
                let out = client
                    .put_public_access_block()
                    .account_id(input.account_id)
                    .public_access_block_configuration(configuration)
                    .send()
                    .await
                    .or_failure("PutPublicAccessBlock")?;
                Ok(Applied::request(request_id(&out)))
            }
            S3ControlCall::DeletePublicAccessBlock(input) => {
                let out = client
                    .delete_public_access_block()
                    .account_id(input.account_id)
                    .send()
                    .await
                    .or_failure("DeletePublicAccessBlock")?;
                Ok(Applied::request(request_id(&out)))
            }
        }
    }
}

fn request_id(out: &impl aws_sdk_s3control::operation::RequestId) -> Option<&str> {
    out.request_id()
}
