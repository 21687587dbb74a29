//! EC2 security groups: discovery, the egress-restriction and group-closing actions,
//! and the calls they make.
//!
//! Rules are always revoked by security-group rule id, never by re-describing the
//! permission: that is exact, and it is what works on every emulator (moto answers
//! success and removes nothing when an all-traffic IPv6 rule is revoked by
//! IpPermissions). Every change is read back by rule listing afterwards.
//!
//! `rule` is a rule and the allow-lists that name rules, `kind` the group as a resource,
//! `read` how rules are listed, `plan` the two actions, `calls` the typed EC2 calls and
//! how they are applied, `undo` the inverse of a recorded change.

mod calls;
mod kind;
mod plan;
mod read;
mod rule;
#[cfg(test)]
mod tests;
mod undo;

pub use calls::SecurityGroupCalls;
pub use kind::{SecurityGroup, SecurityGroupRules};
pub use plan::{CloseArgs, CloseGroup, RestrictArgs, RestrictEgress};
pub use read::read_rules;
pub use rule::{
    AllowedRule, DEFAULT_RULE_DESCRIPTION, Peer, Rule, RuleKey, normalize_protocol, parse_allowed,
    sort_rules,
};
