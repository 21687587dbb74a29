//! IAM roles the other runbooks rely on: service-linked roles (AWSServiceRoleForConfig),
//! created when missing. IAM is global: runbooks create them in the home region only,
//! and since apply runs one step at a time, later steps in every region find them. IAM
//! has no dry-run.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_iam::operation::RequestId;
use serde_json::{Value, json};

use super::{Action, ActionInfo, ActionPlan, Applied, ArgSpec, Calls, ChangeDraft};
use crate::aws::{RegionClients, failure};
use crate::error::{Error, Result};
use crate::inventory::{Resource, ResourceKind, Role};
use crate::plan::{ApiCall, Change, ChangeKind, Probe};
use crate::runbook::model::ParamType;
use crate::template::KNOWN_AFTER_APPLY;

/// Creates a service-linked role when it is missing.
pub struct EnsureServiceLinkedRole;

static ENSURE: ActionInfo = ActionInfo {
    name: "iam:ensure-service-linked-role",
    description: "create the service-linked role of a service (CreateServiceLinkedRole) when no role has its name",
    resource_kind: ResourceKind::Role,
    args: &[ArgSpec {
        name: "service_name",
        kind: ParamType::String,
        required: true,
        description: "the service principal, e.g. config.amazonaws.com",
    }],
    outputs: &[],
    waits: false,
};

fn state(role: &Role) -> Value {
    serde_json::to_value(role).unwrap_or_default()
}

impl Action for EnsureServiceLinkedRole {
    fn info(&self) -> &'static ActionInfo {
        &ENSURE
    }

    fn plan(&self, target: &Resource, args: &Value) -> std::result::Result<ActionPlan, String> {
        let Resource::Role(role) = target else {
            return Err(format!("expected an IAM role, given {}", target.kind()));
        };
        let service = match args.get("service_name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            other => {
                return Err(format!(
                    "argument service_name: expected a service principal, found {}",
                    other.unwrap_or(&Value::Null)
                ));
            }
        };
        if role.exists {
            return Ok(ActionPlan::default());
        }
        let created = Role {
            exists: true,
            arn: Some(KNOWN_AFTER_APPLY.into()),
            ..role.clone()
        };
        Ok(ActionPlan {
            changes: vec![ChangeDraft {
                kind: ChangeKind::Create,
                summary: format!("create the service-linked role {} of {service}", role.name),
                before: state(role),
                after: state(&created),
                call: ApiCall {
                    service: "iam".into(),
                    operation: "CreateServiceLinkedRole".into(),
                    input: json!({"AWSServiceName": service}),
                },
            }],
            blocked: None,
            projected: Some(Resource::Role(created)),
        })
    }

    fn calls(&self) -> &'static dyn Calls {
        &RoleCalls
    }
}

/// Reads, applies (and cannot probe) role changes.
pub struct RoleCalls;

#[async_trait]
impl Calls for RoleCalls {
    async fn read(&self, clients: &RegionClients, resource_id: &str) -> Result<Value> {
        Ok(state(&read_role(clients, resource_id).await?))
    }

    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        _current: &Value,
    ) -> Result<Applied> {
        let operation = change.call.operation.as_str();
        if operation != "CreateServiceLinkedRole" {
            return Err(super::not_ours(change, "a role action"));
        }
        let service = change
            .call
            .input
            .get("AWSServiceName")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Usage(format!("change {}: no AWSServiceName", change.id)))?;
        let out = clients
            .iam
            .create_service_linked_role()
            .aws_service_name(service)
            .send()
            .await
            .map_err(|e| Error::Aws(failure(operation, &e)))?;
        Ok(Applied::request(out.request_id()))
    }

    async fn probe(&self, _clients: &RegionClients, _change: &Change) -> Probe {
        Probe::NotSupported
    }
}

/// Reads a role by name; a missing one is `exists: false`.
pub async fn read_role(clients: &RegionClients, name: &str) -> Result<Role> {
    match clients.iam.get_role().role_name(name).send().await {
        Ok(out) => Ok(match out.role() {
            Some(role) => Role {
                name: name.to_string(),
                arn: Some(role.arn().to_string()),
                exists: true,
                tags: role
                    .tags()
                    .iter()
                    .map(|t| (t.key().to_string(), t.value().to_string()))
                    .collect(),
            },
            None => missing(name),
        }),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_no_such_entity_exception()) =>
        {
            Ok(missing(name))
        }
        Err(e) => Err(Error::Aws(failure("GetRole", &e))),
    }
}

fn missing(name: &str) -> Role {
    Role {
        name: name.to_string(),
        arn: None,
        exists: false,
        tags: BTreeMap::new(),
    }
}

/// Looks up each role the `name` filter names.
pub async fn discover(
    clients: &RegionClients,
    filters: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<Resource>> {
    let names = filters.get("name").cloned().unwrap_or_default();
    let roles = futures::future::try_join_all(names.iter().map(|n| read_role(clients, n))).await?;
    Ok(roles.into_iter().map(Resource::Role).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_role_is_created_and_an_existing_one_left_alone() {
        let args = json!({"service_name": "config.amazonaws.com"});
        let planned = EnsureServiceLinkedRole
            .plan(&Resource::Role(missing("AWSServiceRoleForConfig")), &args)
            .expect("plans");
        assert_eq!(
            planned.changes[0].call.input,
            json!({"AWSServiceName": "config.amazonaws.com"})
        );
        let Some(projected) = planned.projected else {
            panic!("projects")
        };
        assert_eq!(
            EnsureServiceLinkedRole
                .plan(&projected, &args)
                .expect("plans"),
            ActionPlan::default()
        );
    }
}
