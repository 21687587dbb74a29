//! What `deploy/` ships for schedulers holds up: the Kubernetes manifests validate
//! against the Kubernetes API schema (kubernetes-validate, offline, strict), and a
//! broken one is caught; the CronJob forbids overlapping runs; the Indexed Job shards by
//! its completion index with a state directory per shard; the systemd units pass
//! `systemd-analyze verify`; the accounts file and policy the manifests carry pass
//! `harden validate`; the Dockerfile copies what exists.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::run;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn validator() -> PathBuf {
    let path = std::env::var_os("HARDEN_KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv-tools/bin/kubernetes-validate"));
    assert!(
        path.exists(),
        "kubernetes-validate is not installed at {}: run `make tools`",
        path.display()
    );
    path
}

fn validate(files: &[PathBuf]) -> (i32, String) {
    let out = Command::new(validator())
        .arg("--strict")
        .args(files)
        .output()
        .expect("kubernetes-validate runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The documents of a manifest file, as JSON.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("manifest");
    text.split("\n---\n")
        .map(|doc| serde_saphyr::from_str::<Value>(doc).expect("YAML"))
        .collect()
}

#[test]
fn the_kubernetes_manifests_validate_and_a_broken_one_does_not() {
    let dir = root().join("deploy/kubernetes");
    let files: Vec<PathBuf> = ["config.yaml", "cronjob.yaml", "indexed-job.yaml"]
        .iter()
        .map(|f| dir.join(f))
        .collect();
    let (code, log) = validate(&files);
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        log.matches("passed").count(),
        6,
        "every resource checked: {log}"
    );

    let broken = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(&files[1]).expect("cronjob");
    let bad = broken.path().join("cronjob.yaml");
    std::fs::write(
        &bad,
        text.replace("concurrencyPolicy: Forbid", "concurrencyPolicy: 3"),
    )
    .expect("write");
    let (code, log) = validate(&[bad]);
    assert_ne!(code, 0, "the validator catches a wrong type: {log}");
}

#[test]
fn the_cronjob_never_overlaps_and_the_indexed_job_shards_by_its_index() {
    let dir = root().join("deploy/kubernetes");
    let cron = &documents(&dir.join("cronjob.yaml"))[0];
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");
    let job = &documents(&dir.join("indexed-job.yaml"))[0];
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    let completions = job["spec"]["completions"].as_u64().expect("completions");
    let args: Vec<&str> = job["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let shard = args
        .iter()
        .position(|a| *a == "--shard")
        .map(|i| args[i + 1])
        .expect("--shard");
    assert_eq!(shard, format!("$(JOB_COMPLETION_INDEX)/{completions}"));
    let state = args
        .iter()
        .position(|a| *a == "--state-dir")
        .map(|i| args[i + 1])
        .expect("--state-dir");
    assert!(
        state.contains("$(JOB_COMPLETION_INDEX)"),
        "a state directory per shard: {state}"
    );

    // The accounts file and policy the manifests carry are valid harden input.
    let config = documents(&dir.join("config.yaml"));
    let data = &config
        .iter()
        .find(|d| d["kind"] == "ConfigMap")
        .expect("ConfigMap")["data"];
    let scratch = tempfile::tempdir().expect("tempdir");
    let accounts = scratch.path().join("accounts.yaml");
    let policy = scratch.path().join("policy.yaml");
    std::fs::write(&accounts, data["accounts.yaml"].as_str().expect("accounts")).expect("write");
    std::fs::write(&policy, data["policy.yaml"].as_str().expect("policy")).expect("write");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harden"));
    cmd.current_dir(root())
        .args(["validate", "runbooks/", "--accounts"])
        .arg(&accounts)
        .arg("--policy")
        .arg(&policy);
    let out = run(cmd);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("2 account(s)"), "{}", out.stdout);
    assert!(
        out.stdout.contains("3 rule(s), default report"),
        "{}",
        out.stdout
    );
}

#[test]
fn the_systemd_units_verify() {
    // systemd-analyze checks that ExecStart exists: point it at the binary just built.
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut units = Vec::new();
    for unit in ["harden-enforce.service", "harden-enforce.timer"] {
        let text = std::fs::read_to_string(root().join("deploy/systemd").join(unit)).expect("unit");
        let path = scratch.path().join(unit);
        std::fs::write(
            &path,
            text.replace("/usr/local/bin/harden", env!("CARGO_BIN_EXE_harden")),
        )
        .expect("write");
        units.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .expect("systemd-analyze runs");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let ours: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("harden-enforce"))
        .collect();
    assert!(ours.is_empty(), "no complaint about the units: {ours:?}");
}

#[test]
fn the_dockerfile_copies_what_the_repository_has() {
    let text = std::fs::read_to_string(root().join("deploy/Dockerfile")).expect("Dockerfile");
    let copied: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().skip(1).collect();
            words[..words.len() - 1].to_vec()
        })
        .collect();
    assert!(copied.contains(&"runbooks"), "{copied:?}");
    for path in copied {
        assert!(root().join(path).exists(), "{path} is in the repository");
    }
}
