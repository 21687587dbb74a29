//! Many accounts in one plan, against moto (which isolates accounts reached with STS
//! AssumeRole): three accounts over two regions from an accounts file (YAML, then CSV)
//! and one more whose role cannot be assumed (a proxy of the test suite refuses its
//! AssumeRole, as moto accepts any); then the accounts of an emulated organization.
//! Asserted: the plan groups changes by account then region and names each account's
//! principal; the unreachable account is reported up front and the others go on; apply
//! changes each account and no other; every audit record names its account.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

use crate::proxy::{Answer, Proxy, error_xml};
use crate::support::{Emulator, Kind, Run, block_on, create_open_group, lets_all_out, run};

const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const ACCOUNTS: [&str; 3] = ["111111111111", "222222222222", "333333333333"];
const LOCKED: &str = "444444444444";
const RUNBOOK: &str = "runbooks/restrict-sg-egress.yaml";

/// Whether any group of the region lets all traffic out to the internet.
pub(crate) async fn any_open(ec2: &aws_sdk_ec2::Client) -> bool {
    ec2.describe_security_groups()
        .send()
        .await
        .expect("groups")
        .security_groups()
        .iter()
        .filter(|g| g.group_name() == Some("app"))
        .any(lets_all_out)
}

/// An "app" group (open egress, as new groups are) in each region of each account.
pub(crate) async fn seed(emulator: &Emulator, accounts: &[&str]) {
    for (n, account) in accounts.iter().enumerate() {
        for (m, region) in REGIONS.iter().enumerate() {
            let ec2 = emulator.ec2_in(account, region).await;
            create_open_group(&ec2, &format!("10.{}.{}.0/24", 30 + n, m), "app").await;
        }
    }
}

/// A proxy that refuses every AssumeRole into the locked account, as STS does when
/// the role's trust policy does not admit the caller.
/// A proxy refusing AssumeRole into the locked account, counting every AssumeRole it
/// sees (harden's and the SDK's refreshing provider's alike).
fn locking_proxy(emulator: &Emulator, assumed: Arc<AtomicUsize>) -> Proxy {
    Proxy::start(&emulator.endpoint, move |request| {
        let body = request.text();
        if body.contains("Action=AssumeRole") {
            assumed.fetch_add(1, Ordering::SeqCst);
        }
        if body.contains("Action=AssumeRole") && body.contains(LOCKED) {
            Answer::Respond(
                403,
                error_xml(
                    "AccessDenied",
                    "User: arn:aws:iam::123456789012:user/test is not authorized to perform: sts:AssumeRole",
                ),
            )
        } else {
            Answer::Forward
        }
    })
}

fn harden_via(proxy: &Proxy, emulator: &Emulator, state: &std::path::Path, args: &[&str]) -> Run {
    let mut cmd = emulator.harden_through(&proxy.endpoint, state);
    cmd.args(args);
    for region in REGIONS {
        cmd.args(["--region", region]);
    }
    run(cmd)
}

fn plan_json(out: &Run) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("plan JSON: {e}\n{}", out.stdout))
}

/// (account, region) of every change, in plan order.
fn places(plan: &Value) -> Vec<(String, String)> {
    plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["account_id"].as_str().unwrap_or_default().to_string(),
                c["region"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn three_accounts_two_regions_and_one_unreachable_from_an_accounts_file_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    let assumed = Arc::new(AtomicUsize::new(0));
    let proxy = locking_proxy(&emulator, assumed.clone());
    block_on(seed(&emulator, &ACCOUNTS));
    // The caller's own account has an open group too; it is not in the file.
    block_on(seed(&emulator, &[emulator.account()]));
    let state = tempfile::tempdir().expect("state");
    let file = state.path().join("accounts.yaml");
    std::fs::write(
        &file,
        format!(
            "accounts:\n  - {{id: \"{}\", name: dev, tags: {{env: dev}}}}\n  - {{id: \"{}\", name: stage, tags: {{env: stage}}}}\n  - {{id: \"{}\", name: prod, tags: {{env: prod}}}}\n  - {{id: \"{LOCKED}\", name: locked}}\n",
            ACCOUNTS[0], ACCOUNTS[1], ACCOUNTS[2]
        ),
    )
    .expect("accounts file");
    let accounts = file.to_str().expect("utf-8 path");

    // The unreachable account makes the plan partial: reported at the top, exit 1.
    let out = harden_via(
        &proxy,
        &emulator,
        state.path(),
        &["plan", RUNBOOK, "--accounts", accounts],
    );
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.lines().any(|l| l.starts_with(&format!("  ? account locked ({LOCKED}): not reached: cannot assume arn:aws:iam::{LOCKED}:role/OrganizationAccountAccessRole")) && l.contains("AccessDenied")),
        "{}",
        out.stdout
    );

    let out = harden_via(
        &proxy,
        &emulator,
        state.path(),
        &[
            "plan",
            RUNBOOK,
            "--accounts",
            accounts,
            "--allow-partial",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Each account's role is assumed once for the run (the locked one refused once),
    // however many clients and regions use the credentials.
    assert_eq!(
        assumed.swap(0, Ordering::SeqCst),
        2 * (ACCOUNTS.len() + 1),
        "two plans, each assuming every listed account's role once"
    );
    let plan = plan_json(&out);
    let planned: Vec<&str> = plan["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    assert_eq!(
        planned, ACCOUNTS,
        "the reachable accounts, in the file's order"
    );
    for account in plan["accounts"].as_array().expect("accounts") {
        let id = account["id"].as_str().expect("id");
        assert_eq!(account["regions"], serde_json::json!(REGIONS));
        assert_eq!(account["role"], "OrganizationAccountAccessRole");
        let principal = account["principal"].as_str().expect("principal");
        assert!(
            principal.starts_with(&format!(
                "arn:aws:sts::{id}:assumed-role/OrganizationAccountAccessRole/harden-"
            )),
            "each account is acted in as its assumed role, the session named for the run: {principal}"
        );
    }
    assert_eq!(plan["accounts"][0]["tags"]["env"], "dev");
    assert_eq!(plan["unreachable"][0]["id"], LOCKED);
    // Three groups per account-region (the default VPC's default group, the new VPC's,
    // and "app"), one change each, grouped by account then region.
    let expected: Vec<(String, String)> = ACCOUNTS
        .iter()
        .flat_map(|a| REGIONS.iter().map(move |r| (a.to_string(), r.to_string())))
        .collect();
    let mut grouped = places(&plan);
    assert_eq!(grouped.len(), 18);
    grouped.dedup();
    assert_eq!(grouped, expected);
    for change in plan["changes"].as_array().expect("changes") {
        let id = change["id"].as_str().expect("id");
        assert!(
            id.starts_with(&format!(
                "{}/restrict-sg-egress/{}/",
                change["account_id"].as_str().unwrap_or_default(),
                change["region"].as_str().unwrap_or_default()
            )),
            "{id}"
        );
    }

    // The text plan is grouped by account then region.
    let out = harden_via(
        &proxy,
        &emulator,
        state.path(),
        &["plan", RUNBOOK, "--accounts", accounts, "--allow-partial"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let headings: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("account ") || l.starts_with("  us-") || l.starts_with("  eu-"))
        .collect();
    assert_eq!(headings.len(), 9, "{}", out.stdout);
    assert!(
        headings[0]
            .starts_with("account dev (111111111111) (as arn:aws:sts::111111111111:assumed-role/"),
        "{headings:?}"
    );
    assert_eq!(&headings[1..3], ["  us-east-1", "  eu-west-1"]);

    let out = harden_via(
        &proxy,
        &emulator,
        state.path(),
        &[
            "apply",
            RUNBOOK,
            "--accounts",
            accounts,
            "--allow-partial",
            "--yes",
        ],
    );
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("18 succeeded, 0 failed, 0 not attempted"),
        "{}",
        out.stdout
    );
    // Without a terminal, progress is plain lines on stderr, the last of each phase.
    assert!(
        out.stderr.contains("6/6 account-regions planned")
            && out.stderr.contains("18/18 changes applied"),
        "{}",
        out.stderr
    );
    block_on(async {
        for account in ACCOUNTS {
            for region in REGIONS {
                assert!(
                    !any_open(&emulator.ec2_in(account, region).await).await,
                    "{account} {region}"
                );
            }
        }
        for region in REGIONS {
            assert!(
                any_open(&emulator.ec2(region)).await,
                "the caller's own account is not in the file"
            );
        }
    });
    // Every change record names its account and who acted there.
    let log = std::fs::read_to_string(state.path().join("audit.jsonl")).expect("audit log");
    let changes: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["type"] == "change")
        .collect();
    assert_eq!(changes.len(), 18);
    let named: BTreeSet<&str> = changes
        .iter()
        .filter_map(|r| r["account_id"].as_str())
        .collect();
    assert_eq!(named, ACCOUNTS.into_iter().collect());
    for record in &changes {
        let account = record["account_id"].as_str().unwrap_or_default();
        assert!(
            record["principal"]
                .as_str()
                .unwrap_or_default()
                .contains(&format!("sts::{account}:assumed-role/")),
            "{record}"
        );
    }
    emulator.assert_audit_verifies(state.path());
    let out = harden_via(
        &proxy,
        &emulator,
        state.path(),
        &[
            "plan",
            RUNBOOK,
            "--accounts",
            accounts,
            "--allow-partial",
            "--detailed-exitcode",
        ],
    );
    assert_eq!(out.code, 0, "converged:\n{}", out.stdout);
    assert!(
        proxy.answered() >= 4,
        "the locked account's AssumeRole was refused each time"
    );

    // The same accounts from a CSV file, with a tag filter.
    let csv = state.path().join("accounts.csv");
    std::fs::write(
        &csv,
        format!("id,name,regions,role,external_id,tags\n{},dev,,,,env=dev\n{},prod,eu-west-1,,,env=prod\n", ACCOUNTS[0], ACCOUNTS[2]),
    )
    .expect("csv");
    let out = harden_via(
        &proxy,
        &emulator,
        state.path(),
        &[
            "plan",
            RUNBOOK,
            "--accounts",
            csv.to_str().expect("utf-8"),
            "--account-tag",
            "env=prod",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan = plan_json(&out);
    assert_eq!(plan["accounts"].as_array().map(Vec::len), Some(1));
    assert_eq!(plan["accounts"][0]["id"], ACCOUNTS[2]);
    assert_eq!(
        plan["accounts"][0]["regions"],
        serde_json::json!(["eu-west-1"]),
        "the file's regions win"
    );
}

#[test]
fn a_bad_accounts_file_is_refused_before_anything_is_contacted() {
    let state = tempfile::tempdir().expect("state");
    let file = state.path().join("accounts.yaml");
    std::fs::write(&file, "accounts:\n  - id: \"1234\"\n").expect("file");
    // No emulator: nothing may be contacted.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_harden"));
    cmd.args(["--endpoint-url", "http://127.0.0.1:9", "--state-dir"])
        .arg(state.path())
        .args(["plan", RUNBOOK, "--region", "us-east-1", "--accounts"])
        .arg(&file)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test");
    let out = run(cmd);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        format!(
            "error: {}:2:9: account id \"1234\": expected 12 digits (quote it in YAML if it starts with 0)",
            file.display()
        )
    );
}

#[test]
fn the_accounts_of_an_organization_filtered_by_tag_on_moto() {
    let emulator = Emulator::start(Kind::Moto);
    let org = aws_sdk_organizations::Client::new(&emulator.sdk_config("us-east-1"));
    let created: (Vec<(String, &str)>, String) = block_on(async {
        org.create_organization()
            .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
            .send()
            .await
            .expect("organization");
        let mut created = Vec::new();
        for (name, env) in [
            ("team-a", "dev"),
            ("team-b", "dev"),
            ("team-c", "prod"),
            ("team-gone", "dev"),
        ] {
            let status = org
                .create_account()
                .account_name(name)
                .email(format!("{name}@example.com"))
                .tags(
                    aws_sdk_organizations::types::Tag::builder()
                        .key("env")
                        .value(env)
                        .build()
                        .expect("tag"),
                )
                .send()
                .await
                .expect("account");
            let id = status
                .create_account_status()
                .and_then(|s| s.account_id())
                .expect("account id")
                .to_string();
            created.push((id, env));
        }
        // The last one is closed: suspended, it is skipped and named, never planned.
        let (gone, _) = created.pop().expect("accounts");
        org.close_account()
            .account_id(&gone)
            .send()
            .await
            .expect("close account");
        (created, gone)
    });
    let (created, gone) = created;
    let dev: Vec<&str> = created
        .iter()
        .filter(|(_, env)| *env == "dev")
        .map(|(id, _)| id.as_str())
        .collect();
    block_on(seed(&emulator, &dev));
    let state = tempfile::tempdir().expect("state");
    let file = state.path().join("plan.json");
    let mut cmd = emulator.harden(state.path());
    cmd.args([
        "plan",
        RUNBOOK,
        "--org",
        "--account-tag",
        "env=dev",
        "--format",
        "json",
        "--out",
        file.to_str().expect("utf-8"),
    ]);
    for region in REGIONS {
        cmd.args(["--region", region]);
    }
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan = plan_json(&out);
    let mut planned: Vec<&str> = plan["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    planned.sort_unstable();
    let mut expected = dev.clone();
    expected.sort_unstable();
    assert_eq!(
        planned, expected,
        "the organization's active dev accounts, and no other"
    );
    assert!(
        out.stderr.contains(&format!(
            "note: skipped account team-gone ({gone}) (SUSPENDED): not active"
        )),
        "{}",
        out.stderr
    );
    assert_eq!(
        plan["accounts"][0]["name"]
            .as_str()
            .map(|n| n.starts_with("team-")),
        Some(true)
    );
    let changed: BTreeSet<String> = places(&plan).into_iter().map(|(a, _)| a).collect();
    assert_eq!(
        changed.len(),
        2,
        "each dev account's open groups are planned"
    );

    // A saved plan reaches each account again the way it was planned, and applies.
    let mut apply = emulator.harden(state.path());
    apply.args(["apply", "--yes", "--plan", file.to_str().expect("utf-8")]);
    let out = run(apply);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    block_on(async {
        for account in &dev {
            for region in REGIONS {
                assert!(
                    !any_open(&emulator.ec2_in(account, region).await).await,
                    "{account} {region}"
                );
            }
        }
    });
    emulator.assert_audit_verifies(state.path());
}

/// `--org-ou`: only the accounts under the unit, those of units nested in it included;
/// an account at the root or in a sibling unit is not planned.
#[test]
fn the_accounts_under_an_organizational_unit_nested_units_included_on_moto() {
    use aws_sdk_organizations::types::OrganizationFeatureSet;
    let emulator = Emulator::start(Kind::Moto);
    let org = aws_sdk_organizations::Client::new(&emulator.sdk_config("us-east-1"));
    let (unit, expected) = block_on(async {
        org.create_organization()
            .feature_set(OrganizationFeatureSet::All)
            .send()
            .await
            .expect("organization");
        let roots = org.list_roots().send().await.expect("roots");
        let root = roots.roots()[0].id().expect("root id").to_string();
        let unit_under = |parent: String, name: &'static str| {
            let org = org.clone();
            async move {
                org.create_organizational_unit()
                    .parent_id(parent)
                    .name(name)
                    .send()
                    .await
                    .expect("unit")
                    .organizational_unit()
                    .and_then(|u| u.id())
                    .expect("unit id")
                    .to_string()
            }
        };
        let workloads = unit_under(root.clone(), "workloads").await;
        let team = unit_under(workloads.clone(), "team").await;
        let sandbox = unit_under(root.clone(), "sandbox").await;
        let mut expected = Vec::new();
        for (name, unit) in [
            ("in-workloads", Some(&workloads)),
            ("in-team", Some(&team)),
            ("in-sandbox", Some(&sandbox)),
            ("at-root", None),
        ] {
            let id = org
                .create_account()
                .account_name(name)
                .email(format!("{name}@example.com"))
                .send()
                .await
                .expect("account")
                .create_account_status()
                .and_then(|s| s.account_id())
                .expect("account id")
                .to_string();
            if let Some(unit) = unit {
                org.move_account()
                    .account_id(&id)
                    .source_parent_id(&root)
                    .destination_parent_id(unit)
                    .send()
                    .await
                    .expect("move");
            }
            if matches!(name, "in-workloads" | "in-team") {
                expected.push(id);
            }
        }
        expected.sort_unstable();
        (workloads, expected)
    });
    let state = tempfile::tempdir().expect("state");
    let mut cmd = emulator.harden(state.path());
    cmd.args([
        "plan", RUNBOOK, "--org", "--org-ou", &unit, "--region", REGIONS[0], "--format", "json",
    ]);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan = plan_json(&out);
    let mut planned: Vec<&str> = plan["accounts"]
        .as_array()
        .expect("accounts")
        .iter()
        .filter_map(|a| a["id"].as_str())
        .collect();
    planned.sort_unstable();
    assert_eq!(
        planned, expected,
        "the unit's accounts and its nested unit's"
    );
}
