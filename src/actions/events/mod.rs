//! EventBridge: the rule on the default bus that matches the CloudTrail events of the
//! runbooks' triggers and sends them to harden's queue.

pub mod rule;
