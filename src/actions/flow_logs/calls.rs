use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ec2::operation::RequestId;
use aws_sdk_ec2::types::{FlowLogsResourceType, LogDestinationType, TrafficType};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::actions::{Applied, Calls, dry_run_answer, typed_call};
use crate::aws::{Answer, RegionClients};
use crate::error::{AwsFailure, Error, Result};
use crate::plan::{Change, Probe};

use super::kind::sort_flow_logs;
use super::read::list_flow_logs;

/// The most resource ids one `CreateFlowLogs` call takes for VPCs.
pub const MAX_RESOURCE_IDS: usize = 1000;

/// Every call of this concern, as a plan stores it (EC2's field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
enum FlowLogCall {
    CreateFlowLogs(CreateFlowLogsInput),
    /// Rollback: the flow logs a run created, by the ids read back.
    DeleteFlowLogs(DeleteFlowLogsInput),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CreateFlowLogsInput {
    resource_ids: Vec<String>,
    resource_type: String,
    traffic_type: String,
    log_destination_type: String,
    log_destination: String,
    #[serde(default)]
    deliver_logs_permission_arn: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct DeleteFlowLogsInput {
    flow_log_ids: Vec<String>,
}

/// Reads, applies (batched) and probes flow-log changes.
pub struct FlowLogCalls;

/// The first change's input and the VPC ids of a batch's changes, in order, each
/// checked to be a CreateFlowLogs of one VPC with the same other fields as the first.
fn batch_ids(changes: &[&Change]) -> Result<(CreateFlowLogsInput, Vec<String>)> {
    let Some(first) = changes.first() else {
        return Err(Error::Internal("an empty CreateFlowLogs batch".into()));
    };
    let mut common = None;
    let mut ids = Vec::new();
    for change in changes {
        let FlowLogCall::CreateFlowLogs(input) = typed_call::<FlowLogCall>(change)? else {
            return Err(Error::Internal(format!(
                "change {} is not a CreateFlowLogs and cannot join a batch",
                change.id
            )));
        };
        if batch_key_of(change) != batch_key_of(first) {
            return Err(Error::Internal(format!(
                "change {} cannot join the CreateFlowLogs call of {}",
                change.id, first.id
            )));
        }
        match input.resource_ids.as_slice() {
            [id] => ids.push(id.clone()),
            _ => {
                return Err(Error::plan_input(
                    &change.id,
                    "CreateFlowLogs input must name exactly one VPC in ResourceIds",
                ));
            }
        }
        common.get_or_insert(input);
    }
    let common = common.ok_or_else(|| Error::Internal("an empty CreateFlowLogs batch".into()))?;
    Ok((common, ids))
}

fn batch_key_of(change: &Change) -> Value {
    let mut key = change.call.input.clone();
    if let Some(map) = key.as_object_mut() {
        map.remove("ResourceIds");
    }
    key
}

async fn create(
    clients: &RegionClients,
    input: CreateFlowLogsInput,
    ids: Vec<String>,
    dry_run: bool,
) -> Result<aws_sdk_ec2::operation::create_flow_logs::CreateFlowLogsOutput> {
    clients
        .ec2
        .create_flow_logs()
        .set_resource_ids(Some(ids))
        .resource_type(FlowLogsResourceType::from(input.resource_type.as_str()))
        .traffic_type(TrafficType::from(input.traffic_type.as_str()))
        .log_destination_type(LogDestinationType::from(
            input.log_destination_type.as_str(),
        ))
        .log_destination(input.log_destination)
        .set_deliver_logs_permission_arn(input.deliver_logs_permission_arn)
        // One token per call, kept by the SDK's retries: a repeat after a lost answer
        // returns the flow logs already made instead of making more.
        .client_token(crate::actions::client_token())
        .dry_run(dry_run)
        .send()
        .await
        .or_failure("CreateFlowLogs")
}

#[async_trait]
impl Calls for FlowLogCalls {
    fn rights(&self) -> &'static crate::actions::Rights {
        &crate::actions::Rights {
            reads: &["ec2:DescribeVpcs", "ec2:DescribeFlowLogs"],
            changes: &["ec2:CreateFlowLogs", "ec2:DeleteFlowLogs"],
            passes_role_to: &["vpc-flow-logs.amazonaws.com"],
            ..crate::actions::Rights::NONE
        }
    }

    fn check(&self, change: &Change) -> Result<()> {
        typed_call::<FlowLogCall>(change).map(drop)
    }

    async fn read(&self, clients: &RegionClients, resource_id: &str) -> Result<Value> {
        let mut logs = list_flow_logs(clients, Some(resource_id))
            .await?
            .remove(resource_id)
            .unwrap_or_default();
        sort_flow_logs(&mut logs);
        Ok(json!({ "flow_logs": logs }))
    }

    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        current: &Value,
    ) -> Result<Applied> {
        // Only rollback deletes flow logs: those a run created.
        if let FlowLogCall::DeleteFlowLogs(input) = typed_call::<FlowLogCall>(change)? {
            let ids = input.flow_log_ids;
            let out = clients
                .ec2
                .delete_flow_logs()
                .set_flow_log_ids(Some(ids))
                .send()
                .await
                .or_failure("DeleteFlowLogs")?;
            if let Some(refused) = out.unsuccessful().first() {
                return Err(Error::Aws(AwsFailure {
                    operation: "DeleteFlowLogs".into(),
                    code: refused
                        .error()
                        .and_then(|e| e.code())
                        .unwrap_or("Unsuccessful")
                        .to_string(),
                    message: refused
                        .error()
                        .and_then(|e| e.message())
                        .unwrap_or("the service listed the flow log as unsuccessful")
                        .to_string(),
                    request_id: out.request_id().map(str::to_string),
                }));
            }
            return Ok(Applied::request(out.request_id()));
        }
        self.apply_batch(clients, &[change], &[current])
            .await
            .pop()
            .unwrap_or_else(|| Err(Error::Internal("a batch of one answered nothing".into())))
    }

    fn batch_key(&self, change: &Change) -> Option<Value> {
        (change.call.operation == "CreateFlowLogs").then(|| batch_key_of(change))
    }

    fn max_batch(&self) -> usize {
        MAX_RESOURCE_IDS
    }

    async fn apply_batch(
        &self,
        clients: &RegionClients,
        changes: &[&Change],
        _current: &[&Value],
    ) -> Vec<Result<Applied>> {
        let (input, ids) = match batch_ids(changes) {
            Ok(batch) => batch,
            Err(e) => return changes.iter().map(|_| Err(clone_error(&e))).collect(),
        };
        let out = match create(clients, input, ids.clone(), false).await {
            Ok(out) => out,
            Err(e) => return changes.iter().map(|_| Err(clone_error(&e))).collect(),
        };
        let request_id = out.request_id().map(str::to_string);
        let refused: BTreeMap<&str, (String, String)> = out
            .unsuccessful()
            .iter()
            .filter_map(|u| {
                let error = u.error();
                Some((
                    u.resource_id()?,
                    (
                        error
                            .and_then(|e| e.code())
                            .unwrap_or("Unsuccessful")
                            .to_string(),
                        error
                            .and_then(|e| e.message())
                            .unwrap_or("the service listed the VPC as unsuccessful")
                            .to_string(),
                    ),
                ))
            })
            .collect();
        ids.iter()
            .map(|id| match refused.get(id.as_str()) {
                Some((code, message)) => Err(Error::Aws(AwsFailure {
                    operation: "CreateFlowLogs".into(),
                    code: code.clone(),
                    message: format!(
                        "{id}: {message} (the call answered 200; the VPC is listed in Unsuccessful)"
                    ),
                    request_id: request_id.clone(),
                })),
                None => Ok(Applied::request(request_id.as_deref())),
            })
            .collect()
    }

    async fn probe(&self, clients: &RegionClients, change: &Change) -> Probe {
        let result = match batch_ids(&[change]) {
            Ok((input, ids)) => create(clients, input, ids, true)
                .await
                .map(|_| Applied::default()),
            Err(e) => Err(e),
        };
        dry_run_answer(result)
    }
}

/// The same error again, for each change of a batch that failed as a whole.
fn clone_error(error: &Error) -> Error {
    match error {
        Error::Aws(f) => Error::Aws(f.clone()),
        other => Error::Internal(other.to_string()),
    }
}
