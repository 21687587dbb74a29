//! Pacing EC2 calls on the client, sized to EC2's request-token buckets, so a large run
//! does not depend on throttling errors to pace itself.
//!
//! EC2 throttles per account, region and API action with token buckets: each action
//! has a bucket of its category's size, refilled at its category's rate (AWS's "Request
//! throttling for the Amazon EC2 API"). harden keeps the same buckets on its side, one
//! set per account-region (each account-region has its own EC2 client, and so its own
//! [`Limiter`]), and every attempt (a retry too: AWS counts it) waits for a token
//! before it is sent. The SDK's adaptive retry then only handles what the limiter did
//! not foresee: other tools sharing the account's buckets.
//!
//! One token of each bucket is kept in reserve: a call reaches AWS a little later than
//! it leaves, and not always by the same delay, so a client that spent its whole model
//! bucket would now and then arrive a few milliseconds before AWS's refill. One token is
//! 1/rate seconds of such jitter (200 ms for mutating calls).
//!
//! The limiter sits in the HTTP client of the EC2 clients ([`limited_client`]): EC2's
//! query protocol names the action in the request body (`Action=...`).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use tokio::time::Instant;

use crate::error::{Error, Result};

/// A token bucket's size: how many calls at once, and how many per second after.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Bucket size (the burst).
    pub burst: u32,
    /// Refill, in tokens per second.
    pub per_second: f64,
}

/// EC2's action categories, each with its own bucket size and refill rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// `Describe*` and `Get*`: 100, 20 per second.
    Describe,
    /// Other mutating actions: 50, 5 per second.
    Mutating,
    /// `CreateTags`, `DeleteTags`: 100, 10 per second.
    Tags,
    /// `CreateSnapshot`, `CreateVolume`, `DeleteVolume`, `DeleteSnapshot`: 100, 5 per
    /// second.
    VolumesAndSnapshots,
    /// `StartInstances`, `RunInstances`: 5, 2 per second.
    StartInstances,
}

impl Category {
    /// Every category, with the name `--ec2-rate` uses.
    pub const ALL: [(Category, &'static str); 5] = [
        (Category::Describe, "describe"),
        (Category::Mutating, "mutating"),
        (Category::Tags, "tags"),
        (Category::VolumesAndSnapshots, "volumes"),
        (Category::StartInstances, "start"),
    ];

    /// The category of an EC2 action.
    pub fn of(action: &str) -> Self {
        match action {
            "CreateTags" | "DeleteTags" => Category::Tags,
            "CreateSnapshot" | "CreateVolume" | "DeleteVolume" | "DeleteSnapshot" => {
                Category::VolumesAndSnapshots
            }
            "StartInstances" | "RunInstances" => Category::StartInstances,
            a if a.starts_with("Describe") || a.starts_with("Get") => Category::Describe,
            _ => Category::Mutating,
        }
    }
}

/// The bucket sizes of each category. The default is what AWS publishes for EC2.
#[derive(Debug, Clone, PartialEq)]
pub struct Ec2Rates {
    rates: HashMap<Category, Rate>,
}

impl Default for Ec2Rates {
    fn default() -> Self {
        let rate = |burst, per_second| Rate { burst, per_second };
        Self {
            rates: HashMap::from([
                (Category::Describe, rate(100, 20.0)),
                (Category::Mutating, rate(50, 5.0)),
                (Category::Tags, rate(100, 10.0)),
                (Category::VolumesAndSnapshots, rate(100, 5.0)),
                (Category::StartInstances, rate(5, 2.0)),
            ]),
        }
    }
}

impl Ec2Rates {
    /// The bucket of a category.
    pub fn rate(&self, category: Category) -> Rate {
        self.rates.get(&category).copied().unwrap_or(Rate {
            burst: 50,
            per_second: 5.0,
        })
    }

    /// Applies `CATEGORY=BURST/PER_SECOND` (for example `mutating=25/2.5`), naming the
    /// flag when it does not parse.
    pub fn set(&mut self, assignment: &str) -> Result<()> {
        let bad = |why: &str| {
            Error::Usage(format!(
                "--ec2-rate {assignment}: {why} (expected CATEGORY=BURST/PER_SECOND, CATEGORY one of {})",
                Category::ALL.map(|(_, n)| n).join(", ")
            ))
        };
        let (name, value) = assignment.split_once('=').ok_or_else(|| bad("no ="))?;
        let category = Category::ALL
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(c, _)| *c)
            .ok_or_else(|| bad("unknown category"))?;
        let (burst, per_second) = value.split_once('/').ok_or_else(|| bad("no /"))?;
        let burst: u32 = burst
            .parse()
            .map_err(|_| bad("the burst is not a whole number"))?;
        let per_second: f64 = per_second
            .parse()
            .map_err(|_| bad("the rate is not a number"))?;
        if burst == 0 || !(per_second > 0.0 && per_second.is_finite()) {
            return Err(bad("the burst and the rate must be above 0"));
        }
        self.rates.insert(category, Rate { burst, per_second });
        Ok(())
    }
}

/// One account-region's buckets, one per action, created full on first use.
#[derive(Debug)]
pub struct Limiter {
    rates: Ec2Rates,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    /// May go below zero: each waiter reserves its token, so they go in turn.
    tokens: f64,
    refilled: Instant,
    rate: Rate,
}

impl Limiter {
    /// A limiter with these bucket sizes.
    pub fn new(rates: Ec2Rates) -> Self {
        Self {
            rates,
            buckets: Mutex::default(),
        }
    }

    /// How long the next call of `action` must wait for its token; takes the token.
    pub fn reserve(&self, action: &str) -> Duration {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            // A poisoned lock only loses pacing; the adaptive retry still backs off.
            return Duration::ZERO;
        };
        let bucket = buckets.entry(action.to_string()).or_insert_with(|| {
            let rate = self.rates.rate(Category::of(action));
            Bucket {
                tokens: usable(rate),
                refilled: now,
                rate,
            }
        });
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * bucket.rate.per_second).min(usable(bucket.rate));
        bucket.refilled = now;
        bucket.tokens -= 1.0;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-bucket.tokens / bucket.rate.per_second)
        }
    }

    /// Waits for a token of `action`'s bucket.
    pub async fn acquire(&self, action: &str) {
        let wait = self.reserve(action);
        if !wait.is_zero() {
            tracing::debug!(action, wait_ms = wait.as_millis() as u64, "pacing");
            tokio::time::sleep(wait).await;
        }
    }
}

/// The tokens of a bucket harden spends: all but the one kept in reserve.
fn usable(rate: Rate) -> f64 {
    f64::from(rate.burst.saturating_sub(1).max(1))
}

/// The EC2 action a request calls (`Action=` of its form-encoded body).
fn action_of(request: &HttpRequest) -> Option<String> {
    let body = request.body().bytes()?;
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .map(str::to_string)
}

/// `inner` with every EC2 call waiting for its token of `limiter`.
pub fn limited_client(inner: SharedHttpClient, limiter: Arc<Limiter>) -> SharedHttpClient {
    SharedHttpClient::new(Limited { inner, limiter })
}

struct Limited {
    inner: SharedHttpClient,
    limiter: Arc<Limiter>,
}

impl fmt::Debug for Limited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Limited")
    }
}

impl HttpClient for Limited {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(LimitedConnector {
            inner: self.inner.http_connector(settings, components),
            limiter: Arc::clone(&self.limiter),
        })
    }
}

struct LimitedConnector {
    inner: SharedHttpConnector,
    limiter: Arc<Limiter>,
}

impl fmt::Debug for LimitedConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LimitedConnector")
    }
}

impl HttpConnector for LimitedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let action = action_of(&request);
        let inner = self.inner.clone();
        let limiter = Arc::clone(&self.limiter);
        HttpConnectorFuture::new(async move {
            if let Some(action) = action {
                limiter.acquire(&action).await;
            }
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_fall_in_ec2s_categories() {
        assert_eq!(
            Category::of("DescribeSecurityGroupRules"),
            Category::Describe
        );
        assert_eq!(
            Category::of("GetEbsEncryptionByDefault"),
            Category::Describe
        );
        assert_eq!(Category::of("ModifySecurityGroupRules"), Category::Mutating);
        assert_eq!(Category::of("CopySnapshot"), Category::Mutating);
        assert_eq!(Category::of("CreateTags"), Category::Tags);
        assert_eq!(
            Category::of("DeleteSnapshot"),
            Category::VolumesAndSnapshots
        );
        assert_eq!(Category::of("StartInstances"), Category::StartInstances);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_goes_at_once_and_the_rest_at_the_refill_rate() {
        let mut rates = Ec2Rates::default();
        rates.set("mutating=4/2").expect("valid");
        let limiter = Limiter::new(rates);
        let started = Instant::now();
        // The burst, less the token kept in reserve.
        for _ in 0..3 {
            limiter.acquire("RevokeSecurityGroupEgress").await;
        }
        assert_eq!(started.elapsed(), Duration::ZERO, "the burst");
        for _ in 0..4 {
            limiter.acquire("RevokeSecurityGroupEgress").await;
        }
        // Four more at two per second.
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        // Each action has its own bucket.
        limiter.acquire("AuthorizeSecurityGroupEgress").await;
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_take_turns() {
        let mut rates = Ec2Rates::default();
        rates.set("describe=2/10").expect("valid");
        let limiter = Arc::new(Limiter::new(rates));
        let started = Instant::now();
        let waits = futures::future::join_all((0..5).map(|_| {
            let limiter = Arc::clone(&limiter);
            async move {
                limiter.acquire("DescribeVolumes").await;
                started.elapsed()
            }
        }))
        .await;
        let millis: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(millis, [0, 100, 200, 300, 400]);
    }

    #[test]
    fn a_bad_rate_names_the_flag() {
        let mut rates = Ec2Rates::default();
        let error = rates.set("fast=1/1").expect_err("unknown category");
        assert_eq!(
            error.to_string(),
            "--ec2-rate fast=1/1: unknown category (expected CATEGORY=BURST/PER_SECOND, CATEGORY one of describe, mutating, tags, volumes, start)"
        );
        assert!(rates.set("mutating=0/1").is_err());
        assert!(rates.set("mutating=5/x").is_err());
    }
}
