//! The account-level S3 Block Public Access runbook on moto: planned in the home
//! region only, applied and read back, compliant on the next plan, and rolled back to
//! exactly what the account had (some switches, or no configuration at all).

use aws_sdk_s3control::types::PublicAccessBlockConfiguration;
use serde_json::Value;

use crate::support::{Emulator, Harness, Kind, block_on};

const RUNBOOK: &str = "runbooks/block-s3-public-access.yaml";
const HOME: &str = "us-east-1";
const OTHER: &str = "eu-west-1";

/// The four switches as (BlockPublicAcls, IgnorePublicAcls, BlockPublicPolicy,
/// RestrictPublicBuckets); `None` without a configuration.
type Switches = Option<(bool, bool, bool, bool)>;

fn s3control(emulator: &Emulator) -> aws_sdk_s3control::Client {
    harden::actions::s3_account::client(&emulator.sdk_config(HOME))
}

fn read(emulator: &Emulator) -> Switches {
    let answer = block_on(
        s3control(emulator)
            .get_public_access_block()
            .account_id(emulator.account())
            .send(),
    );
    match answer {
        Ok(out) => out.public_access_block_configuration().map(|c| {
            (
                c.block_public_acls().unwrap_or(false),
                c.ignore_public_acls().unwrap_or(false),
                c.block_public_policy().unwrap_or(false),
                c.restrict_public_buckets().unwrap_or(false),
            )
        }),
        Err(e) => {
            let code = e.as_service_error().and_then(|s| {
                aws_sdk_s3control::error::ProvideErrorMetadata::code(s).map(str::to_string)
            });
            assert_eq!(
                code.as_deref(),
                Some("NoSuchPublicAccessBlockConfiguration"),
                "{e:?}"
            );
            None
        }
    }
}

fn seed_block_public_policy_only(emulator: &Emulator) {
    block_on(
        s3control(emulator)
            .put_public_access_block()
            .account_id(emulator.account())
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_policy(true)
                    .build(),
            )
            .send(),
    )
    .expect("seeded");
}

fn plan(emulator: &Emulator, state: &std::path::Path) -> Value {
    Harness::new(emulator, state).plan(&[RUNBOOK, "--region", HOME, "--region", OTHER])
}

/// Applies the runbook in both regions and rolls the run back; the switches after the
/// apply and after the rollback.
fn apply_and_roll_back(emulator: &Emulator) -> (Switches, Switches) {
    let state = tempfile::tempdir().expect("state");
    let harden = Harness::new(emulator, state.path());
    let (run_id, _) = harden.apply(&[
        "apply", RUNBOOK, "--yes", "--region", HOME, "--region", OTHER,
    ]);
    let applied = read(emulator);
    let again = harden.run(&[
        "plan",
        RUNBOOK,
        "--detailed-exitcode",
        "--region",
        HOME,
        "--region",
        OTHER,
    ]);
    assert_eq!(again.code, 0, "nothing left to do:\n{}", again.stdout);
    let back = harden.run(&["rollback", &run_id, "--yes"]);
    assert_eq!(back.code, 0, "{}\n{}", back.stdout, back.stderr);
    emulator.assert_audit_verifies(state.path());
    (applied, read(emulator))
}

#[test]
fn the_account_is_blocked_once_in_its_home_region_and_rolled_back_exactly_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    seed_block_public_policy_only(&emulator);

    let state = tempfile::tempdir().expect("state");
    let plan = plan(&emulator, state.path());
    let changes = plan["changes"].as_array().expect("changes");
    assert_eq!(
        changes.len(),
        1,
        "one change, in the home region: {changes:?}"
    );
    let change = &changes[0];
    assert_eq!(change["region"], HOME);
    assert_eq!(change["resource"]["id"], emulator.account());
    assert_eq!(change["call"]["service"], "s3control");
    assert_eq!(change["call"]["operation"], "PutPublicAccessBlock");
    assert_eq!(
        change["call"]["input"],
        serde_json::json!({
            "AccountId": emulator.account(),
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": true,
                "IgnorePublicAcls": true,
                "BlockPublicPolicy": true,
                "RestrictPublicBuckets": true
            }
        })
    );
    assert_eq!(
        change["summary"],
        format!(
            "block public access for account {}: turn on BlockPublicAcls, IgnorePublicAcls, RestrictPublicBuckets",
            emulator.account()
        )
    );
    assert_eq!(
        read(&emulator),
        Some((false, false, true, false)),
        "plan changes nothing"
    );

    let (applied, rolled_back) = apply_and_roll_back(&emulator);
    assert_eq!(applied, Some((true, true, true, true)));
    assert_eq!(
        rolled_back,
        Some((false, false, true, false)),
        "the seeded switches"
    );
}

#[test]
fn an_account_without_a_configuration_has_none_again_after_rollback_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    assert_eq!(read(&emulator), None);
    let (applied, rolled_back) = apply_and_roll_back(&emulator);
    assert_eq!(applied, Some((true, true, true, true)));
    assert_eq!(
        rolled_back, None,
        "the configuration the run made is removed"
    );
}
