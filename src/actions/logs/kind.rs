use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aws::RegionClients;
use crate::error::Result;
use crate::inventory::{Filters, Kind, Narrowing, named};

use super::read::read_log_group;

/// A CloudWatch Logs log group a runbook names (a log destination): whether it exists
/// and how long it keeps what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogGroup {
    /// Its name, which is also the id.
    pub name: String,
    /// False when no log group has the name.
    pub exists: bool,
    /// Its ARN without the trailing `:*`, once it exists.
    pub arn: Option<String>,
    /// Days events are kept; `None` keeps them forever.
    pub retention_days: Option<i32>,
    /// The KMS key its events are encrypted with.
    pub kms_key_id: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl LogGroup {
    /// A log group no one has created.
    pub fn missing(name: &str) -> Self {
        Self {
            name: name.to_string(),
            exists: false,
            arn: None,
            retention_days: None,
            kms_key_id: None,
            tags: BTreeMap::new(),
        }
    }
}

impl Kind for LogGroup {
    const NAME: &'static str = "logs:log-group";
    const FILTERS: &'static [&'static str] =
        // Looked up by name, not listed: `name` is required.
        &["name"];
    const NARROWING: Narrowing = Narrowing::Named;

    fn sample() -> Self {
        LogGroup::missing("sample")
    }

    fn id(&self) -> &str {
        &self.name
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.tags)
    }

    /// Looks up each log group named.
    async fn discover(clients: &RegionClients, filters: &Filters) -> Result<Vec<Self>> {
        named(filters, "name", |name| read_log_group(clients, name)).await
    }
}
