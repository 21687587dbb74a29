//! VPC flow logs (FSBP EC2.6, CIS 3.7): every VPC has an active flow log recording the
//! required traffic.
//!
//! Each VPC without one gets its own planned change, so the plan, the stale check and
//! the read-back stay per VPC; apply sends the changes of one step that differ only in
//! the VPC as one `CreateFlowLogs` call (up to [`MAX_RESOURCE_IDS`] VPCs). The service
//! answers such a call with success and lists the VPCs it refused in `Unsuccessful`:
//! each of those is that VPC's failure, never a success.
//!
//! `kind` is the VPC and its flow logs as a resource, `read` listing flow logs, `plan`
//! the action and its inverse, `calls` the typed calls, sent one per VPC or batched.

mod calls;
mod kind;
mod plan;
mod read;
#[cfg(test)]
mod tests;

pub use calls::{FlowLogCalls, MAX_RESOURCE_IDS};
pub use kind::{FlowLog, Vpc, sort_flow_logs};
pub use plan::{EnableFlowLogs, FlowLogArgs};
