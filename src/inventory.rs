//! The account as harden sees it: plain data, free of SDK types, so planning is a pure
//! function of it and its tests need no network. [`crate::discovery`] fills it from
//! list calls; the planner projects each planned change onto it so later steps and
//! runbooks are planned on the state the earlier ones leave.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::actions::registry::{Resource, ResourceKind};
use crate::aws::RegionClients;
use crate::error::Result;
use crate::event::KnownEvent;
use crate::template::KNOWN_AFTER_APPLY;

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

/// The destination (egress) or source (ingress) of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Peer {
    /// An IPv4 range.
    Cidr(String),
    /// An IPv6 range.
    Ipv6Cidr(String),
    /// A managed prefix list.
    PrefixListId(String),
    /// Another security group.
    GroupId(String),
}

impl Peer {
    /// True for `0.0.0.0/0` and `::/0`: the whole internet.
    pub fn is_open(&self) -> bool {
        matches!(self, Peer::Cidr(c) if c == "0.0.0.0/0")
            || matches!(self, Peer::Ipv6Cidr(c) if c == "::/0")
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Cidr(c) | Peer::Ipv6Cidr(c) => f.write_str(c),
            Peer::PrefixListId(p) => f.write_str(p),
            Peer::GroupId(g) => write!(f, "group {g}"),
        }
    }
}

/// One security-group rule. Two rules are the same rule when protocol, ports and peer
/// agree ([`Rule::key`]); the description is carried but not part of identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The rule id; `None` for a rule that only exists after apply.
    #[serde(serialize_with = "ser_rule_id", deserialize_with = "de_rule_id")]
    pub rule_id: Option<String>,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `-1` (all) or a protocol number.
    pub protocol: String,
    /// First port (or ICMP type); `None` for all protocols.
    pub from_port: Option<i32>,
    /// Last port (or ICMP code); `None` for all protocols.
    pub to_port: Option<i32>,
    /// Where traffic goes (egress) or comes from (ingress).
    pub peer: Peer,
    /// The rule's description.
    #[serde(default)]
    pub description: Option<String>,
}

/// Identity of a rule: protocol, ports and peer, normalised.
pub type RuleKey = (String, Option<i32>, Option<i32>, Peer);

impl Rule {
    /// Builds a rule, normalising protocol names and the ports of all-protocol rules.
    pub fn new(
        rule_id: Option<String>,
        protocol: &str,
        from_port: Option<i32>,
        to_port: Option<i32>,
        peer: Peer,
        description: Option<String>,
    ) -> Self {
        let protocol = normalize_protocol(protocol);
        let (from_port, to_port) = if protocol == "-1" {
            (None, None)
        } else {
            (from_port, to_port)
        };
        Self {
            rule_id,
            protocol,
            from_port,
            to_port,
            peer,
            description: description.filter(|d| !d.is_empty()),
        }
    }

    /// Identity of the rule.
    pub fn key(&self) -> RuleKey {
        (
            self.protocol.clone(),
            self.from_port,
            self.to_port,
            self.peer.clone(),
        )
    }

    /// True for a rule to or from the whole internet.
    pub fn is_open(&self) -> bool {
        self.peer.is_open()
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = if self.protocol == "-1" {
            "all"
        } else {
            self.protocol.as_str()
        };
        match (self.from_port, self.to_port) {
            (Some(a), Some(b)) if a == b => write!(f, "{protocol} {a} {}", self.peer)?,
            (Some(a), Some(b)) => write!(f, "{protocol} {a}-{b} {}", self.peer)?,
            _ => write!(f, "{protocol} {}", self.peer)?,
        }
        if let Some(id) = &self.rule_id {
            write!(f, " ({id})")?;
        }
        Ok(())
    }
}

/// Lowercase names for the protocols AWS may answer with numbers; `-1` for all.
pub fn normalize_protocol(protocol: &str) -> String {
    match protocol.trim().to_ascii_lowercase().as_str() {
        "6" => "tcp".into(),
        "17" => "udp".into(),
        "1" => "icmp".into(),
        "58" => "icmpv6".into(),
        "all" | "-1" => "-1".into(),
        other => other.into(),
    }
}

fn ser_rule_id<S: Serializer>(id: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(id.as_deref().unwrap_or(KNOWN_AFTER_APPLY))
}

fn de_rule_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let id = String::deserialize(d)?;
    Ok((id != KNOWN_AFTER_APPLY).then_some(id))
}

/// Sorts rules by identity so two reads of the same state compare equal.
pub fn sort_rules(rules: &mut [Rule]) {
    rules.sort_by(|a, b| {
        (a.key(), &a.description, &a.rule_id).cmp(&(b.key(), &b.description, &b.rule_id))
    });
}

/// A security group with its rules and how many network interfaces use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    /// `sg-...`.
    pub id: String,
    /// Group name; a VPC's default group is named `default`.
    pub name: String,
    /// Group description.
    pub description: String,
    /// The VPC, when the group belongs to one.
    pub vpc_id: Option<String>,
    /// Owning account.
    pub owner_id: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Network interfaces that use the group.
    pub interface_count: usize,
    /// Inbound rules, sorted.
    pub ingress: Vec<Rule>,
    /// Outbound rules, sorted.
    pub egress: Vec<Rule>,
}

impl SecurityGroup {
    /// True for the default group of a VPC.
    pub fn is_default(&self) -> bool {
        self.name == "default"
    }

    /// The part of the group changes act on, as recorded in a change's before/after.
    pub fn rules_state(&self) -> SecurityGroupRules {
        SecurityGroupRules {
            ingress: self.ingress.clone(),
            egress: self.egress.clone(),
        }
    }
}

/// The rules of a group: the state a security-group change reads, compares and verifies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupRules {
    /// Inbound rules, sorted.
    pub ingress: Vec<Rule>,
    /// Outbound rules, sorted.
    pub egress: Vec<Rule>,
}

/// A region's EBS encryption-by-default setting (FSBP EC2.7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EbsEncryptionDefault {
    /// The region, which is also its id.
    pub region: String,
    /// Whether new volumes and snapshot copies are encrypted by default.
    pub enabled: bool,
    /// The ARN of the KMS key they are encrypted with; absent where the endpoint does
    /// not say (the emulators do not implement GetEbsDefaultKmsKeyId).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

/// An S3 bucket a runbook names (a log destination), as far as harden cares: whether it
/// exists and how it is protected. The whole struct is the state bucket changes compare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Bucket name, which is also its id.
    pub name: String,
    /// The region it is in (or will be created in).
    pub region: String,
    /// False when no bucket has the name yet.
    pub exists: bool,
    /// The bucket's public access block; `None` when none is set.
    pub public_access_block: Option<PublicAccessBlock>,
    /// Default encryption; `None` when none is configured.
    pub encryption: Option<BucketEncryption>,
    /// `Enabled` or `Suspended`; `None` when versioning was never turned on.
    pub versioning: Option<String>,
    /// The bucket policy as JSON; `None` when it has none.
    pub policy: Option<serde_json::Value>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Bucket {
    /// A bucket that does not exist yet.
    pub fn missing(name: &str, region: &str) -> Self {
        Self {
            name: name.into(),
            region: region.into(),
            exists: false,
            public_access_block: None,
            encryption: None,
            versioning: None,
            policy: None,
            tags: BTreeMap::new(),
        }
    }
}

/// The four switches of S3 Block Public Access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicAccessBlock {
    /// BlockPublicAcls.
    pub block_public_acls: bool,
    /// IgnorePublicAcls.
    pub ignore_public_acls: bool,
    /// BlockPublicPolicy.
    pub block_public_policy: bool,
    /// RestrictPublicBuckets.
    pub restrict_public_buckets: bool,
}

impl PublicAccessBlock {
    /// Every switch on.
    pub const ALL_ON: Self = Self {
        block_public_acls: true,
        ignore_public_acls: true,
        block_public_policy: true,
        restrict_public_buckets: true,
    };
}

/// A bucket's default encryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketEncryption {
    /// `AES256` or `aws:kms` (or `aws:kms:dsse`).
    pub algorithm: String,
    /// The KMS key, for `aws:kms`; `None` means the AWS-managed key.
    pub kms_key_id: Option<String>,
}

/// A VPC and its flow logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vpc {
    /// `vpc-...`.
    pub id: String,
    /// Primary IPv4 range.
    pub cidr_block: String,
    /// The region's default VPC.
    pub is_default: bool,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Flow logs on the VPC, sorted by [`sort_flow_logs`].
    pub flow_logs: Vec<FlowLog>,
}

/// One flow log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowLog {
    /// `fl-...`; `(known after apply)` for one apply creates.
    pub id: String,
    /// `ACCEPT`, `REJECT` or `ALL`.
    pub traffic_type: String,
    /// `s3`, `cloud-watch-logs` or `kinesis-data-firehose`.
    pub destination_type: String,
    /// The destination ARN (or log group name).
    pub destination: String,
    /// `ACTIVE` once created.
    pub status: String,
}

impl FlowLog {
    /// True when it records `traffic_type` (ALL records everything) and is active.
    pub fn covers(&self, traffic_type: &str) -> bool {
        self.status == "ACTIVE" && (self.traffic_type == "ALL" || self.traffic_type == traffic_type)
    }
}

/// Sorts flow logs by what they do before their id, so a planned flow log (id not yet
/// known) sits where the read-back will put it.
pub fn sort_flow_logs(logs: &mut [FlowLog]) {
    logs.sort_by(|a, b| {
        (
            &a.destination,
            &a.traffic_type,
            &a.destination_type,
            &a.status,
            &a.id,
        )
            .cmp(&(
                &b.destination,
                &b.traffic_type,
                &b.destination_type,
                &b.status,
                &b.id,
            ))
    });
}

/// The CloudTrail trails a region sees: its own and other regions' multi-region and
/// organization trails. One resource per region, whose id is the region, because
/// compliance (CloudTrail.1) is a property of the set: some trail must qualify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trails {
    /// The region, which is also the id.
    pub region: String,
    /// The trails, sorted by ARN.
    pub trails: Vec<Trail>,
}

/// One trail, as far as the CloudTrail controls care.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trail {
    /// Name.
    pub name: String,
    /// ARN.
    pub arn: String,
    /// The region it was created in; only there can it be changed.
    pub home_region: String,
    /// Records every region.
    pub multi_region: bool,
    /// An organization trail (counts, but a member account cannot change it).
    pub organization: bool,
    /// Whether it is logging.
    pub logging: bool,
    /// Log file integrity validation (CloudTrail.4).
    pub log_file_validation: bool,
    /// KMS key encrypting the logs (CloudTrail.2).
    pub kms_key_id: Option<String>,
    /// Destination bucket.
    pub bucket: String,
    /// Records global services (IAM, STS) events.
    pub include_global_service_events: bool,
    /// The event selectors in AWS's shape: `{"EventSelectors": [...]}` or
    /// `{"AdvancedEventSelectors": [...]}`, empty lists and absent fields left out.
    pub selectors: serde_json::Value,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Trail {
    /// Records read and write management events of every source (the selectors of
    /// CloudTrail.1): a basic selector with management events, `ReadWriteType` All and
    /// no excluded sources, or an advanced selector on `eventCategory = Management`
    /// alone.
    pub fn records_all_management_events(&self) -> bool {
        use serde_json::Value;
        let list = |key: &str| {
            self.selectors
                .get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let basic = list("EventSelectors").iter().any(|s| {
            s.get("IncludeManagementEvents").and_then(Value::as_bool) != Some(false)
                && s.get("ReadWriteType")
                    .and_then(Value::as_str)
                    .unwrap_or("All")
                    == "All"
                && s.get("ExcludeManagementEventSources")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
        });
        let advanced = list("AdvancedEventSelectors").iter().any(|s| {
            let fields = s
                .get("FieldSelectors")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            fields.len() == 1
                && fields[0].get("Field").and_then(Value::as_str) == Some("eventCategory")
                && fields[0].get("Equals") == Some(&serde_json::json!(["Management"]))
        });
        basic || advanced
    }

    /// Satisfies CloudTrail.1 and CloudTrail.4 (and CloudTrail.2 when `kms_required`).
    pub fn is_compliant(&self, kms_required: bool) -> bool {
        self.multi_region
            && self.logging
            && self.log_file_validation
            && self.records_all_management_events()
            && (!kms_required || self.kms_key_id.is_some())
    }

    /// True when tagged `harden:exempt` = `true`.
    pub fn is_exempt(&self) -> bool {
        self.tags
            .get(EXEMPT_TAG)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }
}

impl Trails {
    /// Whether making the region compliant means creating a trail: no trail qualifies
    /// (setting KMS aside), none homed here could be brought into compliance in place
    /// (or is exempt), and no multi-region trail homed elsewhere could be.
    pub fn needs_new_trail(&self) -> bool {
        !self.trails.iter().any(|t| {
            t.is_compliant(false)
                || (!t.organization && (t.home_region == self.region || t.multi_region))
        })
    }
}

/// A region's AWS Config setup: its recorder (a region has at most one) and delivery
/// channels. One resource per region, whose id is the region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSetup {
    /// The region, which is also the id.
    pub region: String,
    /// The recorder, under whatever name it has.
    pub recorder: Option<ConfigRecorder>,
    /// Delivery channels (name, bucket).
    pub delivery_channels: Vec<DeliveryChannel>,
}

/// A configuration recorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRecorder {
    /// Its name (never assumed to be `default`).
    pub name: String,
    /// The role it records with.
    pub role_arn: String,
    /// Records all supported resource types.
    pub all_supported: bool,
    /// Records global resource types (IAM) too.
    pub include_global: bool,
    /// Whether it is recording.
    pub recording: bool,
    /// `Success`, `Failure` or `Pending`; `None` before the first recording.
    pub last_status: Option<String>,
}

/// A delivery channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryChannel {
    /// Name.
    pub name: String,
    /// Destination bucket.
    pub bucket: String,
}

impl ConfigSetup {
    /// Whether a delivery channel (and so its bucket) has to be made.
    pub fn needs_delivery_channel(&self) -> bool {
        self.delivery_channels.is_empty()
    }
}

/// An IAM role looked up by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Role name, which is also the id.
    pub name: String,
    /// ARN, once it exists.
    pub arn: Option<String>,
    /// False when no role has the name.
    pub exists: bool,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Who may assume it (its trust policy, decoded), once it exists.
    #[serde(default)]
    pub trust_policy: Option<serde_json::Value>,
    /// Its inline policies by name (documents decoded).
    #[serde(default)]
    pub policies: BTreeMap<String, serde_json::Value>,
}

/// The service-linked role of one service. AWS defines such a role by its path,
/// `/aws-service-role/SERVICE/`, not by its name (moto, for one, names Config's
/// `AWSServiceRoleForconfig`), so it is found and read back by path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLinkedRole {
    /// The service principal, e.g. `config.amazonaws.com`; also the id.
    pub service: String,
    /// False when no role has the service's path.
    pub exists: bool,
    /// The role's name, once it exists.
    pub name: Option<String>,
    /// The role's ARN, once it exists.
    pub arn: Option<String>,
}

impl ServiceLinkedRole {
    /// The service's role when it has none.
    pub fn missing(service: &str) -> Self {
        Self {
            service: service.to_string(),
            exists: false,
            name: None,
            arn: None,
        }
    }

    /// The path AWS gives the service's linked roles.
    pub fn path(&self) -> String {
        format!("/aws-service-role/{}/", self.service)
    }
}

/// A CloudWatch Logs log group a runbook names (a log destination): whether it exists
/// and how long it keeps what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogGroup {
    /// Its name, which is also the id.
    pub name: String,
    /// False when no log group has the name.
    pub exists: bool,
    /// Its ARN without the trailing `:*`, once it exists.
    pub arn: Option<String>,
    /// Days events are kept; `None` keeps them forever.
    pub retention_days: Option<i32>,
    /// The KMS key its events are encrypted with.
    pub kms_key_id: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl LogGroup {
    /// A log group no one has created.
    pub fn missing(name: &str) -> Self {
        Self {
            name: name.to_string(),
            exists: false,
            arn: None,
            retention_days: None,
            kms_key_id: None,
            tags: BTreeMap::new(),
        }
    }
}

/// Tag harden puts on a snapshot or volume it made, naming the volume it replaces.
pub const SOURCE_VOLUME_TAG: &str = "harden:source-volume";
/// Tag harden puts on an original volume once its encrypted replacement is verified.
pub const REPLACED_BY_TAG: &str = "harden:replaced-by";

/// An EBS volume and, when harden is replacing it by an encrypted copy, the snapshot,
/// the encrypted copy of the snapshot and the new volume, found by their tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// `vol-...`.
    pub id: String,
    /// Its availability zone.
    pub availability_zone: String,
    /// Size in GiB.
    pub size: i32,
    /// `gp2`, `gp3`, `io1`, `io2`, `st1`, `sc1`, `standard`.
    pub volume_type: String,
    /// Provisioned IOPS (io1, io2, gp3).
    pub iops: Option<i32>,
    /// Provisioned throughput in MiB/s (gp3).
    pub throughput: Option<i32>,
    /// Encrypted at rest.
    pub encrypted: bool,
    /// `available`, `in-use`, ...
    pub state: String,
    /// Instances it is attached to.
    pub attached_to: Vec<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// The snapshot harden took of it (tagged with the source volume, not encrypted).
    pub snapshot: Option<Artifact>,
    /// The encrypted copy of that snapshot.
    pub copy: Option<Artifact>,
    /// The encrypted volume made from the copy.
    pub replacement: Option<Artifact>,
    /// Snapshots harden made for it beyond the snapshot and the copy it keeps: a
    /// repeat after a lost answer, or another run at the same time, made them. The plan
    /// deletes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub strays: Vec<Artifact>,
    /// Replacement volumes beyond [`Volume::replacement`]: another run at the same
    /// time made them. Unlike a stray snapshot, one may have been attached and written
    /// since, so the plan blocks on them instead of deleting them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stray_volumes: Vec<Artifact>,
}

/// A snapshot or volume harden made while replacing a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// `snap-...` or `vol-...`.
    pub id: String,
    /// `pending`, `completed`, `available`, `error`, ...
    pub state: String,
    /// Encrypted.
    pub encrypted: bool,
    /// For a replacement volume: its shape and tags, which must be the original's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Box<VolumeShape>>,
    /// For a replacement volume: since when it has been in place, as read. Not part of
    /// the state changes compare (it is a fact of time, not of configuration).
    #[serde(default, skip_serializing)]
    pub placed: Option<Placed>,
}

/// Since when a replacement has been in place (attached to its instance, or created
/// when it replaces an unattached volume), and how long that was when it was read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    /// When.
    pub at: jiff::Timestamp,
    /// How long before the read.
    pub age: std::time::Duration,
}

/// What a replacement volume must keep of the original.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeShape {
    /// Volume type.
    pub volume_type: String,
    /// Size in GiB.
    pub size: i32,
    /// Provisioned IOPS (compared for io1, io2 and gp3 only).
    pub iops: Option<i32>,
    /// Provisioned throughput (compared for gp3 only).
    pub throughput: Option<i32>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Volume {
    /// The volume that replaced it, from its `harden:replaced-by` tag.
    pub fn replaced_by(&self) -> Option<&str> {
        self.tags.get(REPLACED_BY_TAG).map(String::as_str)
    }

    /// A tag of the replacement volume harden made for it.
    pub fn replacement_tag(&self, key: &str) -> Option<&str> {
        self.replacement
            .as_ref()?
            .shape
            .as_ref()?
            .tags
            .get(key)
            .map(String::as_str)
    }
}

/// Tags harden puts on a replacement volume made for an instance: the instance, the
/// device it goes to and the original's DeleteOnTermination. With them, a swap that
/// stopped part-way (an original detached, its replacement not yet attached) can be
/// read back and finished or undone.
pub const SWAP_INSTANCE_TAG: &str = "harden:instance";
/// See [`SWAP_INSTANCE_TAG`].
pub const SWAP_DEVICE_TAG: &str = "harden:device";
/// See [`SWAP_INSTANCE_TAG`].
pub const SWAP_DELETE_ON_TERMINATION_TAG: &str = "harden:delete-on-termination";
/// Tag compensation puts on a replacement volume after undoing its swap; the volume is
/// kept for inspection and never used again.
pub const ROLLED_BACK_TAG: &str = "harden:rolled-back";
/// Tag harden puts on a running instance before stopping it for a swap (its value the
/// run id), and removes once it started the instance again. Whether an instance was
/// running is the one fact of a swap AWS does not keep: with the tag, a plan after a
/// process died mid-swap knows to start it, and a stopped instance without it was
/// stopped by someone else and stays stopped.
pub const WAS_RUNNING_TAG: &str = "harden:was-running";

/// An EC2 instance, its EBS devices, and the unencrypted volumes it has (or had, while
/// a swap is under way) with what harden made to replace them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// `i-...`.
    pub id: String,
    /// `pending`, `running`, `stopping`, `stopped`, ...
    pub state: String,
    /// Its availability zone.
    pub availability_zone: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// EBS devices by device name.
    pub devices: BTreeMap<String, Device>,
    /// Unencrypted volumes to replace or being replaced, by id: those attached, and
    /// those a swap detached (found through their replacement's tags; `None` once
    /// deleted with `delete_originals`).
    pub unencrypted: BTreeMap<String, Option<Volume>>,
}

/// An EBS volume attached to an instance at a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The volume attached there.
    pub volume_id: String,
    /// Whether the volume is deleted with the instance.
    pub delete_on_termination: bool,
    /// Whether that volume is encrypted.
    pub encrypted: bool,
    /// When the volume is a replacement harden made: the volume it replaces.
    pub replaces: Option<String>,
}

impl Instance {
    /// Whether harden stopped it while it was running and owes it a start
    /// ([`WAS_RUNNING_TAG`]).
    pub fn stopped_by_harden(&self) -> bool {
        self.tags.contains_key(WAS_RUNNING_TAG)
    }

    /// The device an unencrypted volume belongs at: where it is attached, or (once a
    /// swap detached it) the device its replacement was made for.
    pub fn device_of(&self, volume: &Volume) -> Option<String> {
        self.devices
            .iter()
            .find(|(_, d)| d.volume_id == volume.id)
            .map(|(name, _)| name.clone())
            .or_else(|| volume.replacement_tag(SWAP_DEVICE_TAG).map(str::to_string))
    }

    /// Whether the volume was deleted with the instance before its swap: read from its
    /// attachment, or (once detached) from its replacement's tag.
    pub fn original_delete_on_termination(&self, volume: &Volume) -> bool {
        match self.devices.values().find(|d| d.volume_id == volume.id) {
            Some(device) => device.delete_on_termination,
            None => volume.replacement_tag(SWAP_DELETE_ON_TERMINATION_TAG) == Some("true"),
        }
    }
}

/// An SQS queue a runbook names: whether it exists, how it is encrypted, who may send
/// to it and where what it cannot deliver goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Queue {
    /// Its name, which is also the id.
    pub name: String,
    /// False when no queue has the name.
    pub exists: bool,
    /// Its URL, once it exists.
    pub url: Option<String>,
    /// Its ARN, once it exists.
    pub arn: Option<String>,
    /// SQS-managed server-side encryption (SSE-SQS) is on.
    pub sqs_managed_sse: bool,
    /// The KMS key of SSE-KMS, when that is used instead.
    pub kms_key_id: Option<String>,
    /// Seconds a received message stays invisible before it is delivered again.
    pub visibility_timeout_seconds: Option<i64>,
    /// Seconds a message is kept.
    pub message_retention_seconds: Option<i64>,
    /// The access policy (parsed), when it has one.
    pub policy: Option<serde_json::Value>,
    /// Where messages received too often go.
    pub redrive: Option<Redrive>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Queue {
    /// A queue of this name that does not exist.
    pub fn missing(name: &str) -> Self {
        Queue {
            name: name.to_string(),
            exists: false,
            url: None,
            arn: None,
            sqs_managed_sse: false,
            kms_key_id: None,
            visibility_timeout_seconds: None,
            message_retention_seconds: None,
            policy: None,
            redrive: None,
            tags: BTreeMap::new(),
        }
    }
}

/// A queue's redrive policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redrive {
    /// The dead-letter queue's ARN.
    pub dead_letter_target_arn: String,
    /// Receives after which a message goes there.
    pub max_receive_count: i64,
}

/// An EventBridge rule on the default bus that a runbook names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRule {
    /// Its name, which is also the id.
    pub name: String,
    /// False when no rule has the name.
    pub exists: bool,
    /// Its ARN, once it exists.
    pub arn: Option<String>,
    /// `State` is `ENABLED`.
    pub enabled: bool,
    /// The event pattern (parsed).
    pub event_pattern: Option<serde_json::Value>,
    /// Its description.
    pub description: Option<String>,
    /// Where it sends what matches, by target id.
    pub targets: BTreeMap<String, String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl EventRule {
    /// A rule of this name that does not exist.
    pub fn missing(name: &str) -> Self {
        EventRule {
            name: name.to_string(),
            exists: false,
            arn: None,
            enabled: false,
            event_pattern: None,
            description: None,
            targets: BTreeMap::new(),
            tags: BTreeMap::new(),
        }
    }
}

/// An SNS topic a runbook names, for people to be told of events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    /// Its name, which is also the id.
    pub name: String,
    /// False when no topic has the name.
    pub exists: bool,
    /// Its ARN, once it exists.
    pub arn: Option<String>,
    /// The KMS key it is encrypted with.
    pub kms_key_id: Option<String>,
    /// The email addresses subscribed (confirmed or pending).
    pub email_subscriptions: Vec<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Topic {
    /// A topic of this name that does not exist.
    pub fn missing(name: &str) -> Self {
        Topic {
            name: name.to_string(),
            exists: false,
            arn: None,
            kms_key_id: None,
            email_subscriptions: Vec::new(),
            tags: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_and_all_traffic_ports_normalise() {
        let a = Rule::new(
            None,
            "-1",
            Some(-1),
            Some(-1),
            Peer::Cidr("0.0.0.0/0".into()),
            None,
        );
        let b = Rule::new(
            None,
            "all",
            None,
            None,
            Peer::Cidr("0.0.0.0/0".into()),
            None,
        );
        assert_eq!(a.key(), b.key());
        let t = Rule::new(
            None,
            "6",
            Some(443),
            Some(443),
            Peer::Cidr("10.0.0.0/8".into()),
            None,
        );
        assert_eq!(t.protocol, "tcp");
        assert!(!t.is_open());
        assert!(a.is_open());
        assert!(Peer::Ipv6Cidr("::/0".into()).is_open());
    }

    #[test]
    fn unknown_rule_ids_round_trip_as_known_after_apply() {
        let rule = Rule::new(
            None,
            "tcp",
            Some(443),
            Some(443),
            Peer::Cidr("0.0.0.0/0".into()),
            None,
        );
        let json = serde_json::to_value(&rule).expect("serializes");
        assert_eq!(json["rule_id"], KNOWN_AFTER_APPLY);
        let back: Rule = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, rule);
    }
}
