use serde_json::{Value, json};

use crate::actions::{Action, ActionPlan, Resource, state_of};
use crate::plan::{BlockReason, ChangeKind};

use super::kind::{ConfigRecorder, ConfigSetup, DeliveryChannel};
use super::plan::EnsureRecorder;

const ROLE: &str =
    "arn:aws:iam::111122223333:role/aws-service-role/config.amazonaws.com/AWSServiceRoleForConfig";

fn setup(recorder: Option<ConfigRecorder>, channels: usize) -> Resource {
    Resource::ConfigRecorder(ConfigSetup {
        region: "eu-west-1".into(),
        recorder,
        delivery_channels: (0..channels)
            .map(|i| DeliveryChannel {
                name: format!("channel-{i}"),
                bucket: "theirs".into(),
            })
            .collect(),
    })
}

fn args(global: bool) -> Value {
    json!({"role_arn": ROLE, "bucket_name": "logs", "include_global": global})
}

#[test]
fn every_change_of_a_new_setup_has_a_way_back_and_a_narrow_recorder_has_none() {
    let empty = setup(None, 0);
    let planned = EnsureRecorder.plan(&empty, &args(false)).expect("plans");
    let undo: Vec<(String, ChangeKind)> = planned
        .changes
        .iter()
        .map(|change| {
            let inverse = EnsureRecorder
                .inverse(&change.call, &change.before, &change.after)
                .expect("a way back");
            (inverse.operation, inverse.kind)
        })
        .collect();
    assert_eq!(
        undo,
        [
            (
                "DeleteConfigurationRecorder".to_string(),
                ChangeKind::Delete
            ),
            ("DeleteDeliveryChannel".to_string(), ChangeKind::Delete),
            ("StopConfigurationRecorder".to_string(), ChangeKind::Update),
        ]
    );
    let narrow = ConfigRecorder {
        name: "legacy".into(),
        role_arn: ROLE.into(),
        all_supported: false,
        include_global: false,
        recording: true,
        last_status: None,
    };
    let Resource::ConfigRecorder(narrow_setup) = setup(Some(narrow), 1) else {
        unreachable!("built as a Config setup")
    };
    let planned = EnsureRecorder
        .plan(
            &Resource::ConfigRecorder(narrow_setup.clone()),
            &args(false),
        )
        .expect("plans");
    let why = EnsureRecorder
        .inverse(
            &planned.changes[0].call,
            &state_of(&narrow_setup),
            &json!(null),
        )
        .expect_err("the chosen types were not recorded");
    assert!(why.contains("chosen resource types"), "{why}");
}

fn operations(plan: &ActionPlan) -> Vec<&str> {
    plan.changes
        .iter()
        .map(|c| c.call.operation.as_str())
        .collect()
}

#[test]
fn a_stopped_recorder_with_an_odd_name_is_reused_under_that_name() {
    let odd = ConfigRecorder {
        name: "legacy-recorder".into(),
        role_arn: "arn:aws:iam::111122223333:role/old".into(),
        all_supported: false,
        include_global: false,
        recording: false,
        last_status: None,
    };
    let planned = EnsureRecorder
        .plan(&setup(Some(odd), 1), &args(true))
        .expect("plans");
    assert_eq!(
        operations(&planned),
        ["PutConfigurationRecorder", "StartConfigurationRecorder"],
        "the existing delivery channel is kept"
    );
    assert_eq!(
        planned.changes[0].call.input["ConfigurationRecorder"]["name"],
        "legacy-recorder"
    );
    assert_eq!(
        planned.changes[1].call.input,
        json!({"ConfigurationRecorderName": "legacy-recorder"})
    );
    let Some(projected) = planned.projected else {
        panic!("projects")
    };
    assert_eq!(
        EnsureRecorder.plan(&projected, &args(true)).expect("plans"),
        ActionPlan::default(),
        "converges: nothing more to do"
    );
}

#[test]
fn an_empty_region_gets_recorder_channel_and_start_in_that_order() {
    let planned = EnsureRecorder
        .plan(&setup(None, 0), &args(false))
        .expect("plans");
    assert_eq!(
        operations(&planned),
        [
            "PutConfigurationRecorder",
            "PutDeliveryChannel",
            "StartConfigurationRecorder"
        ]
    );
    assert_eq!(
        planned.changes[0].call.input,
        json!({"ConfigurationRecorder": {"name": "default", "roleARN": ROLE,
            "recordingGroup": {"allSupported": true, "includeGlobalResourceTypes": false}}})
    );
}

#[test]
fn a_recording_recorder_whose_last_status_is_failure_is_reported_not_hidden() {
    let failing = ConfigRecorder {
        name: "default".into(),
        role_arn: ROLE.into(),
        all_supported: true,
        include_global: true,
        recording: true,
        last_status: Some("Failure".into()),
    };
    let planned = EnsureRecorder
        .plan(&setup(Some(failing), 1), &args(true))
        .expect("plans");
    assert_eq!(planned.blocked.map(|b| b.0), Some(BlockReason::Failing));
}
