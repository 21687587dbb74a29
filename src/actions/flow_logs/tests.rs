use std::collections::BTreeMap;

use serde_json::json;

use crate::actions::{Action, ActionPlan, Resource};
use crate::template::KNOWN_AFTER_APPLY;

use super::kind::{FlowLog, Vpc};
use super::plan::EnableFlowLogs;

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
