//! Building SDK clients: credentials and region from the SDK's own chains, endpoint
//! overrides for emulators, the adaptive retry mode so throttling is absorbed, and the
//! caller identity every plan and audit record names. Nothing outside [`crate::actions`]
//! and this module touches an SDK type.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::operation::RequestId;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::error::{AwsFailure, Error, Result};

pub mod lease;
pub mod limiter;
pub mod persist;
pub mod record;

pub use limiter::Ec2Rates;

/// A client of the SDK crate `$sdk` from the configuration `$config`, carrying the
/// call recorder (see [`record`]); every client harden makes is made here.
macro_rules! client {
    ($sdk:ident, $config:expr) => {
        $crate::aws::client!($sdk, $config, |builder| builder)
    };
    ($sdk:ident, $config:expr, |$builder:ident| $adjust:expr) => {{
        let $builder =
            $sdk::config::Builder::from($config).interceptor($crate::aws::record::Recorder);
        $sdk::Client::from_conf($adjust.build())
    }};
}
pub(crate) use client;

/// The endpoint `--localstack` uses when no `--endpoint-url` is given.
pub const LOCALSTACK_ENDPOINT: &str = "http://127.0.0.1:4566";

/// How to reach AWS, from the global flags.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// Endpoint override for every service (an emulator).
    pub endpoint_url: Option<String>,
    /// Named profile.
    pub profile: Option<String>,
    /// `--localstack`: LocalStack's endpoint and test credentials when none are set.
    pub localstack: bool,
    /// EC2's request-token buckets to pace calls by, per account-region; `None` sends
    /// calls as fast as they come (the adaptive retry alone then backs off).
    pub ec2_rates: Option<Ec2Rates>,
}

/// Who is calling, from STS GetCallerIdentity.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CallerIdentity {
    /// The account id.
    pub account_id: String,
    /// The principal's ARN (never credentials).
    pub arn: String,
    /// `aws`, `aws-cn`, `aws-us-gov`, from the ARN.
    pub partition: String,
}

/// Loaded SDK configuration, from which per-region clients are made.
#[derive(Debug, Clone)]
pub struct Aws {
    config: SdkConfig,
    /// A fixed EC2 client used for every region: how unit tests put mocked responses
    /// (aws-smithy-mocks) behind the engine for states no emulator shows.
    ec2: Option<aws_sdk_ec2::Client>,
    /// One set of clients per region, made once: the adaptive retry mode's client-side
    /// rate limiter and EC2's token buckets live in the clients, so every call to a
    /// region must share them.
    clients: Arc<Mutex<HashMap<String, RegionClients>>>,
    /// EC2's buckets, when calls are paced; the HTTP client the paced EC2 clients wrap.
    pacing: Option<(
        Ec2Rates,
        aws_smithy_runtime_api::client::http::SharedHttpClient,
    )>,
}

/// Clients for one region.
#[derive(Debug, Clone)]
pub struct RegionClients {
    /// The region.
    pub region: String,
    /// EC2.
    pub ec2: aws_sdk_ec2::Client,
    /// S3, path-style under an endpoint override (emulators have no bucket DNS).
    pub s3: aws_sdk_s3::Client,
    /// CloudTrail.
    pub cloudtrail: aws_sdk_cloudtrail::Client,
    /// AWS Config.
    pub config: aws_sdk_config::Client,
    /// IAM (global; the region only picks the endpoint).
    pub iam: aws_sdk_iam::Client,
    /// CloudWatch Logs.
    pub logs: aws_sdk_cloudwatchlogs::Client,
    /// EventBridge.
    pub events: aws_sdk_eventbridge::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// SNS.
    pub sns: aws_sdk_sns::Client,
    /// The configuration the clients were made from, for the odd call that must go to
    /// another region (a multi-region trail answers only in its home region).
    sdk_config: SdkConfig,
    /// CloudTrail clients for other regions made so far, shared by every clone, so
    /// repeated reads of a shadow trail reuse one client (and its rate limiter).
    cloudtrail_elsewhere: Arc<Mutex<HashMap<String, aws_sdk_cloudtrail::Client>>>,
    /// Clients of services one concern alone uses ([`RegionClients::service_client`]),
    /// by type, shared by every clone.
    services: Arc<Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>>,
}

impl RegionClients {
    /// The client of a service only one concern uses, made by `make` from this region's
    /// configuration (credentials, endpoint, retries, timeouts) the first time it is
    /// asked for and shared by every clone after: a concern brings its own service
    /// without a field here. `make` builds it with [`client!`], so its calls are
    /// recorded like every other.
    pub fn service_client<C: Clone + Send + Sync + 'static>(&self, make: fn(&SdkConfig) -> C) -> C {
        let made = self.services.lock().ok().and_then(|mut services| {
            services
                .entry(TypeId::of::<C>())
                .or_insert_with(|| Box::new(make(&self.sdk_config)))
                .downcast_ref::<C>()
                .cloned()
        });
        // A poisoned cache only loses sharing, never correctness.
        made.unwrap_or_else(|| make(&self.sdk_config))
    }

    /// A CloudTrail client for `region` (this one's when equal).
    pub fn cloudtrail_in(&self, region: &str) -> aws_sdk_cloudtrail::Client {
        if region == self.region {
            return self.cloudtrail.clone();
        }
        let make = || {
            client!(
                aws_sdk_cloudtrail,
                &self
                    .sdk_config
                    .clone()
                    .into_builder()
                    .region(Region::new(region.to_string()))
                    .build()
            )
        };
        match self.cloudtrail_elsewhere.lock() {
            Ok(mut made) => made.entry(region.to_string()).or_insert_with(make).clone(),
            // A poisoned cache only loses sharing, never correctness.
            Err(_) => make(),
        }
    }
}

/// The credentials of the role `Aws::assume` assumed, handed out first, then the SDK's
/// refreshing `AssumeRoleProvider` once they near expiry: a role is assumed once per
/// account at the start of a run rather than twice, and a long run still outlasts one
/// session.
#[derive(Debug)]
struct AssumedOnce {
    first: Mutex<Option<aws_credential_types::Credentials>>,
    refresh: aws_config::sts::AssumeRoleProvider,
}

impl AssumedOnce {
    async fn load(&self) -> aws_credential_types::provider::Result {
        let first = self.first.lock().ok().and_then(|mut first| first.take());
        match first {
            Some(credentials) => Ok(credentials),
            None => self.refresh.provide_credentials().await,
        }
    }
}

impl ProvideCredentials for AssumedOnce {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(self.load())
    }
}

impl Aws {
    /// Loads credentials, region and endpoint from the SDK's chains and the flags.
    pub async fn connect(connection: &Connection) -> Self {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(60))
                .build(),
        );
        if std::env::var_os("AWS_RETRY_MODE").is_none() {
            let attempts = std::env::var("AWS_MAX_ATTEMPTS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(6);
            loader = loader.retry_config(RetryConfig::adaptive().with_max_attempts(attempts));
        }
        if let Some(profile) = &connection.profile {
            loader = loader.profile_name(profile);
        }
        let endpoint = connection.endpoint_url.clone().or_else(|| {
            connection
                .localstack
                .then(|| LOCALSTACK_ENDPOINT.to_string())
        });
        if let Some(url) = &endpoint {
            loader = loader.endpoint_url(url);
        }
        if connection.localstack
            && std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
            && connection.profile.is_none()
        {
            // LocalStack answers in any region; skip the instance-metadata probe.
            loader = loader.region(Region::new("us-east-1"));
        }
        if connection.localstack {
            let configured = std::env::var_os("AWS_ACCESS_KEY_ID").is_some()
                || std::env::var_os("AWS_PROFILE").is_some()
                || connection.profile.is_some();
            if !configured {
                loader = loader.credentials_provider(aws_sdk_ec2::config::Credentials::new(
                    "test",
                    "test",
                    None,
                    None,
                    "localstack",
                ));
            }
        }
        Self {
            config: loader.load().await,
            ec2: None,
            clients: Arc::default(),
            pacing: connection
                .ec2_rates
                .clone()
                .map(|rates| (rates, default_https_client())),
        }
    }

    /// Uses `ec2` for every region, whatever its own configuration (tests with mocks).
    pub fn with_ec2_client(ec2: aws_sdk_ec2::Client) -> Self {
        Self {
            config: SdkConfig::builder().build(),
            ec2: Some(ec2),
            clients: Arc::default(),
            pacing: None,
        }
    }

    /// As [`Aws::with_ec2_client`], reporting `rates` as its EC2 buckets (what pages
    /// are sized by; the mocked client itself is not slowed).
    #[cfg(test)]
    pub fn with_paced_ec2_client(ec2: aws_sdk_ec2::Client, rates: Ec2Rates) -> Self {
        Self {
            pacing: Some((rates, default_https_client())),
            ..Self::with_ec2_client(ec2)
        }
    }

    fn config_for(&self, region: &str) -> SdkConfig {
        self.config
            .clone()
            .into_builder()
            .region(Region::new(region.to_string()))
            .build()
    }

    /// The region from the SDK's chain, if any.
    pub fn default_region(&self) -> Option<String> {
        self.config.region().map(|r| r.to_string())
    }

    /// An EC2 client for `config`'s region, paced by its own buckets when pacing is on.
    fn ec2_client(&self, config: &SdkConfig) -> aws_sdk_ec2::Client {
        client!(aws_sdk_ec2, config, |builder| match &self.pacing {
            Some((rates, http)) => {
                let limiter = Arc::new(limiter::Limiter::new(rates.clone()));
                builder.http_client(limiter::limited_client(http.clone(), limiter))
            }
            None => builder,
        })
    }

    /// The bucket EC2 paces `operation` by, when calls are paced (`None`: unpaced, as
    /// with `--ec2-rate off`).
    pub fn ec2_rate(&self, operation: &str) -> Option<limiter::Rate> {
        self.pacing
            .as_ref()
            .map(|(rates, _)| rates.rate(limiter::Category::of(operation)))
    }

    /// Clients bound to `region`.
    pub fn region(&self, region: &str) -> RegionClients {
        let make = || {
            let config = self.config_for(region);
            RegionClients {
                region: region.to_string(),
                ec2: self.ec2.clone().unwrap_or_else(|| self.ec2_client(&config)),
                s3: client!(aws_sdk_s3, &config, |builder| builder
                    .force_path_style(config.endpoint_url().is_some())),
                cloudtrail: client!(aws_sdk_cloudtrail, &config),
                config: client!(aws_sdk_config, &config),
                iam: client!(aws_sdk_iam, &config),
                logs: client!(aws_sdk_cloudwatchlogs, &config),
                events: client!(aws_sdk_eventbridge, &config),
                sqs: client!(aws_sdk_sqs, &config),
                sns: client!(aws_sdk_sns, &config),
                sdk_config: config,
                cloudtrail_elsewhere: Arc::default(),
                services: Arc::default(),
            }
        };
        match self.clients.lock() {
            Ok(mut cache) => cache.entry(region.to_string()).or_insert_with(make).clone(),
            // A poisoned cache only loses sharing, never correctness.
            Err(_) => make(),
        }
    }

    /// The same connection acting as `role_arn`, assumed with these credentials. The
    /// role is assumed here, so a refusal is reported as what STS said, and the clients
    /// made from the result use those credentials first and assume it again only when
    /// they near expiry ([`AssumedOnce`]), so a run may outlast one session.
    pub async fn assume(
        &self,
        role_arn: &str,
        external_id: Option<&str>,
        session_name: &str,
        region: &str,
    ) -> Result<Aws> {
        let config = self.config_for(region);
        let sts = client!(aws_sdk_sts, &config);
        let assumed = sts
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(session_name)
            .set_external_id(external_id.map(str::to_string))
            .send()
            .await
            .or_failure("AssumeRole")?;
        let mut refresh = aws_config::sts::AssumeRoleProvider::builder(role_arn)
            .session_name(session_name)
            .configure(&config);
        if let Some(id) = external_id {
            refresh = refresh.external_id(id);
        }
        let provider = AssumedOnce {
            first: Mutex::new(assumed.credentials().map(|c| {
                aws_credential_types::Credentials::new(
                    c.access_key_id(),
                    c.secret_access_key(),
                    Some(c.session_token().to_string()),
                    std::time::SystemTime::try_from(*c.expiration()).ok(),
                    "harden AssumeRole",
                )
            })),
            refresh: refresh.build().await,
        };
        Ok(Aws {
            config: self
                .config
                .clone()
                .into_builder()
                .credentials_provider(aws_sdk_sts::config::SharedCredentialsProvider::new(
                    provider,
                ))
                .build(),
            ec2: self.ec2.clone(),
            clients: Arc::default(),
            pacing: self.pacing.clone(),
        })
    }

    /// An AWS Organizations client (the service is global; `region` picks the
    /// endpoint's partition).
    pub fn organizations(&self, region: &str) -> aws_sdk_organizations::Client {
        client!(aws_sdk_organizations, &self.config_for(region))
    }

    /// The regions enabled for the account (EC2 DescribeRegions), asked in `region`.
    pub async fn enabled_regions(&self, region: &str) -> Result<Vec<String>> {
        let out = self
            .region(region)
            .ec2
            .describe_regions()
            .send()
            .await
            .or_failure("DescribeRegions")?;
        Ok(out
            .regions()
            .iter()
            .filter_map(|r| r.region_name().map(str::to_string))
            .collect())
    }

    /// Asks STS who is calling.
    pub async fn caller_identity(&self, region: &str) -> Result<CallerIdentity> {
        let sts = client!(aws_sdk_sts, &self.config_for(region));
        let out = sts
            .get_caller_identity()
            .send()
            .await
            .or_failure("GetCallerIdentity")?;
        let arn = out.arn().unwrap_or_default().to_string();
        let partition = arn.split(':').nth(1).unwrap_or("aws").to_string();
        Ok(CallerIdentity {
            account_id: out.account().unwrap_or_default().to_string(),
            arn,
            partition: if partition.is_empty() {
                "aws".into()
            } else {
                partition
            },
        })
    }
}

/// The HTTPS client the SDK makes by default (rustls with aws-lc, the proxy from the
/// environment), made here so the EC2 clients can wrap it with their buckets.
fn default_https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::{Builder, ConnectorBuilder, tls};
    Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// An SDK answer as harden takes it: the output, or the failure naming the operation
/// (see [`failure`]), so every call site reads `send().await.or_failure(operation)?`.
pub trait Answer<T> {
    /// The output as is; an error as [`Error::Aws`] naming `operation`.
    fn or_failure(self, operation: &str) -> Result<T>;
}

impl<T, E> Answer<T> for std::result::Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    SdkError<E, HttpResponse>: RequestId,
{
    fn or_failure(self, operation: &str) -> Result<T> {
        self.map_err(|e| Error::Aws(failure(operation, &e)))
    }
}

/// Describes a failed SDK call: the service's code and message when it answered, the
/// transport problem when it did not.
pub fn failure<E>(operation: &str, error: &SdkError<E, HttpResponse>) -> AwsFailure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    SdkError<E, HttpResponse>: RequestId,
{
    let status = error.raw_response().map(|r| r.status().as_u16());
    let (code, message) = match error {
        // LocalStack community answers 501 for services it does not emulate (CloudTrail).
        SdkError::ServiceError(_) if status == Some(501) => (
            "NotImplemented".to_string(),
            format!(
                "the endpoint does not implement {operation} (HTTP 501): this service is not emulated there"
            ),
        ),
        SdkError::ServiceError(service) => (
            service.err().code().unwrap_or("Unknown").to_string(),
            service
                .err()
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| service.err().to_string()),
        ),
        SdkError::DispatchFailure(_) => (
            "EndpointUnreachable".to_string(),
            format!(
                "could not reach the endpoint: {}",
                aws_smithy_types::error::display::DisplayErrorContext(error)
            )
            .replace('\n', " "),
        ),
        SdkError::TimeoutError(_) => ("Timeout".to_string(), "the call timed out".to_string()),
        other => (
            other.code().unwrap_or("ResponseError").to_string(),
            aws_smithy_types::error::display::DisplayErrorContext(other).to_string(),
        ),
    };
    AwsFailure {
        operation: operation.to_string(),
        code,
        message,
        request_id: error.request_id().map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The credentials harden's own AssumeRole got are used once; after that (the SDK
    /// asks again only as they near expiry) the refreshing provider assumes the role
    /// anew: here against a closed port, so the refresh is seen as its failure rather
    /// than the first credentials handed out twice.
    #[tokio::test]
    async fn assumed_credentials_are_handed_out_once_then_refreshed() {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:1")
            .credentials_provider(aws_credential_types::Credentials::new(
                "caller", "secret", None, None, "test",
            ))
            .load()
            .await;
        let first = aws_credential_types::Credentials::new("assumed", "secret", None, None, "test");
        let provider = AssumedOnce {
            first: Mutex::new(Some(first)),
            refresh: aws_config::sts::AssumeRoleProvider::builder(
                "arn:aws:iam::111111111111:role/OrganizationAccountAccessRole",
            )
            .session_name("harden-test")
            .configure(&config)
            .build()
            .await,
        };
        let handed = provider.provide_credentials().await.expect("the first");
        assert_eq!(handed.access_key_id(), "assumed");
        assert!(
            provider.provide_credentials().await.is_err(),
            "the second comes from STS, which cannot be reached here"
        );
    }
}
