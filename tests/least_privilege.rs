//! The least IAM policy `harden iam-policy` prints is exactly what harden uses: every
//! AWS call any harden process made during the test suite (recorded with
//! `HARDEN_RECORD_CALLS`, see `make test`) is allowed by the policy of its command,
//! plans only read, and no right in the policy went unused by every test: the few no
//! emulator implements ([`NOT_YET_EXERCISED`]) are exercised by unit tests with mocks.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use harden::aws::record::{RECORD_CALLS_ENV, read_all};
use harden::least_privilege::{iam_action, is_implied};

/// The policy `harden iam-policy runbooks/ --for ACCESS` prints, with every engine
/// feature the suite uses, as its set of actions.
fn policy_actions(access: &str) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_harden"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove(RECORD_CALLS_ENV)
        .args(["iam-policy", "runbooks/", "--for", access])
        .args(["--assume-role", "OrganizationAccountAccessRole", "--org"])
        .args([
            "--lease-bucket",
            "leases",
            "--watch",
            "--notify",
            "--security-hub",
        ])
        .args(["--ship-bucket", "reports"])
        .output()
        .expect("harden runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let document: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("the policy is JSON");
    document["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .flat_map(|s| s["Action"].as_array().expect("actions").clone())
        .map(|a| a.as_str().expect("an action").to_string())
        .collect()
}

/// Rights no emulator can show, so no integration test records them; each is called
/// with its exact input by a unit test through aws-smithy-mocks instead. A
/// customer-managed default EBS key: neither emulator implements
/// GetEbsDefaultKmsKeyId, so the setting cannot be read back
/// (`actions::ebs::tests::setting_the_default_key_is_read_back`). A log group's key and
/// its rollback: neither implements AssociateKmsKey or DisassociateKmsKey
/// (`actions::logs::tests::a_key_the_run_associated_is_read_back_and_disassociated_by_its_inverse`).
/// Sorted as the policy prints them.
const NOT_YET_EXERCISED: &[&str] = &[
    "ec2:ModifyEbsDefaultKmsKeyId",
    "logs:AssociateKmsKey",
    "logs:DisassociateKmsKey",
];

#[test]
fn every_recorded_call_is_allowed_and_every_right_was_used() {
    let dir = PathBuf::from(std::env::var_os(RECORD_CALLS_ENV).unwrap_or_else(|| {
        panic!("{RECORD_CALLS_ENV} must name the folder the suite recorded into: run `make test`")
    }));
    let calls = read_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert!(
        calls.iter().any(|c| c.command == "apply") && calls.iter().any(|c| c.command == "plan"),
        "{}: the suite recorded no plan or no apply; it did not run",
        dir.display()
    );
    let read_only = policy_actions("read-only");
    let apply = policy_actions("apply");
    let mut refused = BTreeSet::new();
    let mut used = BTreeSet::new();
    for call in &calls {
        let action = iam_action(&call.service, &call.operation);
        let allowed = match call.command.as_str() {
            "plan" | "report" => read_only.contains(&action),
            // EC2 authorizes a DryRun probe as the call it probes.
            "dry-run" => {
                read_only.contains(&action)
                    || (action.starts_with("ec2:") && apply.contains(&action))
            }
            _ => apply.contains(&action),
        };
        if !allowed {
            refused.insert(format!("{} {action}", call.command));
        }
        used.insert(action);
    }
    assert!(
        refused.is_empty(),
        "calls the printed policy does not allow (command, action): {refused:#?}"
    );
    let unused: Vec<&str> = apply
        .iter()
        .filter(|a| !is_implied(a) && !used.contains(*a))
        .map(String::as_str)
        .collect();
    assert_eq!(
        unused, NOT_YET_EXERCISED,
        "rights in the policy no test used, against the known list: a new one needs a test; \
         one a test now uses leaves the list"
    );
}
