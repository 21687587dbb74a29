//! The way back from a recorded security-group change.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::actions::{Inverse, state_of};
use crate::plan::{ApiCall, ChangeKind};

use super::calls::{permission_input, rule_request_input};
use super::kind::SecurityGroupRules;
use super::rule::{Rule, RuleKey, describe_rules};

/// Undoes a recorded security-group change from the rules read before and after it: a
/// revoke by authorizing the rules it removed again exactly (descriptions included; AWS
/// gives them new ids), an authorization by revoking the rules it added by their ids,
/// a rewrite by rewriting each rule back.
pub(super) fn inverse(
    call: &ApiCall,
    before: &Value,
    after: &Value,
) -> std::result::Result<Inverse, String> {
    let parse = |what: &str, v: &Value| {
        serde_json::from_value::<SecurityGroupRules>(v.clone())
            .map_err(|e| format!("the rules recorded {what} it do not parse: {e}"))
    };
    let (was, now) = (parse("before", before)?, parse("after", after)?);
    let group_id = call.input["GroupId"]
        .as_str()
        .ok_or("the recorded call names no GroupId")?
        .to_string();
    let gone = |from: &[Rule], kept: &[Rule]| -> Vec<Rule> {
        let keys: BTreeSet<RuleKey> = kept.iter().map(Rule::key).collect();
        from.iter()
            .filter(|r| !keys.contains(&r.key()))
            .cloned()
            .collect()
    };
    match call.operation.as_str() {
        operation @ ("RevokeSecurityGroupEgress" | "RevokeSecurityGroupIngress") => {
            let egress = operation == "RevokeSecurityGroupEgress";
            let (was_list, now_list) = if egress {
                (&was.egress, &now.egress)
            } else {
                (&was.ingress, &now.ingress)
            };
            let removed = gone(was_list, now_list);
            if removed.is_empty() {
                return Err("the recorded states show no rule removed".into());
            }
            let mut restored = was.clone();
            for rule in restored
                .egress
                .iter_mut()
                .chain(restored.ingress.iter_mut())
            {
                if removed.iter().any(|r| r.rule_id == rule.rule_id) {
                    rule.rule_id = None;
                }
            }
            let (word, authorize) = if egress {
                ("egress", "AuthorizeSecurityGroupEgress")
            } else {
                ("ingress", "AuthorizeSecurityGroupIngress")
            };
            Ok(Inverse {
                kind: ChangeKind::Create,
                summary: format!("authorize {word} {} again", describe_rules(&removed)),
                operation: authorize.into(),
                input: json!({
                    "GroupId": group_id,
                    "IpPermissions": removed.iter().map(permission_input).collect::<Vec<_>>(),
                }),
                after: state_of(&restored),
                removes_created: false,
            })
        }
        "AuthorizeSecurityGroupEgress" => {
            let added = gone(&now.egress, &was.egress);
            let ids: Vec<&str> = added.iter().filter_map(|r| r.rule_id.as_deref()).collect();
            if added.is_empty() || ids.len() != added.len() {
                return Err("the ids of the rules it authorized were not read back".into());
            }
            Ok(Inverse {
                kind: ChangeKind::Delete,
                summary: format!("revoke egress {}", describe_rules(&added)),
                operation: "RevokeSecurityGroupEgress".into(),
                input: json!({"GroupId": group_id, "SecurityGroupRuleIds": ids}),
                after: state_of(&was),
                removes_created: false,
            })
        }
        "ModifySecurityGroupRules" => {
            let mut updates = Vec::new();
            for update in call.input["SecurityGroupRules"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let id = update["SecurityGroupRuleId"].as_str().unwrap_or_default();
                let old = was
                    .egress
                    .iter()
                    .chain(&was.ingress)
                    .find(|r| r.rule_id.as_deref() == Some(id))
                    .ok_or_else(|| format!("rule {id} is not in the state recorded before it"))?;
                let mut request = rule_request_input(old);
                // An omitted description is kept by the rewrite; none must be asked for.
                if old.description.is_none() {
                    request["Description"] = json!("");
                }
                updates.push(json!({
                    "SecurityGroupRuleId": id,
                    "SecurityGroupRule": request,
                }));
            }
            if updates.is_empty() {
                return Err("the recorded call rewrites no rule".into());
            }
            Ok(Inverse {
                kind: ChangeKind::Update,
                summary: format!("rewrite {} rule(s) back as they were", updates.len()),
                operation: "ModifySecurityGroupRules".into(),
                input: json!({"GroupId": group_id, "SecurityGroupRules": updates}),
                after: state_of(&was),
                removes_created: false,
            })
        }
        other => Err(format!("no inverse for {other}")),
    }
}
