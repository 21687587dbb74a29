//! enable-aws-config (FSBP Config.1) against moto and LocalStack: a stopped recorder with
//! an odd name, a narrow recording group and a delivery channel of its own is reused
//! under its name (no new channel, no bucket); an empty region gets the service-linked
//! role, the delivery bucket, a recorder, a channel, and is started.

use aws_sdk_config::types::{ConfigurationRecorder, DeliveryChannel, RecordingGroup, ResourceType};
use serde_json::Value;

use crate::support::{Emulator, Kind, block_on, operations, run};

const RUNBOOK: &str = "runbooks/enable-aws-config.yaml";

/// (name, role, all supported, global, recording) of the recorder, and channel buckets.
async fn recorder(
    config: &aws_sdk_config::Client,
) -> (Option<(String, String, bool, bool, bool)>, Vec<String>) {
    let recorders = config
        .describe_configuration_recorders()
        .send()
        .await
        .expect("recorders");
    let statuses = config
        .describe_configuration_recorder_status()
        .send()
        .await
        .expect("status");
    let channels = config
        .describe_delivery_channels()
        .send()
        .await
        .expect("channels");
    let recorder = recorders.configuration_recorders().first().map(|r| {
        let name = r.name().unwrap_or_default().to_string();
        let recording = statuses
            .configuration_recorders_status()
            .iter()
            .any(|s| s.name() == Some(name.as_str()) && s.recording());
        (
            name,
            r.role_arn().unwrap_or_default().to_string(),
            r.recording_group().is_some_and(|g| g.all_supported()),
            r.recording_group()
                .is_some_and(|g| g.include_global_resource_types()),
            recording,
        )
    });
    let buckets = channels
        .delivery_channels()
        .iter()
        .map(|c| c.s3_bucket_name().unwrap_or_default().to_string())
        .collect();
    (recorder, buckets)
}

fn slr(account: &str) -> String {
    format!(
        "arn:aws:iam::{account}:role/aws-service-role/config.amazonaws.com/AWSServiceRoleForConfig"
    )
}

#[test]
fn a_stopped_recorder_with_an_odd_name_is_reused_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    let region = "eu-west-1";
    let config = emulator.config(region);
    let account = emulator.account();
    let state = tempfile::tempdir().expect("state");
    let cli = |args: &[&str]| {
        let mut cmd = emulator.harden(state.path());
        cmd.args(args).args(["--region", region]);
        run(cmd)
    };
    block_on(async {
        // The account already has Config's service-linked role. moto names it
        // "AWSServiceRoleForconfig" (AWS: "AWSServiceRoleForConfig"); it is found by its
        // path all the same, so no second one is planned.
        emulator
            .iam()
            .create_service_linked_role()
            .aws_service_name("config.amazonaws.com")
            .send()
            .await
            .expect("role");
        let s3 = emulator.s3(region);
        crate::support::create_bucket(&s3, "team-config", "eu-west-1").await;
        config
            .put_configuration_recorder()
            .configuration_recorder(
                ConfigurationRecorder::builder()
                    .name("legacy-recorder")
                    .role_arn(format!("arn:aws:iam::{account}:role/legacy"))
                    .recording_group(
                        RecordingGroup::builder()
                            .all_supported(false)
                            .include_global_resource_types(false)
                            .resource_types(ResourceType::from("AWS::EC2::Instance"))
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("odd recorder");
        config
            .put_delivery_channel()
            .delivery_channel(
                DeliveryChannel::builder()
                    .name("team")
                    .s3_bucket_name("team-config")
                    .build(),
            )
            .send()
            .await
            .expect("channel");
    });
    let before = block_on(recorder(&config));

    let out = cli(&["plan", RUNBOOK, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    assert_eq!(
        operations(&plan),
        ["PutConfigurationRecorder", "StartConfigurationRecorder"],
        "no role, no bucket, no second channel"
    );
    assert_eq!(
        plan["changes"][0]["call"]["input"]["ConfigurationRecorder"]["name"],
        "legacy-recorder"
    );
    let out = cli(&["dry-run", RUNBOOK]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        block_on(recorder(&config)),
        before,
        "plan and dry-run change nothing"
    );

    let out = cli(&["apply", RUNBOOK, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        block_on(recorder(&config)),
        (
            Some(("legacy-recorder".into(), slr(account), true, true, true)),
            vec!["team-config".into()]
        )
    );
    let out = cli(&["plan", RUNBOOK, "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "converged:\n{}", out.stdout);
    emulator.assert_audit_verifies(state.path());
}

/// From nothing: the service-linked role is created (and found again by its path,
/// whatever name the emulator gives it), then the bucket, recorder and channel.
fn an_empty_region_gets_role_bucket_recorder_channel(kind: Kind) {
    let emulator = Emulator::start(kind);
    let region = "us-east-1";
    let config = emulator.config(region);
    let account = emulator.account();
    let bucket = format!("harden-config-{account}-{region}");
    let state = tempfile::tempdir().expect("state");
    let cli = |args: &[&str]| {
        let mut cmd = emulator.harden(state.path());
        cmd.args(args).args(["--region", region]);
        run(cmd)
    };
    let out = cli(&["plan", RUNBOOK, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    assert_eq!(
        operations(&plan),
        [
            "CreateServiceLinkedRole",
            "CreateBucket",
            "PutPublicAccessBlock",
            "PutBucketEncryption",
            "PutBucketVersioning",
            "PutBucketPolicy",
            "PutConfigurationRecorder",
            "PutDeliveryChannel",
            "StartConfigurationRecorder",
        ],
        "role, then the delivery bucket, then recorder, channel and start"
    );

    let out = cli(&["apply", RUNBOOK, "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        block_on(recorder(&config)),
        (
            Some(("default".into(), slr(account), true, true, true)),
            vec![bucket.clone()]
        )
    );
    let roles = block_on(
        emulator
            .iam()
            .list_roles()
            .path_prefix("/aws-service-role/config.amazonaws.com/")
            .send(),
    )
    .expect("list roles");
    assert_eq!(
        roles.roles().len(),
        1,
        "one service-linked role of Config: {:?}",
        roles.roles()
    );
    let out = cli(&["plan", RUNBOOK, "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "converged:\n{}", out.stdout);
}

#[test]
fn an_empty_region_gets_role_bucket_recorder_channel_on_moto() {
    an_empty_region_gets_role_bucket_recorder_channel(Kind::Moto);
}

#[test]
fn an_empty_region_gets_role_bucket_recorder_channel_on_localstack() {
    an_empty_region_gets_role_bucket_recorder_channel(Kind::LocalStack);
}
