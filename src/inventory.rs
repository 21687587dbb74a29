//! The account as harden sees it: plain data, free of SDK types, so planning is a pure
//! function of it and its tests need no network. Each kind's data is defined with its
//! concern (`actions::security_group::SecurityGroup`, ...) and implements [`Kind`], the
//! one extension point of a kind; this module holds the trait, what every kind shares
//! (exemption, narrowing, lookups by name) and names the kinds' data for the planner,
//! reports and tests. [`crate::discovery`] fills the planner's inventory from list
//! calls.

use std::collections::BTreeMap;

use serde::Serialize;

pub use crate::actions::registry::{Resource, ResourceKind};
// Each kind's data lives with its concern; the planner, reports and tests name them
// here.
pub use crate::actions::cloudtrail::{Trail, Trails};
pub use crate::actions::config::{ConfigRecorder, ConfigSetup, DeliveryChannel};
pub use crate::actions::ebs::EbsEncryptionDefault;
pub use crate::actions::ebs_instances::{
    Device, Instance, ROLLED_BACK_TAG, SWAP_DELETE_ON_TERMINATION_TAG, SWAP_DEVICE_TAG,
    SWAP_INSTANCE_TAG, WAS_RUNNING_TAG,
};
pub use crate::actions::ebs_volumes::{
    Artifact, Placed, REPLACED_BY_TAG, SOURCE_VOLUME_TAG, Volume, VolumeShape,
};
pub use crate::actions::events::rule::EventRule;
pub use crate::actions::flow_logs::{FlowLog, Vpc, sort_flow_logs};
pub use crate::actions::iam::{Role, ServiceLinkedRole};
pub use crate::actions::logs::LogGroup;
pub use crate::actions::s3::{Bucket, BucketEncryption, PublicAccessBlock};
pub use crate::actions::security_group::{
    Peer, Rule, RuleKey, SecurityGroup, SecurityGroupRules, normalize_protocol, sort_rules,
};
pub use crate::actions::sns::topic::Topic;
pub use crate::actions::sqs::queue::{Queue, Redrive};
use crate::aws::RegionClients;
use crate::error::Result;
use crate::event::KnownEvent;

/// The tag that exempts a resource from every runbook.
pub const EXEMPT_TAG: &str = "harden:exempt";

/// How planning for one event (`harden respond`, `harden watch`) narrows a runbook's
/// discovery to the resources the event names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Narrowing {
    /// Listed kinds: the list call is filtered by this filter to the ids the event names,
    /// and an entry no matching trigger names lists nothing.
    ById(&'static str),
    /// One resource per region (a setting, or a set judged as a whole): planned whole
    /// when a trigger names it, otherwise not at all.
    RegionWide,
    /// Looked up by a name the runbook renders (a log bucket, a role, the alerting
    /// queue): read whenever its runbook is planned, so a trigger on it names no id.
    Named,
}

/// The one extension point of a resource kind: what discovery, validation, templates,
/// exemption and the plan's keys need to know of it. Each kind implements it in its
/// concern's module; `actions::registry::kinds!` lists the kinds and derives
/// [`ResourceKind`] and [`Resource`] from the list.
pub trait Kind: Serialize + Sized {
    /// The name runbooks use in `resource:`, e.g. `ec2:security-group`.
    const NAME: &'static str;
    /// Server-side filters its list call accepts (for a kind looked up by name, the
    /// filter naming it, which is then required).
    const FILTERS: &'static [&'static str];
    /// How an event naming one of these narrows its discovery.
    const NARROWING: Narrowing;
    /// The CloudTrail events that can undo what harden holds one of these to: the
    /// events its runbooks' `triggers:` may name (see [`crate::trigger::known_events`]).
    const UNDONE_BY: &'static [KnownEvent] = &[];

    /// One with every field set, so validation can render templates using `item` in
    /// strict mode.
    fn sample() -> Self;

    /// Its id within its account and region.
    fn id(&self) -> &str;

    /// Its tags (`None` for a kind that has none, such as a region setting).
    fn tags(&self) -> Option<&BTreeMap<String, String>>;

    /// Facts derived from its fields that templates see beside them (`is_default`).
    fn template_facts(&self) -> Vec<(&'static str, serde_json::Value)> {
        Vec::new()
    }

    /// Reads the ones `filters` select in the region `clients` reach: list calls with
    /// the filters server-side, or, for a kind named rather than listed, one lookup per
    /// name (a missing one answered as not existing).
    fn discover(
        clients: &RegionClients,
        filters: &Filters,
    ) -> impl Future<Output = Result<Vec<Self>>> + Send;
}

/// Filter name to accepted values, as a discover entry renders them.
pub type Filters = BTreeMap<String, Vec<String>>;

/// Kinds kept boxed in [`Resource`] (the largest) are kinds all the same.
impl<K: Kind + Send> Kind for Box<K> {
    const NAME: &'static str = K::NAME;
    const FILTERS: &'static [&'static str] = K::FILTERS;
    const NARROWING: Narrowing = K::NARROWING;
    const UNDONE_BY: &'static [KnownEvent] = K::UNDONE_BY;

    fn sample() -> Self {
        Box::new(K::sample())
    }

    fn id(&self) -> &str {
        K::id(self)
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        K::tags(self)
    }

    fn template_facts(&self) -> Vec<(&'static str, serde_json::Value)> {
        K::template_facts(self)
    }

    async fn discover(clients: &RegionClients, filters: &Filters) -> Result<Vec<Self>> {
        Ok(K::discover(clients, filters)
            .await?
            .into_iter()
            .map(Box::new)
            .collect())
    }
}

/// Looks up, concurrently, each value the `key` filter gives: for the kinds that are
/// named rather than listed (buckets, roles and log groups by name, service-linked
/// roles by service), where a missing one is read as not existing.
pub async fn named<'a, T, Fut>(
    filters: &'a Filters,
    key: &str,
    read: impl Fn(&'a str) -> Fut,
) -> Result<Vec<T>>
where
    Fut: Future<Output = Result<T>>,
{
    let names = filters.get(key).into_iter().flatten();
    futures::future::try_join_all(names.map(|n| read(n.as_str()))).await
}
