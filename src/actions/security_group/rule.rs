//! A security-group rule, its peer and identity, and the allow-list arguments that name
//! rules.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::error::Result;
use crate::template::KNOWN_AFTER_APPLY;

pub const DEFAULT_RULE_DESCRIPTION: &str = "allowed by harden";

/// An entry of an allow-list argument, as runbooks write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedRule {
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `-1`/`all`.
    pub protocol: String,
    /// First port; required for tcp and udp.
    #[serde(default)]
    pub from_port: Option<i32>,
    /// Last port; required for tcp and udp.
    #[serde(default)]
    pub to_port: Option<i32>,
    /// IPv4 destination.
    #[serde(default)]
    pub cidr: Option<String>,
    /// IPv6 destination.
    #[serde(default)]
    pub ipv6_cidr: Option<String>,
    /// Prefix-list destination.
    #[serde(default)]
    pub prefix_list_id: Option<String>,
    /// Rule description.
    #[serde(default)]
    pub description: Option<String>,
}

impl AllowedRule {
    fn to_rule(&self, field: &str) -> std::result::Result<Rule, String> {
        let peers: Vec<Peer> = [
            self.cidr.clone().map(Peer::Cidr),
            self.ipv6_cidr.clone().map(Peer::Ipv6Cidr),
            self.prefix_list_id.clone().map(Peer::PrefixListId),
        ]
        .into_iter()
        .flatten()
        .collect();
        let [peer] = <[Peer; 1]>::try_from(peers).map_err(|found| {
            format!(
                "{field}: expected exactly one of cidr, ipv6_cidr, prefix_list_id, found {}",
                found.len()
            )
        })?;
        let rule = Rule::new(
            None,
            &self.protocol,
            self.from_port,
            self.to_port,
            peer,
            Some(
                self.description
                    .clone()
                    .unwrap_or_else(|| DEFAULT_RULE_DESCRIPTION.into()),
            ),
        );
        if matches!(rule.protocol.as_str(), "tcp" | "udp")
            && (rule.from_port.is_none() || rule.to_port.is_none())
        {
            return Err(format!(
                "{field}: protocol {} needs from_port and to_port",
                rule.protocol
            ));
        }
        Ok(rule)
    }
}

/// Parses an allow-list argument, naming the entry at fault.
pub fn parse_allowed(name: &str, value: &Value) -> std::result::Result<Vec<Rule>, String> {
    let entries: Vec<AllowedRule> = serde_json::from_value(value.clone())
        .map_err(|e| format!("argument {name}: expected a list of rules ({e})"))?;
    let mut seen = BTreeSet::new();
    let mut rules = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let rule = entry.to_rule(&format!("argument {name}[{index}]"))?;
        if seen.insert(rule.key()) {
            rules.push(rule);
        }
    }
    Ok(rules)
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

/// Rules as a plan's summary names them.
pub(super) fn describe_rules(rules: &[Rule]) -> String {
    rules
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
