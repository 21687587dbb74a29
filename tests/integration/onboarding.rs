//! Onboarding a new account: `harden plan runbooks/` and `harden apply runbooks/` over
//! two regions of moto, with every shipped runbook in the order the runbooks declare,
//! one plan, one apply run in the audit, and a second plan with nothing left to do.

use serde_json::Value;

use crate::support::{Emulator, Kind, block_on, create_vpc, run};

/// The shipped runbooks, each with the runbooks it must follow (`after:` and
/// `requires:`), as their files declare them.
fn declared_order() -> Vec<(String, Vec<String>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
    harden::runbook::load_paths(&[root])
        .expect("the shipped runbooks load")
        .into_iter()
        .map(|loaded| {
            let runbook = loaded.runbook;
            let follows = runbook
                .after
                .iter()
                .chain(&runbook.requires)
                .map(|id| id.value.clone())
                .collect();
            (runbook.id.value, follows)
        })
        .collect()
}

/// Asserts that `order` holds every shipped runbook once, each after those it declares.
fn assert_follows_declarations(order: &[&str]) {
    let declared = declared_order();
    let mut expected: Vec<&str> = declared.iter().map(|(id, _)| id.as_str()).collect();
    expected.sort();
    let mut planned = order.to_vec();
    planned.sort();
    assert_eq!(planned, expected, "every shipped runbook, once");
    let rank = |id: &str| order.iter().position(|r| *r == id);
    for (id, follows) in &declared {
        for earlier in follows {
            assert!(
                rank(earlier) < rank(id),
                "{id} declares it follows {earlier}: {order:?}"
            );
        }
    }
}

#[test]
fn one_plan_and_one_apply_onboard_every_region() {
    let emulator = Emulator::start(Kind::Moto);
    let state = tempfile::tempdir().expect("state");
    let regions = ["us-east-1", "eu-west-1"];
    let cli = |args: &[&str]| {
        let mut cmd = emulator.harden(state.path());
        cmd.args(args);
        for region in regions {
            cmd.args(["--region", region]);
        }
        run(cmd)
    };
    block_on(async {
        let ec2 = emulator.ec2("eu-west-1");
        let vpc = create_vpc(&ec2, "10.5.0.0/16").await;
        let group = ec2
            .create_security_group()
            .group_name("app")
            .description("app")
            .vpc_id(&vpc)
            .send()
            .await
            .expect("group");
        assert!(group.group_id().is_some());
    });

    let out = cli(&["plan", "runbooks/", "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: Value = serde_json::from_str(&out.stdout).expect("plan JSON");
    let runbooks: Vec<&str> = plan["runbooks"]
        .as_array()
        .expect("runbooks")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_follows_declarations(&runbooks);
    let changes = plan["changes"].as_array().expect("changes");
    for region in regions {
        // Within a region, changes follow the runbook order.
        let ranks: Vec<usize> = changes
            .iter()
            .filter(|c| c["region"] == region)
            .filter_map(|c| runbooks.iter().position(|r| c["runbook"] == *r))
            .collect();
        assert!(!ranks.is_empty(), "{region} has changes");
        assert!(
            ranks.windows(2).all(|w| w[0] <= w[1]),
            "{region}: {ranks:?}"
        );
    }
    let trails_created: Vec<&str> = changes
        .iter()
        .filter(|c| c["call"]["operation"] == "CreateTrail")
        .filter_map(|c| c["region"].as_str())
        .collect();
    assert_eq!(
        trails_created,
        ["us-east-1"],
        "one multi-region trail, in the home region"
    );
    let pending = changes.len();

    let out = cli(&["apply", "runbooks/", "--yes"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains(&format!("{pending} succeeded, 0 failed, 0 not attempted")),
        "{}",
        out.stdout
    );
    let run_id = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Apply ").and_then(|r| r.strip_suffix(':')))
        .expect("the apply names its run")
        .to_string();
    let out = cli(&["plan", "runbooks/", "--detailed-exitcode"]);
    assert_eq!(out.code, 0, "converged:\n{}", out.stdout);

    // One audit run holds every change of the onboarding and its summary.
    let mut show = emulator.harden(state.path());
    show.args(["audit", "show", "--run", &run_id, "--format", "json"]);
    let out = run(show);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let records: Vec<Value> = serde_json::from_str(&out.stdout).expect("records JSON");
    assert_eq!(records.len(), pending + 1);
    assert_eq!(
        records.last().map(|r| r["type"].clone()),
        Some(Value::from("apply"))
    );
    emulator.assert_audit_verifies(state.path());
}
