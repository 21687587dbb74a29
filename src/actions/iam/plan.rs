//! `iam:ensure-service-linked-role` and `iam:ensure-role`: exact plans and the inverse
//! of each change.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::actions::s3::normalize_policy;
use crate::actions::{
    Action, ActionInfo, ActionPlan, ArgSpec, Calls, DraftChain, Inverse, Resource, ResourceKind,
    api_call, arg, arguments_of, parse_call, state_of, typed_args,
};
use crate::plan::{ApiCall, ChangeKind};
use crate::template::KNOWN_AFTER_APPLY;

use super::calls::{
    CreateRoleInput, CreateServiceLinkedRoleInput, LinkedRoleCall, PolicyName, PutPolicyInput,
    RoleCall, RoleCalls, RoleName, ServiceLinkedRoleCalls, TrustInput,
};
use super::kind::{Role, ServiceLinkedRole};

/// Creates a service-linked role when its service has none.
pub struct EnsureServiceLinkedRole;

static ENSURE: ActionInfo = ActionInfo {
    name: "iam:ensure-service-linked-role",
    description: "create the service-linked role of the service the resource names (CreateServiceLinkedRole) when no role has the service's path",
    resource_kind: ResourceKind::ServiceLinkedRole,
    outputs: &[],
    waits: false,
};

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
        let mut chain = DraftChain::new("iam", state_of(role));
        chain.push_call(
            ChangeKind::Create,
            format!(
                "create the service-linked role of {} (at {})",
                role.service,
                role.path()
            ),
            state_of(&created),
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
        let was: ServiceLinkedRole = crate::actions::recorded(before, "service-linked role")?;
        let made: ServiceLinkedRole = crate::actions::recorded(after, "service-linked role")?;
        let what = format!("service-linked role of {}", was.service);
        let name = crate::actions::created_id(
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
struct NoArgs {}

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
        let mut chain = DraftChain::new("iam", state_of(&current));
        let name = role.name.clone();
        let text = |doc: &Value| doc.to_string();
        if !current.exists {
            current.exists = true;
            current.arn = Some(KNOWN_AFTER_APPLY.into());
            current.trust_policy = Some(trust.clone());
            chain.push_call(
                ChangeKind::Create,
                format!("create the role {name}"),
                state_of(&current),
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
                state_of(&current),
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
                state_of(&current),
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
        let was: Role = crate::actions::recorded(before, "role")?;
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
