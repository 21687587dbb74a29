use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::actions::{
    Action, ActionInfo, ActionPlan, ArgSpec, Calls, ChangeDraft, Inverse, Resource, ResourceKind,
    arg, arguments_of, typed_args,
};
use crate::plan::{ApiCall, ChangeKind};
use crate::template::KNOWN_AFTER_APPLY;

use super::calls::FlowLogCalls;
use super::kind::{FlowLog, Vpc, sort_flow_logs};

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
