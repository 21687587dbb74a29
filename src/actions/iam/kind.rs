//! Roles as resources: a service role harden owns, found by name, and a service-linked
//! role, found by the path AWS gives it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aws::RegionClients;
use crate::error::Result;
use crate::inventory::{Filters, Kind, Narrowing, named};

use super::read::{read_role, read_service_linked_role};

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
