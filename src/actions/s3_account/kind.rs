//! The account's Block Public Access configuration as a resource, and reading it.

use std::collections::BTreeMap;

use aws_sdk_s3control::error::ProvideErrorMetadata;
use serde::{Deserialize, Serialize};

use crate::aws::{RegionClients, failure};
use crate::error::{Error, Result};
use crate::event::KnownEvent;
use crate::inventory::{Filters, Kind, Narrowing, PublicAccessBlock, named};

/// The Block Public Access configuration of one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountPublicAccessBlock {
    /// The account's id.
    pub account_id: String,
    /// The four switches; `None` when the account has no configuration (nothing
    /// blocked at account level).
    pub settings: Option<PublicAccessBlock>,
}

impl AccountPublicAccessBlock {
    /// The switches in force: all off without a configuration.
    pub fn in_force(&self) -> PublicAccessBlock {
        self.settings.unwrap_or(PublicAccessBlock {
            block_public_acls: false,
            ignore_public_acls: false,
            block_public_policy: false,
            restrict_public_buckets: false,
        })
    }
}

impl Kind for AccountPublicAccessBlock {
    const NAME: &'static str = "s3:account-public-access-block";
    // Looked up by the account it belongs to: `account` is required (the runbook
    // renders `{{account_id}}`).
    const FILTERS: &'static [&'static str] = &["account"];
    const NARROWING: Narrowing = Narrowing::Named;
    const UNDONE_BY: &'static [KnownEvent] = &[
        KnownEvent::new("PutAccountPublicAccessBlock", "s3.amazonaws.com"),
        KnownEvent::new("DeleteAccountPublicAccessBlock", "s3.amazonaws.com"),
    ];

    fn sample() -> Self {
        Self {
            account_id: "000000000000".into(),
            settings: None,
        }
    }

    fn id(&self) -> &str {
        &self.account_id
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        // An account setting has no tags to exempt it by.
        None
    }

    /// Reads the configuration of each account named.
    async fn discover(clients: &RegionClients, filters: &Filters) -> Result<Vec<Self>> {
        named(filters, "account", |account| read(clients, account)).await
    }
}

/// The S3 Control client of `clients`' region, made once per region.
pub(super) fn s3control(clients: &RegionClients) -> aws_sdk_s3control::Client {
    clients.service_client(client)
}

/// An S3 Control client from `config`, with the call recorder. The account id is a
/// host label on AWS (`ACCOUNT.s3-control.REGION.amazonaws.com`); an endpoint override
/// that is an IP address or `localhost` (an emulator) has no names under it, so there
/// the label is left out and the account travels in the `x-amz-account-id` header
/// alone, as it always does.
pub fn client(config: &aws_config::SdkConfig) -> aws_sdk_s3control::Client {
    crate::aws::client!(aws_sdk_s3control, config, |builder| {
        match config.endpoint_url().filter(|url| has_no_subdomains(url)) {
            Some(url) => builder.endpoint_resolver(FixedEndpoint(url.to_string())),
            None => builder,
        }
    })
}

fn has_no_subdomains(url: &str) -> bool {
    let host = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .split(['/', ':'])
        .next()
        .unwrap_or_default();
    host == "localhost" || host.parse::<std::net::Ipv4Addr>().is_ok() || url.contains("://[")
}

/// Every call to one URL, signed for S3 in the client's region.
#[derive(Debug)]
struct FixedEndpoint(String);

impl aws_sdk_s3control::config::endpoint::ResolveEndpoint for FixedEndpoint {
    fn resolve_endpoint<'a>(
        &'a self,
        params: &'a aws_sdk_s3control::config::endpoint::Params,
    ) -> aws_sdk_s3control::config::endpoint::EndpointFuture<'a> {
        let mut scheme = std::collections::HashMap::<String, aws_smithy_types::Document>::new();
        scheme.insert("name".into(), "sigv4".to_string().into());
        scheme.insert("signingName".into(), "s3".to_string().into());
        scheme.insert(
            "signingRegion".into(),
            params.region().unwrap_or("us-east-1").to_string().into(),
        );
        scheme.insert("disableDoubleEncoding".into(), true.into());
        aws_sdk_s3control::config::endpoint::EndpointFuture::ready(Ok(
            aws_smithy_types::endpoint::Endpoint::builder()
                .url(self.0.clone())
                .property(
                    "authSchemes",
                    vec![aws_smithy_types::Document::from(scheme)],
                )
                .build(),
        ))
    }
}

/// Reads the account's configuration (none is `settings: None`).
pub(super) async fn read(
    clients: &RegionClients,
    account: &str,
) -> Result<AccountPublicAccessBlock> {
    let answer = s3control(clients)
        .get_public_access_block()
        .account_id(account)
        .send()
        .await;
    let settings = match answer {
        Ok(out) => out
            .public_access_block_configuration()
            .map(|c| PublicAccessBlock {
                block_public_acls: c.block_public_acls().unwrap_or(false),
                ignore_public_acls: c.ignore_public_acls().unwrap_or(false),
                block_public_policy: c.block_public_policy().unwrap_or(false),
                restrict_public_buckets: c.restrict_public_buckets().unwrap_or(false),
            }),
        Err(e)
            if e.as_service_error().and_then(|s| s.code())
                == Some("NoSuchPublicAccessBlockConfiguration") =>
        {
            None
        }
        Err(e) => return Err(Error::Aws(failure("GetPublicAccessBlock", &e))),
    };
    Ok(AccountPublicAccessBlock {
        account_id: account.to_string(),
        settings,
    })
}
