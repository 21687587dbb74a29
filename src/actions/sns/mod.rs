//! SNS: the topic people are told of events on (`sns:ensure-topic`: encrypted, with
//! their email subscriptions), and publishing what harden did in response.

pub mod topic;

pub use topic::{publish, read_topic};
