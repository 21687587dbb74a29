//! SQS: the queue the alerting runbook's rule delivers CloudTrail events to, and
//! reading events from it (`harden watch`).

pub mod messages;
pub mod queue;
