//! IAM roles the other runbooks rely on: service-linked roles (Config's), found by the
//! path AWS gives them and created when missing, and service roles harden owns (the role VPC flow logs assume
//! to write to CloudWatch Logs), created or held to their trust and inline policy. IAM
//! is global: runbooks create them in the home region only, and since apply runs one
//! step at a time, later steps in every region find them. IAM has no dry-run.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_iam::operation::RequestId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Action, ActionInfo, ActionPlan, Applied, ArgSpec, Calls, DraftChain, Inverse, api_call, arg,
    arguments_of, parse_call, typed_args, typed_call,
};
use crate::actions::s3::normalize_policy;
use crate::actions::{Resource, ResourceKind};
use crate::aws::{RegionClients, failure};
use crate::error::{Error, Result};
use crate::inventory::{Filters, Kind, Narrowing, named};
use crate::plan::{ApiCall, Change, ChangeKind};
use crate::template::KNOWN_AFTER_APPLY;

/// Creates a service-linked role when its service has none.
pub struct EnsureServiceLinkedRole;

static ENSURE: ActionInfo = ActionInfo {
    name: "iam:ensure-service-linked-role",
    description: "create the service-linked role of the service the resource names (CreateServiceLinkedRole) when no role has the service's path",
    resource_kind: ResourceKind::ServiceLinkedRole,
    outputs: &[],
    waits: false,
};

fn state(role: &Role) -> Value {
    serde_json::to_value(role).unwrap_or_default()
}

fn linked_state(role: &ServiceLinkedRole) -> Value {
    serde_json::to_value(role).unwrap_or_default()
}

/// The calls on service-linked roles, as a plan stores them (IAM's field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
enum LinkedRoleCall {
    CreateServiceLinkedRole(CreateServiceLinkedRoleInput),
    /// Rollback of a created one, by the name read back.
    DeleteServiceLinkedRole(RoleName),
}

/// The input of `CreateServiceLinkedRole`, with AWS's field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateServiceLinkedRoleInput {
    #[serde(rename = "AWSServiceName")]
    aws_service_name: String,
}

/// The calls on roles, as a plan stores them (IAM's field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
enum RoleCall {
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
struct RoleName {
    role_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct CreateRoleInput {
    role_name: String,
    /// The document as JSON text, as IAM takes it.
    assume_role_policy_document: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct TrustInput {
    role_name: String,
    policy_document: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PutPolicyInput {
    role_name: String,
    policy_name: String,
    policy_document: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct PolicyName {
    role_name: String,
    policy_name: String,
}

impl Action for EnsureServiceLinkedRole {
    fn arguments(&self) -> Vec<ArgSpec> {
        arguments_of::<NoArgs>()
    }

    fn info(&self) -> &'static ActionInfo {
        &ENSURE
    }

    fn plan(&self, target: &Resource, _args: &Value) -> std::result::Result<ActionPlan, String> {
        let Resource::ServiceLinkedRole(role) = target else {
            return Err(format!(
                "expected a service-linked role, given {}",
                target.kind()
            ));
        };
        if role.exists {
            return Ok(ActionPlan::default());
        }
        // AWS picks the name (and so the ARN); the read-back finds the role by path.
        let created = ServiceLinkedRole {
            exists: true,
            name: Some(KNOWN_AFTER_APPLY.into()),
            arn: Some(KNOWN_AFTER_APPLY.into()),
            ..role.clone()
        };
        let call = LinkedRoleCall::CreateServiceLinkedRole(CreateServiceLinkedRoleInput {
            aws_service_name: role.service.clone(),
        });
        let mut chain = DraftChain::new("iam", linked_state(role));
        chain.push_call(
            ChangeKind::Create,
            format!(
                "create the service-linked role of {} (at {})",
                role.service,
                role.path()
            ),
            linked_state(&created),
            &call,
        )?;
        Ok(chain.into_plan(Resource::ServiceLinkedRole(created)))
    }

    fn calls(&self) -> &'static dyn Calls {
        &ServiceLinkedRoleCalls
    }

    /// A service-linked role the run created is deleted by the name read back. IAM
    /// deletes it only once no resource of the service in any region uses it, and
    /// says which do otherwise.
    fn inverse(
        &self,
        call: &ApiCall,
        before: &Value,
        after: &Value,
    ) -> std::result::Result<Inverse, String> {
        let was: ServiceLinkedRole = super::recorded(before, "service-linked role")?;
        let made: ServiceLinkedRole = super::recorded(after, "service-linked role")?;
        let what = format!("service-linked role of {}", was.service);
        let name = super::created_id(
            call,
            "CreateServiceLinkedRole",
            was.exists,
            made.name,
            &what,
        )?;
        let summary = format!(
            "delete the service-linked role {name}, which the run created, once nothing uses it"
        );
        let undo = api_call(
            "iam",
            &LinkedRoleCall::DeleteServiceLinkedRole(RoleName { role_name: name }),
        )?;
        Ok(Inverse::deleting_created(
            before,
            summary,
            &undo.operation,
            undo.input,
        ))
    }
}

/// Reads and creates (and cannot probe) service-linked roles.
pub struct ServiceLinkedRoleCalls;

#[async_trait]
impl Calls for ServiceLinkedRoleCalls {
    fn rights(&self) -> &'static crate::actions::Rights {
        &crate::actions::Rights {
            reads: &["iam:ListRoles", "iam:GetServiceLinkedRoleDeletionStatus"],
            changes: &["iam:CreateServiceLinkedRole", "iam:DeleteServiceLinkedRole"],
            passes_role_to: &[],
            kms_via_ec2: false,
            includes: &[],
        }
    }

    fn check(&self, change: &Change) -> Result<()> {
        typed_call::<LinkedRoleCall>(change).map(drop)
    }

    async fn read(&self, clients: &RegionClients, resource_id: &str) -> Result<Value> {
        Ok(linked_state(
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
            .map_err(|e| Error::Aws(failure("CreateServiceLinkedRole", &e)))?;
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
        .map_err(|e| Error::Aws(failure("DeleteServiceLinkedRole", &e)))?;
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
            .map_err(|e| Error::Aws(failure("GetServiceLinkedRoleDeletionStatus", &e)))?;
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

/// Finds a service's linked role by its path (`ListRoles` with `PathPrefix`), which is
/// how AWS defines it and what both emulators keep; a role with a custom suffix
/// (`AWSServiceRoleForX_suffix`) is taken only when the service has no plain one.
pub async fn read_service_linked_role(
    clients: &RegionClients,
    service: &str,
) -> Result<ServiceLinkedRole> {
    let mut role = ServiceLinkedRole::missing(service);
    let path = role.path();
    let mut found: Vec<(String, String)> = Vec::new();
    let mut pages = clients
        .iam
        .list_roles()
        .path_prefix(&path)
        .max_items(1000)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::Aws(failure("ListRoles", &e)))?;
        // A prefix also matches deeper paths; the service's own path must be exact.
        found.extend(
            page.roles()
                .iter()
                .filter(|r| r.path() == path)
                .map(|r| (r.role_name().to_string(), r.arn().to_string())),
        );
    }
    found.sort_by_key(|(name, _)| (name.contains('_'), name.clone()));
    if let Some((name, arn)) = found.into_iter().next() {
        role.exists = true;
        role.name = Some(name);
        role.arn = Some(arn);
    }
    Ok(role)
}

/// Creates a service role when missing and holds it to its trust policy and one inline
/// policy.
pub struct EnsureRole;

static ENSURE_ROLE: ActionInfo = ActionInfo {
    name: "iam:ensure-role",
    description: "create the role when missing (CreateRole with the trust policy), hold its trust policy (UpdateAssumeRolePolicy) and its inline policy (PutRolePolicy) to what is given",
    resource_kind: ResourceKind::Role,
    outputs: &[],
    waits: false,
};

/// The arguments of `iam:ensure-role`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleArgs {
    /// The trust policy document: who may assume the role.
    pub trust_policy: serde_json::Map<String, Value>,
    /// Name of the inline policy.
    #[serde(deserialize_with = "arg::text")]
    #[schemars(required)]
    pub policy_name: Option<String>,
    /// The inline policy document: what the role may do.
    pub policy: serde_json::Map<String, Value>,
    /// The role's description, for a new role.
    #[serde(default, deserialize_with = "arg::text")]
    pub description: Option<String>,
}

/// `iam:ensure-service-linked-role` takes no arguments: the service is the resource's.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

impl Action for EnsureRole {
    fn arguments(&self) -> Vec<ArgSpec> {
        arguments_of::<RoleArgs>()
    }

    fn info(&self) -> &'static ActionInfo {
        &ENSURE_ROLE
    }

    fn plan(&self, target: &Resource, args: &Value) -> std::result::Result<ActionPlan, String> {
        let Resource::Role(role) = target else {
            return Err(format!("expected an IAM role, given {}", target.kind()));
        };
        let args: RoleArgs = typed_args(args)?;
        let trust = Value::Object(args.trust_policy);
        let policy = Value::Object(args.policy);
        let policy_name = args
            .policy_name
            .ok_or("argument policy_name: expected a name")?;
        let description = args.description;
        let mut current = role.clone();
        let mut chain = DraftChain::new("iam", state(&current));
        let name = role.name.clone();
        let text = |doc: &Value| doc.to_string();
        if !current.exists {
            current.exists = true;
            current.arn = Some(KNOWN_AFTER_APPLY.into());
            current.trust_policy = Some(trust.clone());
            chain.push_call(
                ChangeKind::Create,
                format!("create the role {name}"),
                state(&current),
                &RoleCall::CreateRole(CreateRoleInput {
                    role_name: name.clone(),
                    assume_role_policy_document: text(&trust),
                    description,
                }),
            )?;
        } else if current.trust_policy.as_ref().map(normalize_policy)
            != Some(normalize_policy(&trust))
        {
            current.trust_policy = Some(trust.clone());
            chain.push_call(
                ChangeKind::Update,
                format!("set who may assume {name} (its trust policy)"),
                state(&current),
                &RoleCall::UpdateAssumeRolePolicy(TrustInput {
                    role_name: name.clone(),
                    policy_document: text(&trust),
                }),
            )?;
        }
        if current.policies.get(&policy_name).map(normalize_policy)
            != Some(normalize_policy(&policy))
        {
            current.policies.insert(policy_name.clone(), policy.clone());
            chain.push_call(
                ChangeKind::Update,
                format!("set the inline policy {policy_name} of {name}"),
                state(&current),
                &RoleCall::PutRolePolicy(PutPolicyInput {
                    role_name: name.clone(),
                    policy_name: policy_name.clone(),
                    policy_document: text(&policy),
                }),
            )?;
        }
        Ok(chain.into_plan(Resource::Role(current)))
    }

    fn calls(&self) -> &'static dyn Calls {
        &RoleCalls
    }

    /// A role the run created is deleted with its inline policies (IAM refuses while
    /// anything else is attached to it); on one that existed, its trust policy and
    /// inline policy go back as they were, or the inline policy goes when it was new.
    fn inverse(
        &self,
        call: &ApiCall,
        before: &Value,
        _after: &Value,
    ) -> std::result::Result<Inverse, String> {
        let was: Role = super::recorded(before, "role")?;
        let name = was.name.clone();
        let role_name = || RoleName {
            role_name: name.clone(),
        };
        let (created, summary, undo) = match parse_call::<RoleCall>(call)? {
            RoleCall::CreateRole(_) if !was.exists => (
                true,
                format!("delete the role {name}, which the run created, and its inline policies"),
                RoleCall::DeleteRole(role_name()),
            ),
            RoleCall::CreateRole(_) => return Err(format!("role {name} existed before the run")),
            RoleCall::UpdateAssumeRolePolicy(_) => {
                let trust = was.trust_policy.as_ref().ok_or(format!(
                    "the trust policy of {name} before the run was not read"
                ))?;
                (
                    false,
                    format!("set who may assume {name} back (its trust policy)"),
                    RoleCall::UpdateAssumeRolePolicy(TrustInput {
                        role_name: name.clone(),
                        policy_document: trust.to_string(),
                    }),
                )
            }
            RoleCall::PutRolePolicy(input) => {
                let policy = input.policy_name;
                match was.policies.get(&policy) {
                    Some(document) => (
                        false,
                        format!("put the inline policy {policy} of {name} back"),
                        RoleCall::PutRolePolicy(PutPolicyInput {
                            role_name: name.clone(),
                            policy_name: policy.clone(),
                            policy_document: document.to_string(),
                        }),
                    ),
                    None => (
                        false,
                        format!("delete the inline policy {policy} of {name}, which the run added"),
                        RoleCall::DeleteRolePolicy(PolicyName {
                            role_name: name.clone(),
                            policy_name: policy.clone(),
                        }),
                    ),
                }
            }
            RoleCall::DeleteRolePolicy(_) | RoleCall::DeleteRole(_) => {
                return Err(format!("no inverse for {}", call.operation));
            }
        };
        let undo = api_call("iam", &undo)?;
        Ok(if created {
            Inverse::deleting_created(before, summary, &undo.operation, undo.input)
        } else {
            Inverse::restoring(before, summary, &undo.operation, undo.input)
        })
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
            passes_role_to: &[],
            kms_via_ec2: false,
            includes: &[],
        }
    }

    fn check(&self, change: &Change) -> Result<()> {
        typed_call::<RoleCall>(change).map(drop)
    }

    async fn read(&self, clients: &RegionClients, resource_id: &str) -> Result<Value> {
        Ok(state(&read_role(clients, resource_id).await?))
    }

    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        current: &Value,
    ) -> Result<Applied> {
        let iam = &clients.iam;
        let operation = change.call.operation.as_str();
        let aws = |e| Error::Aws(e);
        let request_id = match typed_call::<RoleCall>(change)? {
            RoleCall::CreateRole(input) => iam
                .create_role()
                .role_name(input.role_name)
                .assume_role_policy_document(input.assume_role_policy_document)
                .set_description(input.description)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
            RoleCall::UpdateAssumeRolePolicy(input) => iam
                .update_assume_role_policy()
                .role_name(input.role_name)
                .policy_document(input.policy_document)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
            RoleCall::PutRolePolicy(input) => iam
                .put_role_policy()
                .role_name(input.role_name)
                .policy_name(input.policy_name)
                .policy_document(input.policy_document)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
            RoleCall::DeleteRolePolicy(input) => iam
                .delete_role_policy()
                .role_name(input.role_name)
                .policy_name(input.policy_name)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
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
                        .map_err(|e| aws(failure("DeleteRolePolicy", &e)))?;
                }
                iam.delete_role()
                    .role_name(name)
                    .send()
                    .await
                    .map_err(|e| aws(failure(operation, &e)))?
                    .request_id()
                    .map(str::to_string)
            }
        };
        Ok(Applied::request(request_id.as_deref()))
    }
}

/// A policy document as IAM returns it: URL-encoded JSON on AWS, plain JSON on some
/// emulators.
fn decode_policy(text: &str) -> Value {
    let decoded = percent_encoding::percent_decode_str(text).decode_utf8_lossy();
    serde_json::from_str(&decoded)
        .or_else(|_| serde_json::from_str(text))
        .unwrap_or_else(|_| Value::String(text.to_string()))
}

/// The role's inline policies, decoded.
async fn inline_policies(clients: &RegionClients, name: &str) -> Result<BTreeMap<String, Value>> {
    let mut names = Vec::new();
    let mut pages = clients
        .iam
        .list_role_policies()
        .role_name(name)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| Error::Aws(failure("ListRolePolicies", &e)))?;
        names.extend(page.policy_names().iter().cloned());
    }
    let documents = futures::future::try_join_all(names.iter().map(|policy| async move {
        clients
            .iam
            .get_role_policy()
            .role_name(name)
            .policy_name(policy)
            .send()
            .await
            .map(|out| decode_policy(out.policy_document()))
            .map_err(|e| Error::Aws(failure("GetRolePolicy", &e)))
    }))
    .await?;
    Ok(names.into_iter().zip(documents).collect())
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
                trust_policy: role.assume_role_policy_document().map(decode_policy),
                policies: inline_policies(clients, name).await?,
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
        trust_policy: None,
        policies: BTreeMap::new(),
    }
}

/// An IAM role looked up by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Role name, which is also the id.
    pub name: String,
    /// ARN, once it exists.
    pub arn: Option<String>,
    /// False when no role has the name.
    pub exists: bool,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Who may assume it (its trust policy, decoded), once it exists.
    #[serde(default)]
    pub trust_policy: Option<serde_json::Value>,
    /// Its inline policies by name (documents decoded).
    #[serde(default)]
    pub policies: BTreeMap<String, serde_json::Value>,
}

/// The service-linked role of one service. AWS defines such a role by its path,
/// `/aws-service-role/SERVICE/`, not by its name (moto, for one, names Config's
/// `AWSServiceRoleForconfig`), so it is found and read back by path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceLinkedRole {
    /// The service principal, e.g. `config.amazonaws.com`; also the id.
    pub service: String,
    /// False when no role has the service's path.
    pub exists: bool,
    /// The role's name, once it exists.
    pub name: Option<String>,
    /// The role's ARN, once it exists.
    pub arn: Option<String>,
}

impl ServiceLinkedRole {
    /// The service's role when it has none.
    pub fn missing(service: &str) -> Self {
        Self {
            service: service.to_string(),
            exists: false,
            name: None,
            arn: None,
        }
    }

    /// The path AWS gives the service's linked roles.
    pub fn path(&self) -> String {
        format!("/aws-service-role/{}/", self.service)
    }
}

impl Kind for Role {
    const NAME: &'static str = "iam:role";
    const FILTERS: &'static [&'static str] =
        // Looked up by name, not listed: `name` is required.
        &["name"];
    const NARROWING: Narrowing = Narrowing::Named;

    fn sample() -> Self {
        Role {
            name: "sample".into(),
            arn: None,
            exists: false,
            tags: BTreeMap::new(),
            trust_policy: None,
            policies: BTreeMap::new(),
        }
    }

    fn id(&self) -> &str {
        &self.name
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.tags)
    }

    /// Looks up each role named.
    async fn discover(clients: &RegionClients, filters: &Filters) -> Result<Vec<Self>> {
        named(filters, "name", |name| read_role(clients, name)).await
    }
}

impl Kind for ServiceLinkedRole {
    const NAME: &'static str = "iam:service-linked-role";
    const FILTERS: &'static [&'static str] =
        // Looked up by the service they belong to: `service` is required.
        &["service"];
    const NARROWING: Narrowing = Narrowing::Named;

    fn sample() -> Self {
        ServiceLinkedRole::missing("config.amazonaws.com")
    }

    fn id(&self) -> &str {
        &self.service
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        // AWS owns a service-linked role; ListRoles does not return tags.
        None
    }

    /// Looks up the service-linked role of each service named.
    async fn discover(clients: &RegionClients, filters: &Filters) -> Result<Vec<Self>> {
        named(filters, "service", |name| {
            read_service_linked_role(clients, name)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn role_args() -> Value {
        json!({
            "trust_policy": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Principal": {"Service": "vpc-flow-logs.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
            "policy_name": "deliver",
            "policy": {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                "Action": ["logs:PutLogEvents"], "Resource": "arn:aws:logs:*:1:log-group:g:*"}]},
        })
    }

    #[test]
    fn a_service_role_is_created_with_its_trust_and_policy_and_held_to_them() {
        let args = role_args();
        let planned = EnsureRole
            .plan(&Resource::Role(missing("delivery")), &args)
            .expect("plans");
        let operations: Vec<&str> = planned
            .changes
            .iter()
            .map(|c| c.call.operation.as_str())
            .collect();
        assert_eq!(operations, ["CreateRole", "PutRolePolicy"]);
        assert_eq!(
            decode_policy(
                planned.changes[0].call.input["AssumeRolePolicyDocument"]
                    .as_str()
                    .expect("a string")
            ),
            args["trust_policy"],
            "IAM takes the document as a JSON string"
        );
        let Some(Resource::Role(mut projected)) = planned.projected else {
            panic!("projects")
        };
        assert_eq!(
            EnsureRole
                .plan(&Resource::Role(projected.clone()), &args)
                .expect("plans"),
            ActionPlan::default()
        );
        // Someone widened who may assume it: put back, the inline policy left alone.
        projected.trust_policy = Some(json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}));
        let fixed = EnsureRole
            .plan(&Resource::Role(projected), &args)
            .expect("plans");
        assert_eq!(fixed.changes.len(), 1);
        assert_eq!(fixed.changes[0].call.operation, "UpdateAssumeRolePolicy");
    }

    #[test]
    fn policy_documents_are_read_url_encoded_or_plain() {
        assert_eq!(
            decode_policy("%7B%22Version%22%3A%222012-10-17%22%7D"),
            json!({"Version": "2012-10-17"})
        );
        assert_eq!(
            decode_policy(r#"{"Version":"2012-10-17"}"#),
            json!({"Version": "2012-10-17"})
        );
    }

    #[test]
    fn a_missing_service_linked_role_is_created_and_an_existing_one_left_alone() {
        let planned = EnsureServiceLinkedRole
            .plan(
                &Resource::ServiceLinkedRole(ServiceLinkedRole::missing("config.amazonaws.com")),
                &json!({}),
            )
            .expect("plans");
        assert_eq!(planned.changes.len(), 1);
        assert_eq!(
            planned.changes[0].call.input,
            json!({"AWSServiceName": "config.amazonaws.com"})
        );
        // Whatever name AWS (or an emulator) gives it, the read-back matches.
        assert_eq!(
            planned.changes[0].after,
            json!({"service": "config.amazonaws.com", "exists": true,
                   "name": KNOWN_AFTER_APPLY, "arn": KNOWN_AFTER_APPLY})
        );
        let Some(projected) = planned.projected else {
            panic!("projects")
        };
        assert_eq!(
            EnsureServiceLinkedRole
                .plan(&projected, &json!({}))
                .expect("plans"),
            ActionPlan::default()
        );
    }
}
