//! Reading a role, its trust and its inline policies.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::aws::{Answer, RegionClients, failure};
use crate::error::{Error, Result};

use super::kind::{Role, ServiceLinkedRole};

/// Finds a service's linked role by its path (`ListRoles` with `PathPrefix`), which is
/// how AWS defines it and what both emulators keep; a role with a custom suffix
/// (`AWSServiceRoleForX_suffix`) is taken only when the service has no plain one.
pub(super) async fn read_service_linked_role(
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
        let page = page.or_failure("ListRoles")?;
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

/// A policy document as IAM returns it: URL-encoded JSON on AWS, plain JSON on some
/// emulators.
pub(super) fn decode_policy(text: &str) -> Value {
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
        let page = page.or_failure("ListRolePolicies")?;
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
            .or_failure("GetRolePolicy")
    }))
    .await?;
    Ok(names.into_iter().zip(documents).collect())
}

/// Reads a role by name; a missing one is `exists: false`.
pub(super) async fn read_role(clients: &RegionClients, name: &str) -> Result<Role> {
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

pub(super) fn missing(name: &str) -> Role {
    Role {
        name: name.to_string(),
        arn: None,
        exists: false,
        tags: BTreeMap::new(),
        trust_policy: None,
        policies: BTreeMap::new(),
    }
}
