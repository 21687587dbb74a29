//! Seals: what the audit log records of a plan saved for apply (`plan --out`, and the
//! changes `enforce` and `respond` hold for approval), so that `apply --plan` tells the
//! plan a person reviewed from one edited since, before any AWS call. A digest kept
//! inside the plan file would prove nothing (whoever edits the file can recompute it);
//! the seal lives in the hash-chained log of the state directory that made the plan.
//!
//! Besides the whole plan's digest, a seal keeps one short digest per change and the
//! accounts and runbooks, so a refusal names what was edited: the change whose call,
//! kind, resource, before or after differs, a change added or removed, an account, a
//! runbook file, or a field outside the changes.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Change, Plan};
use crate::error::{Error, Result};

/// Hex digits kept of each change's digest: 64 bits tell an edit from chance while
/// keeping the record of a 3,000-change plan near 60 KB.
const CHANGE_DIGEST_HEX: usize = 16;

/// The audit record of a plan saved for apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    /// [`Plan::digest`] of the plan as saved.
    pub plan_digest: String,
    /// Where it was saved.
    pub path: String,
    /// The plan's `created_at`: how an edited plan finds the seal it no longer matches.
    pub created_at: jiff::Timestamp,
    /// Digest of everything outside `changes`.
    pub header_digest: String,
    /// The accounts it covers.
    pub accounts: Vec<String>,
    /// Runbook ids with their file digests.
    pub runbooks: Vec<(String, String)>,
    /// A short digest of each change, in plan order.
    pub changes: Vec<String>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn change_digest(change: &Change) -> Result<String> {
    let text = serde_json::to_string(change)
        .map_err(|e| Error::Internal(format!("change does not serialize: {e}")))?;
    let mut digest = sha256_hex(text.as_bytes());
    digest.truncate(CHANGE_DIGEST_HEX);
    Ok(digest)
}

fn header_digest(plan: &Plan) -> Result<String> {
    // Field by field, not `..plan.clone()`: that would copy every change only to drop
    // it, and a field added to `Plan` must be decided on here.
    let header = Plan {
        format_version: plan.format_version,
        harden_version: plan.harden_version.clone(),
        created_at: plan.created_at,
        principal: plan.principal.clone(),
        accounts: plan.accounts.clone(),
        unreachable: plan.unreachable.clone(),
        runbooks: plan.runbooks.clone(),
        changes: Vec::new(),
        blocked: plan.blocked.clone(),
        not_planned: plan.not_planned.clone(),
        unprobed_services: plan.unprobed_services.clone(),
    };
    Ok(sha256_hex(header.to_text()?.as_bytes()))
}

impl Seal {
    /// The seal of `plan` saved at `path`.
    pub fn of(plan: &Plan, path: &Path) -> Result<Self> {
        Ok(Self {
            plan_digest: plan.digest()?,
            path: path.display().to_string(),
            created_at: plan.created_at,
            header_digest: header_digest(plan)?,
            accounts: plan.accounts.iter().map(|a| a.target.id.clone()).collect(),
            runbooks: plan
                .runbooks
                .iter()
                .map(|r| (r.id.clone(), r.digest.clone()))
                .collect(),
            changes: plan
                .changes
                .iter()
                .map(change_digest)
                .collect::<Result<_>>()?,
        })
    }
}

/// Checks that `plan`, loaded from `path`, is one of `seals` unchanged. Its content is
/// compared, not its bytes, so a plan re-indented by a JSON tool still matches.
/// Otherwise the error names what differs from the seal of the same creation time, or
/// says that no plan of that time was saved here.
pub fn check(plan: &Plan, path: &Path, seals: &[Seal]) -> Result<()> {
    let digest = plan.digest()?;
    if seals.iter().any(|s| s.plan_digest == digest) {
        return Ok(());
    }
    let candidates: Vec<&Seal> = seals
        .iter()
        .filter(|s| s.created_at == plan.created_at)
        .collect();
    let digests: Vec<String> = plan
        .changes
        .iter()
        .map(change_digest)
        .collect::<Result<_>>()?;
    // Of several plans saved from one discovery (enforce's held changes and a plan
    // --out of the same run), the one sharing the most changes is the one edited.
    let closest = candidates.into_iter().max_by_key(|seal| {
        let saved: BTreeSet<&str> = seal.changes.iter().map(String::as_str).collect();
        digests
            .iter()
            .filter(|d| saved.contains(d.as_str()))
            .count()
    });
    let detail = match closest {
        None => format!(
            "no plan saved in this state directory has this content or was made at {} (content digest {digest}): harden applies a plan file only as it was saved by `harden plan --out` (or held for approval by enforce or respond) with this state directory",
            plan.created_at
        ),
        Some(seal) => differences(plan, &digests, seal)?.join("; "),
    };
    Err(Error::EditedPlan {
        path: path.to_path_buf(),
        detail,
    })
}

/// What differs between `plan` (whose change digests are `digests`) and `seal`.
fn differences(plan: &Plan, digests: &[String], seal: &Seal) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let prefix = format!("it differs from the plan saved as {}", seal.path);
    for account in &plan.accounts {
        if !seal.accounts.contains(&account.target.id) {
            found.push(format!(
                "account {} is not one of the saved plan's ({})",
                account.target.id,
                seal.accounts.join(", ")
            ));
        }
    }
    for runbook in &plan.runbooks {
        match seal.runbooks.iter().find(|(id, _)| *id == runbook.id) {
            None => found.push(format!("runbook {} was not in the saved plan", runbook.id)),
            Some((_, saved)) if *saved != runbook.digest => found.push(format!(
                "runbook {}'s digest is {}, the saved plan's {saved}",
                runbook.id, runbook.digest
            )),
            Some(_) => {}
        }
    }
    if found.is_empty() && header_digest(plan)? != seal.header_digest {
        found.push(
            "a field outside its changes (principal, accounts, runbooks, blocked or not_planned) was edited".into(),
        );
    }
    let saved: BTreeSet<&str> = seal.changes.iter().map(String::as_str).collect();
    for (change, digest) in plan.changes.iter().zip(digests) {
        if !saved.contains(digest.as_str()) {
            found.push(format!(
                "change {} is not as saved: its call, kind, resource, before or after was edited, or it was added",
                change.id
            ));
        }
    }
    let present: BTreeSet<&str> = digests.iter().map(String::as_str).collect();
    let missing: Vec<usize> = seal
        .changes
        .iter()
        .enumerate()
        .filter(|(_, d)| !present.contains(d.as_str()))
        .map(|(n, _)| n + 1)
        .collect();
    if !missing.is_empty() && plan.changes.len() < seal.changes.len() {
        found.push(format!(
            "it has {} change(s) where {} were saved: saved change(s) number {} are missing",
            plan.changes.len(),
            seal.changes.len(),
            missing
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if found.is_empty() {
        // Every part matches but the whole does not: the changes were reordered.
        found.push("its changes are in another order than saved".into());
    }
    Ok(found
        .into_iter()
        .enumerate()
        .map(|(n, f)| if n == 0 { format!("{prefix}: {f}") } else { f })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{ApiCall, ChangeKind, PlannedAccount, PlannedRunbook, ResourceRef};
    use crate::runbook::model::OnFailure;

    fn change(n: usize) -> Change {
        Change {
            id: format!("123456789012/restrict-sg-egress/us-east-1/revoke/sg-{n}#1"),
            runbook: "restrict-sg-egress".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            step: "revoke".into(),
            action: "ec2.revoke_security_group_egress".into(),
            resource: ResourceRef {
                kind: crate::inventory::ResourceKind::SecurityGroup,
                id: format!("sg-{n}"),
                tags: Default::default(),
            },
            kind: ChangeKind::Update,
            summary: "revoke".into(),
            before: serde_json::json!({"rules": [n]}),
            after: serde_json::json!({"rules": []}),
            call: ApiCall {
                service: "ec2".into(),
                operation: "RevokeSecurityGroupEgress".into(),
                input: serde_json::json!({"GroupId": format!("sg-{n}")}),
            },
            on_failure: OnFailure::default(),
            wait_timeout_seconds: None,
            probe: None,
        }
    }

    #[test]
    fn a_saved_plan_is_its_text_and_its_digest_that_texts_sha256() {
        use sha2::{Digest, Sha256};
        let dir = tempfile::tempdir().expect("tempdir");
        let plan = plan();
        let path = dir.path().join("plan.json");
        plan.save(&path).expect("saves");
        let text = std::fs::read_to_string(&path).expect("reads");
        assert_eq!(text, plan.to_text().expect("text"));
        assert_eq!(
            plan.digest().expect("digest"),
            hex::encode(Sha256::digest(text.as_bytes()))
        );
        assert_eq!(Plan::load(&path).expect("loads"), plan);
    }

    fn plan() -> Plan {
        let target: crate::accounts::Target = serde_json::from_value(serde_json::json!({
            "id": "123456789012", "regions": ["us-east-1"]
        }))
        .expect("target");
        Plan {
            format_version: super::super::PLAN_FORMAT_VERSION,
            harden_version: "test".into(),
            created_at: "2026-12-02T10:00:00Z".parse().expect("time"),
            principal: "arn:aws:iam::123456789012:user/alice".into(),
            accounts: vec![PlannedAccount {
                target,
                principal: "arn:aws:iam::123456789012:user/alice".into(),
            }],
            unreachable: Vec::new(),
            runbooks: vec![PlannedRunbook {
                id: "restrict-sg-egress".into(),
                title: "Restrict egress".into(),
                path: "runbooks/restrict-sg-egress.yaml".into(),
                digest: "aaaa".into(),
                controls: Vec::new(),
                steps: vec!["revoke".into()],
                requires: Vec::new(),
                parameters: Default::default(),
                given_parameters: Vec::new(),
                compliant: Default::default(),
            }],
            changes: (1..=3).map(change).collect(),
            blocked: Vec::new(),
            not_planned: Vec::new(),
            unprobed_services: Vec::new(),
        }
    }

    fn refusal(edited: &Plan, seals: &[Seal]) -> String {
        match check(edited, Path::new("plan.json"), seals) {
            Err(Error::EditedPlan { detail, .. }) => detail,
            other => panic!("expected an edited-plan refusal, got {other:?}"),
        }
    }

    fn sealed() -> (Plan, Vec<Seal>) {
        let plan = plan();
        let seal = Seal::of(&plan, Path::new("saved.json")).expect("seal");
        (plan, vec![seal])
    }

    #[test]
    fn the_plan_as_saved_passes_and_so_does_its_reformatted_text() {
        let (plan, seals) = sealed();
        check(&plan, Path::new("plan.json"), &seals).expect("as saved");
        let compact = serde_json::to_string(&plan).expect("json");
        let reparsed: Plan = serde_json::from_str(&compact).expect("parse");
        check(&reparsed, Path::new("plan.json"), &seals).expect("reformatted");
    }

    #[test]
    fn an_edited_call_input_names_the_change() {
        let (mut plan, seals) = sealed();
        plan.changes[1].call.input["GroupId"] = "sg-excluded".into();
        let detail = refusal(&plan, &seals);
        assert!(detail.starts_with("it differs from the plan saved as saved.json: change 123456789012/restrict-sg-egress/us-east-1/revoke/sg-2#1 is not as saved"), "{detail}");
        assert!(
            !detail.contains("sg-1#1") && !detail.contains("sg-3#1"),
            "{detail}"
        );
    }

    #[test]
    fn a_kind_changed_to_no_op_names_the_change() {
        let (mut plan, seals) = sealed();
        plan.changes[0].kind = ChangeKind::NoOp;
        assert!(refusal(&plan, &seals).contains("revoke/sg-1#1 is not as saved"));
    }

    #[test]
    fn a_removed_change_is_named_by_its_number() {
        let (mut plan, seals) = sealed();
        plan.changes.remove(1);
        let detail = refusal(&plan, &seals);
        assert!(
            detail.contains(
                "it has 2 change(s) where 3 were saved: saved change(s) number 2 are missing"
            ),
            "{detail}"
        );
    }

    #[test]
    fn an_added_change_is_named() {
        let (mut plan, seals) = sealed();
        plan.changes.push(change(9));
        assert!(refusal(&plan, &seals).contains("revoke/sg-9#1 is not as saved"));
    }

    #[test]
    fn another_account_and_another_runbook_digest_are_named() {
        let (mut plan, seals) = sealed();
        plan.accounts[0].target.id = "210987654321".into();
        plan.runbooks[0].digest = "bbbb".into();
        let detail = refusal(&plan, &seals);
        assert!(
            detail.contains("account 210987654321 is not one of the saved plan's (123456789012)"),
            "{detail}"
        );
        assert!(
            detail.contains("runbook restrict-sg-egress's digest is bbbb, the saved plan's aaaa"),
            "{detail}"
        );
    }

    #[test]
    fn reordered_changes_and_an_edited_principal_are_named() {
        let (mut plan, seals) = sealed();
        plan.changes.swap(0, 2);
        assert!(refusal(&plan, &seals).contains("another order"));
        let (mut plan, seals) = sealed();
        plan.principal = "arn:aws:iam::123456789012:user/mallory".into();
        assert!(refusal(&plan, &seals).contains("a field outside its changes"));
    }

    #[test]
    fn a_plan_never_saved_here_says_so() {
        let (mut plan, seals) = sealed();
        plan.created_at = "2026-12-01T00:00:00Z".parse().expect("time");
        let detail = refusal(&plan, &seals);
        assert!(
            detail.starts_with("no plan saved in this state directory has this content or was made at 2026-12-01T00:00:00Z"),
            "{detail}"
        );
        assert!(refusal(&plan, &[]).starts_with("no plan saved"));
    }
}
