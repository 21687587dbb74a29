//! VPC flow logs (FSBP EC2.6, CIS 3.7): every VPC has an active flow log recording the
//! required traffic.
//!
//! Each VPC without one gets its own planned change, so the plan, the stale check and
//! the read-back stay per VPC; apply sends the changes of one step that differ only in
//! the VPC as one `CreateFlowLogs` call (up to [`MAX_RESOURCE_IDS`] VPCs). The service
//! answers such a call with success and lists the VPCs it refused in `Unsuccessful`:
//! each of those is that VPC's failure, never a success.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_ec2::operation::RequestId;
use aws_sdk_ec2::types::{Filter, FlowLogsResourceType, LogDestinationType, TrafficType};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    Action, ActionInfo, ActionPlan, Applied, ArgSpec, Calls, ChangeDraft, Inverse, arg,
    arguments_of, dry_run_answer, typed_args, typed_call,
};
use crate::actions::{Resource, ResourceKind};
use crate::aws::{RegionClients, failure};
use crate::error::{AwsFailure, Error, Result};
use crate::event::KnownEvent;
use crate::inventory::{Filters, Kind, Narrowing};
use crate::plan::{ApiCall, Change, ChangeKind, Probe};
use crate::template::KNOWN_AFTER_APPLY;

/// The most resource ids one `CreateFlowLogs` call takes for VPCs.
pub const MAX_RESOURCE_IDS: usize = 1000;

const MAX_PAGE: i32 = 1000;

/// Creates a flow log on a VPC that has no active one for the traffic type.
pub struct EnableFlowLogs;

static ENABLE: ActionInfo = ActionInfo {
    name: "ec2:enable-flow-logs",
    description: "create a flow log on each VPC without an active one recording the traffic type (ALL covers every type); VPCs of one step are sent in as few CreateFlowLogs calls as the API allows, and a VPC the answer lists as unsuccessful is a failure",
    resource_kind: ResourceKind::Vpc,
    outputs: &[],
    waits: false,
};

struct Wanted {
    traffic_type: String,
    destination_type: String,
    destination: String,
    role: Option<String>,
}

/// The arguments of `ec2:enable-flow-logs`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowLogArgs {
    /// ALL (default), ACCEPT or REJECT.
    #[serde(default, deserialize_with = "arg::text")]
    pub traffic_type: Option<String>,
    /// s3 (default) or cloud-watch-logs.
    #[serde(default, deserialize_with = "arg::text")]
    pub destination_type: Option<String>,
    /// ARN of the S3 bucket (arn:aws:s3:::NAME) or of the CloudWatch Logs log group.
    #[serde(deserialize_with = "arg::text")]
    #[schemars(required)]
    pub destination: Option<String>,
    /// IAM role that lets flow logs write to CloudWatch Logs (required for
    /// cloud-watch-logs).
    #[serde(default, deserialize_with = "arg::text")]
    pub deliver_logs_permission_arn: Option<String>,
}

fn wanted(args: &Value) -> std::result::Result<Wanted, String> {
    let args: FlowLogArgs = typed_args(args)?;
    let traffic_type = args.traffic_type.unwrap_or_else(|| "ALL".into());
    if !["ALL", "ACCEPT", "REJECT"].contains(&traffic_type.as_str()) {
        return Err(format!(
            "argument traffic_type: expected ALL, ACCEPT or REJECT, found {traffic_type}"
        ));
    }
    let destination_type = args.destination_type.unwrap_or_else(|| "s3".into());
    let destination = args
        .destination
        .ok_or_else(|| "argument destination: an ARN is required".to_string())?;
    let role = args.deliver_logs_permission_arn;
    match destination_type.as_str() {
        "s3" if !destination.starts_with("arn:") || !destination.contains(":s3:::") => {
            return Err(format!(
                "argument destination: expected an S3 bucket ARN (arn:aws:s3:::NAME), found {destination}"
            ));
        }
        "cloud-watch-logs" if role.is_none() => {
            return Err(
                "argument deliver_logs_permission_arn: required when destination_type is cloud-watch-logs"
                    .into(),
            );
        }
        "s3" | "cloud-watch-logs" => {}
        other => {
            return Err(format!(
                "argument destination_type: expected s3 or cloud-watch-logs, found {other}"
            ));
        }
    }
    Ok(Wanted {
        traffic_type,
        destination_type,
        destination,
        role,
    })
}

fn state(vpc: &Vpc) -> Value {
    json!({ "flow_logs": vpc.flow_logs })
}

impl Action for EnableFlowLogs {
    fn arguments(&self) -> Vec<ArgSpec> {
        arguments_of::<FlowLogArgs>()
    }

    fn info(&self) -> &'static ActionInfo {
        &ENABLE
    }

    fn plan(&self, target: &Resource, args: &Value) -> std::result::Result<ActionPlan, String> {
        let Resource::Vpc(vpc) = target else {
            return Err(format!("expected a VPC, given {}", target.kind()));
        };
        let wanted = wanted(args)?;
        if vpc.flow_logs.iter().any(|f| f.covers(&wanted.traffic_type)) {
            return Ok(ActionPlan::default());
        }
        let mut after = vpc.clone();
        after.flow_logs.push(FlowLog {
            id: KNOWN_AFTER_APPLY.into(),
            traffic_type: wanted.traffic_type.clone(),
            destination_type: wanted.destination_type.clone(),
            destination: wanted.destination.clone(),
            status: "ACTIVE".into(),
        });
        sort_flow_logs(&mut after.flow_logs);
        let mut input = json!({
            "ResourceIds": [vpc.id],
            "ResourceType": "VPC",
            "TrafficType": wanted.traffic_type,
            "LogDestinationType": wanted.destination_type,
            "LogDestination": wanted.destination,
        });
        if let Some(role) = &wanted.role {
            input["DeliverLogsPermissionArn"] = json!(role);
        }
        Ok(ActionPlan {
            changes: vec![ChangeDraft {
                kind: ChangeKind::Create,
                summary: format!(
                    "create a flow log of {} traffic to {}",
                    wanted.traffic_type, wanted.destination
                ),
                before: state(vpc),
                after: state(&after),
                call: ApiCall {
                    service: "ec2".into(),
                    operation: "CreateFlowLogs".into(),
                    input,
                },
            }],
            blocked: None,
            projected: Some(Resource::Vpc(after)),
        })
    }

    fn calls(&self) -> &'static dyn Calls {
        &FlowLogCalls
    }

    fn passed_role_arg(&self) -> Option<&'static str> {
        Some("deliver_logs_permission_arn")
    }

    /// A flow log this run created is deleted by its id (read back after the create).
    fn inverse(
        &self,
        call: &ApiCall,
        before: &Value,
        after: &Value,
    ) -> std::result::Result<Inverse, String> {
        if call.operation != "CreateFlowLogs" {
            return Err(format!("no inverse for {}", call.operation));
        }
        let ids = |state: &Value| -> BTreeSet<String> {
            state["flow_logs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["id"].as_str().map(str::to_string))
                .collect()
        };
        let made: Vec<String> = ids(after).difference(&ids(before)).cloned().collect();
        if made.is_empty() || made.iter().any(|id| id == KNOWN_AFTER_APPLY) {
            return Err("the id of the flow log it created was not read back".into());
        }
        Ok(Inverse {
            kind: ChangeKind::Delete,
            summary: format!("delete the flow log {} it created", made.join(", ")),
            operation: "DeleteFlowLogs".into(),
            input: json!({"FlowLogIds": made}),
            after: before.clone(),
            removes_created: false,
        })
    }
}

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
        .map_err(|e| Error::Aws(failure("CreateFlowLogs", &e)))
}

#[async_trait]
impl Calls for FlowLogCalls {
    fn rights(&self) -> &'static crate::actions::Rights {
        &crate::actions::Rights {
            reads: &["ec2:DescribeVpcs", "ec2:DescribeFlowLogs"],
            changes: &["ec2:CreateFlowLogs", "ec2:DeleteFlowLogs"],
            passes_role_to: &["vpc-flow-logs.amazonaws.com"],
            kms_via_ec2: false,
            includes: &[],
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
                .map_err(|e| Error::Aws(failure("DeleteFlowLogs", &e)))?;
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

/// Flow logs of VPCs, by VPC id: of one VPC, or of every resource in the region.
async fn list_flow_logs(
    clients: &RegionClients,
    vpc_id: Option<&str>,
) -> Result<BTreeMap<String, Vec<FlowLog>>> {
    let mut request = clients.ec2.describe_flow_logs().max_results(MAX_PAGE);
    if let Some(id) = vpc_id {
        request = request.filter(Filter::builder().name("resource-id").values(id).build());
    }
    let mut pages = request.into_paginator().send();
    let mut logs: BTreeMap<String, Vec<FlowLog>> = BTreeMap::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::Aws(failure("DescribeFlowLogs", &e)))?;
        for f in page.flow_logs() {
            let Some(resource) = f.resource_id() else {
                continue;
            };
            logs.entry(resource.to_string()).or_default().push(FlowLog {
                id: f.flow_log_id().unwrap_or_default().to_string(),
                traffic_type: f
                    .traffic_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                destination_type: f
                    .log_destination_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                destination: f
                    .log_destination()
                    .or(f.log_group_name())
                    .unwrap_or_default()
                    .to_string(),
                status: f.flow_log_status().unwrap_or_default().to_string(),
            });
        }
    }
    Ok(logs)
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

impl Kind for Vpc {
    const NAME: &'static str = "ec2:vpc";
    const FILTERS: &'static [&'static str] =
        &["vpc-id", "is-default", "tag-key", "owner-id", "cidr"];
    const NARROWING: Narrowing = Narrowing::ById("vpc-id");
    const UNDONE_BY: &'static [KnownEvent] = &[
        KnownEvent::new("DeleteFlowLogs", "ec2.amazonaws.com"),
        KnownEvent::new("CreateVpc", "ec2.amazonaws.com"),
    ];

    fn sample() -> Self {
        Vpc {
            id: "vpc-00000000000000000".into(),
            cidr_block: "10.0.0.0/16".into(),
            is_default: false,
            tags: BTreeMap::new(),
            flow_logs: Vec::new(),
        }
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.tags)
    }

    /// Lists VPCs (server-side filters) and every flow log of the region: two paginated
    /// calls whatever the number of VPCs.
    async fn discover(clients: &RegionClients, filters: &Filters) -> Result<Vec<Self>> {
        let mut request = clients.ec2.describe_vpcs().max_results(MAX_PAGE);
        for (name, values) in filters {
            request = request.filters(
                Filter::builder()
                    .name(name)
                    .set_values(Some(values.clone()))
                    .build(),
            );
        }
        let mut pages = request.into_paginator().send();
        let mut vpcs = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Error::Aws(failure("DescribeVpcs", &e)))?;
            for v in page.vpcs() {
                let Some(id) = v.vpc_id() else { continue };
                vpcs.push(Vpc {
                    id: id.to_string(),
                    cidr_block: v.cidr_block().unwrap_or_default().to_string(),
                    is_default: v.is_default().unwrap_or(false),
                    tags: super::ec2_tags(v.tags()),
                    flow_logs: Vec::new(),
                });
            }
        }
        if vpcs.is_empty() {
            return Ok(Vec::new());
        }
        let mut logs = list_flow_logs(clients, None).await?;
        Ok(vpcs
            .into_iter()
            .map(|mut vpc| {
                vpc.flow_logs = logs.remove(&vpc.id).unwrap_or_default();
                sort_flow_logs(&mut vpc.flow_logs);
                vpc
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vpc(logs: Vec<FlowLog>) -> Resource {
        Resource::Vpc(Vpc {
            id: "vpc-1".into(),
            cidr_block: "10.0.0.0/16".into(),
            is_default: false,
            tags: BTreeMap::new(),
            flow_logs: logs,
        })
    }

    fn log(traffic: &str, status: &str) -> FlowLog {
        FlowLog {
            id: "fl-1".into(),
            traffic_type: traffic.into(),
            destination_type: "s3".into(),
            destination: "arn:aws:s3:::other".into(),
            status: status.into(),
        }
    }

    const ARGS: &str = r#"{"destination": "arn:aws:s3:::logs"}"#;

    #[test]
    fn a_created_flow_log_is_undone_by_deleting_it_by_the_id_read_back() {
        let planned = plan(&vpc(vec![log("REJECT", "ACTIVE")]), ARGS);
        let change = &planned.changes[0];
        let mut read_back = change.after.clone();
        for f in read_back["flow_logs"].as_array_mut().expect("logs") {
            if f["id"] == KNOWN_AFTER_APPLY {
                f["id"] = json!("fl-new");
            }
        }
        let undo = EnableFlowLogs
            .inverse(&change.call, &change.before, &read_back)
            .expect("an inverse");
        assert_eq!(undo.operation, "DeleteFlowLogs");
        assert_eq!(undo.input, json!({"FlowLogIds": ["fl-new"]}));
        assert_eq!(undo.after, change.before, "the flow log it found is kept");
        assert!(
            EnableFlowLogs
                .inverse(&change.call, &change.before, &change.after)
                .is_err(),
            "without the id read back there is nothing to delete by"
        );
    }

    fn plan(target: &Resource, args: &str) -> ActionPlan {
        EnableFlowLogs
            .plan(target, &serde_json::from_str(args).expect("json"))
            .expect("plans")
    }

    #[test]
    fn an_active_flow_log_of_all_traffic_is_compliant_whatever_its_destination() {
        assert_eq!(
            plan(&vpc(vec![log("ALL", "ACTIVE")]), ARGS),
            ActionPlan::default()
        );
        let reject_only = r#"{"destination": "arn:aws:s3:::logs", "traffic_type": "REJECT"}"#;
        assert_eq!(
            plan(&vpc(vec![log("REJECT", "ACTIVE")]), reject_only),
            ActionPlan::default()
        );
    }

    #[test]
    fn a_vpc_whose_flow_log_records_less_or_is_not_active_gets_one() {
        for existing in [log("REJECT", "ACTIVE"), log("ALL", "FAILED")] {
            let planned = plan(&vpc(vec![existing.clone()]), ARGS);
            assert_eq!(planned.changes.len(), 1);
            let change = &planned.changes[0];
            assert_eq!(
                change.call.input,
                json!({"ResourceIds": ["vpc-1"], "ResourceType": "VPC", "TrafficType": "ALL",
                       "LogDestinationType": "s3", "LogDestination": "arn:aws:s3:::logs"})
            );
            assert_eq!(change.after["flow_logs"].as_array().map(Vec::len), Some(2));
            let Some(projected) = planned.projected else {
                panic!("projects")
            };
            assert_eq!(plan(&projected, ARGS), ActionPlan::default());
        }
    }

    #[test]
    fn bad_arguments_are_refused_with_the_argument_named() {
        for (args, expected) in [
            (r#"{"destination": "logs"}"#, "argument destination"),
            (
                r#"{"destination": "arn:aws:logs:us-east-1:1:log-group:x", "destination_type": "cloud-watch-logs"}"#,
                "deliver_logs_permission_arn",
            ),
            (
                r#"{"destination": "arn:aws:s3:::logs", "traffic_type": "SOME"}"#,
                "argument traffic_type",
            ),
        ] {
            let error = EnableFlowLogs
                .plan(&vpc(Vec::new()), &serde_json::from_str(args).expect("json"))
                .expect_err("refused");
            assert!(error.contains(expected), "{error}");
        }
    }
}
