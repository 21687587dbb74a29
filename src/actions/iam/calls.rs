//! The IAM calls of this concern as typed inputs in AWS's field names, and how each is
//! applied.

use async_trait::async_trait;
use aws_sdk_iam::operation::RequestId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::actions::{Applied, Calls, state_of, typed_call};
use crate::aws::{Answer, RegionClients};
use crate::error::{Error, Result};
use crate::plan::Change;

use super::read::{read_role, read_service_linked_role};

/// The calls on service-linked roles, as a plan stores them (IAM's field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
pub(super) enum LinkedRoleCall {
    CreateServiceLinkedRole(CreateServiceLinkedRoleInput),
    /// Rollback of a created one, by the name read back.
    DeleteServiceLinkedRole(RoleName),
}

/// The input of `CreateServiceLinkedRole`, with AWS's field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateServiceLinkedRoleInput {
    #[serde(rename = "AWSServiceName")]
    pub(super) aws_service_name: String,
}

/// The calls on roles, as a plan stores them (IAM's field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
pub(super) enum RoleCall {
    CreateRole(CreateRoleInput),
    UpdateAssumeRolePolicy(TrustInput),
    PutRolePolicy(PutPolicyInput),
    /// Rollback of an inline policy the run added.
    DeleteRolePolicy(PolicyName),
    /// Rollback of a created role (its inline policies first).
    DeleteRole(RoleName),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct RoleName {
    pub(super) role_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct CreateRoleInput {
    pub(super) role_name: String,
    /// The document as JSON text, as IAM takes it.
    pub(super) assume_role_policy_document: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct TrustInput {
    pub(super) role_name: String,
    pub(super) policy_document: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct PutPolicyInput {
    pub(super) role_name: String,
    pub(super) policy_name: String,
    pub(super) policy_document: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct PolicyName {
    pub(super) role_name: String,
    pub(super) policy_name: String,
}

/// Reads and creates (and cannot probe) service-linked roles.
pub struct ServiceLinkedRoleCalls;

#[async_trait]
impl Calls for ServiceLinkedRoleCalls {
    fn rights(&self) -> &'static crate::actions::Rights {
        &crate::actions::Rights {
            reads: &["iam:ListRoles", "iam:GetServiceLinkedRoleDeletionStatus"],
            changes: &["iam:CreateServiceLinkedRole", "iam:DeleteServiceLinkedRole"],
            ..crate::actions::Rights::NONE
        }
    }

    fn check(&self, change: &Change) -> Result<()> {
        typed_call::<LinkedRoleCall>(change).map(drop)
    }

    async fn read(&self, clients: &RegionClients, resource_id: &str) -> Result<Value> {
        Ok(state_of(
            &read_service_linked_role(clients, resource_id).await?,
        ))
    }

    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        _current: &Value,
    ) -> Result<Applied> {
        let input = match typed_call::<LinkedRoleCall>(change)? {
            LinkedRoleCall::CreateServiceLinkedRole(input) => input,
            LinkedRoleCall::DeleteServiceLinkedRole(RoleName { role_name }) => {
                return delete_service_linked_role(clients, change, &role_name).await;
            }
        };
        let out = clients
            .iam
            .create_service_linked_role()
            .aws_service_name(input.aws_service_name)
            .send()
            .await
            .or_failure("CreateServiceLinkedRole")?;
        Ok(Applied::request(out.request_id()))
    }
}

/// How long a service-linked role's deletion may take before harden stops waiting
/// (IAM deletes it in the background; it takes seconds).
const SERVICE_LINKED_ROLE_DELETION: std::time::Duration = std::time::Duration::from_secs(300);

/// Deletes a service-linked role and waits for IAM's background deletion to end: it
/// fails while a resource of the service uses the role, naming where.
async fn delete_service_linked_role(
    clients: &RegionClients,
    change: &Change,
    name: &str,
) -> Result<Applied> {
    use aws_sdk_iam::types::DeletionTaskStatusType;
    let out = clients
        .iam
        .delete_service_linked_role()
        .role_name(name)
        .send()
        .await
        .or_failure("DeleteServiceLinkedRole")?;
    let limit = change
        .wait_timeout_seconds
        .map_or(SERVICE_LINKED_ROLE_DELETION, std::time::Duration::from_secs);
    let until = tokio::time::Instant::now() + limit;
    loop {
        let status = clients
            .iam
            .get_service_linked_role_deletion_status()
            .deletion_task_id(out.deletion_task_id())
            .send()
            .await
            .or_failure("GetServiceLinkedRoleDeletionStatus")?;
        match status.status() {
            DeletionTaskStatusType::Succeeded => return Ok(Applied::request(out.request_id())),
            DeletionTaskStatusType::Failed => {
                let users: Vec<String> = status
                    .reason()
                    .map(|r| {
                        r.role_usage_list()
                            .iter()
                            .flat_map(|u| {
                                let region = u.region().unwrap_or_default().to_string();
                                u.resources().iter().map(move |r| format!("{r} ({region})"))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                return Err(Error::NotEmpty {
                    resource: format!("service-linked role {name}"),
                    what: if users.is_empty() {
                        "in use, IAM did not say by what".to_string()
                    } else {
                        format!("in use by {}", users.join(", "))
                    },
                });
            }
            _ if tokio::time::Instant::now() >= until => {
                return Err(Error::Verification {
                    resource: format!("service-linked role {name}"),
                    detail: format!("IAM had not deleted it after {}s", limit.as_secs()),
                });
            }
            _ => tokio::time::sleep(std::time::Duration::from_secs(2)).await,
        }
    }
}

/// Reads, applies (and cannot probe) role changes.
pub struct RoleCalls;

#[async_trait]
impl Calls for RoleCalls {
    fn rights(&self) -> &'static crate::actions::Rights {
        &crate::actions::Rights {
            reads: &["iam:GetRole", "iam:ListRolePolicies", "iam:GetRolePolicy"],
            changes: &[
                "iam:CreateRole",
                "iam:PutRolePolicy",
                "iam:UpdateAssumeRolePolicy",
                "iam:DeleteRolePolicy",
                "iam:DeleteRole",
            ],
            ..crate::actions::Rights::NONE
        }
    }

    fn check(&self, change: &Change) -> Result<()> {
        typed_call::<RoleCall>(change).map(drop)
    }

    async fn read(&self, clients: &RegionClients, resource_id: &str) -> Result<Value> {
        Ok(state_of(&read_role(clients, resource_id).await?))
    }

    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        current: &Value,
    ) -> Result<Applied> {
        let iam = &clients.iam;
        let operation = change.call.operation.as_str();
        let request_id = match typed_call::<RoleCall>(change)? {
            RoleCall::CreateRole(input) => iam
                .create_role()
                .role_name(input.role_name)
                .assume_role_policy_document(input.assume_role_policy_document)
                .set_description(input.description)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            RoleCall::UpdateAssumeRolePolicy(input) => iam
                .update_assume_role_policy()
                .role_name(input.role_name)
                .policy_document(input.policy_document)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            RoleCall::PutRolePolicy(input) => iam
                .put_role_policy()
                .role_name(input.role_name)
                .policy_name(input.policy_name)
                .policy_document(input.policy_document)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            RoleCall::DeleteRolePolicy(input) => iam
                .delete_role_policy()
                .role_name(input.role_name)
                .policy_name(input.policy_name)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            RoleCall::DeleteRole(RoleName { role_name: name }) => {
                // IAM deletes a role only once its inline policies are gone; those are
                // the ones read just before (the stale check held them to the run's).
                let policies = current
                    .get("policies")
                    .and_then(Value::as_object)
                    .map(|p| p.keys().cloned().collect::<Vec<_>>())
                    .unwrap_or_default();
                for policy in policies {
                    iam.delete_role_policy()
                        .role_name(&name)
                        .policy_name(policy)
                        .send()
                        .await
                        .or_failure("DeleteRolePolicy")?;
                }
                iam.delete_role()
                    .role_name(name)
                    .send()
                    .await
                    .or_failure(operation)?
                    .request_id()
                    .map(str::to_string)
            }
        };
        Ok(Applied::request(request_id.as_deref()))
    }
}
