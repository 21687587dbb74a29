//! The runbook format, version 1. The structs deserialize straight from YAML with
//! `serde-saphyr`; fields a later check must point at are [`Spanned`] so the error can
//! name the file, line and column. `harden schema` prints the JSON Schema derived from
//! these types, and `docs/runbook-format.md` documents them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

/// A remediation runbook.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Runbook {
    /// Format version; `1` is the only one so far.
    #[schemars(with = "u32")]
    pub version: Spanned<u32>,
    /// Unique id, lowercase letters, digits and dashes.
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// One-line title.
    pub title: String,
    /// What the runbook does and why.
    #[serde(default)]
    pub description: String,
    /// Compliance controls the runbook satisfies.
    #[serde(default)]
    pub controls: Vec<Control>,
    /// Ids of runbooks that, when selected in the same run, are planned and applied
    /// before this one. This is how runbooks that touch the same resources compose.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub after: Vec<Spanned<String>>,
    /// Ids of runbooks this one needs: they must be selected in the same run, are
    /// planned and applied before this one (as with `after:`), and when one of them
    /// fails in an account and region, or cannot be planned there, this one is not
    /// applied (or planned) there either. `after:` alone only orders.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub requires: Vec<Spanned<String>>,
    /// CloudTrail events that can make this runbook's resources non-compliant, and
    /// where each names the resource: what `harden watch` and `harden respond` act on,
    /// and what the alerting runbook's EventBridge rule listens for.
    #[serde(default)]
    pub triggers: Vec<TriggerSpec>,
    /// Typed parameters, by name.
    #[serde(default)]
    pub parameters: BTreeMap<String, ParameterSpec>,
    /// Resources the steps act on, by name.
    #[serde(default)]
    pub discover: BTreeMap<String, DiscoverySpec>,
    /// Ordered steps.
    pub steps: Vec<StepSpec>,
}

/// A control of a compliance framework.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// Framework, e.g. `AWS FSBP` or `CIS AWS Foundations 3.0`.
    pub framework: String,
    /// Control id within the framework, e.g. `EC2.2`.
    pub id: String,
    /// Optional note, e.g. why no control covers this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A CloudTrail event that can undo what a runbook does.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// The CloudTrail `eventName`, e.g. `AuthorizeSecurityGroupEgress` (see
    /// `docs/runbook-format.md` for the events harden knows).
    #[schemars(with = "String")]
    pub event: Spanned<String>,
    /// The `discover` entry whose resources the event can affect.
    #[schemars(with = "String")]
    pub discover: Spanned<String>,
    /// Where the event names the resource, as a dotted path from the EventBridge
    /// envelope: `detail.requestParameters.groupId` or
    /// `detail.responseElements.volumeId` (a list on the way is searched element by
    /// element). Without it, the event concerns every resource of the entry in the
    /// event's region (for region-wide settings such as the trails or the recorder).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub resource_id: Option<Spanned<String>>,
}

/// Parameter types.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    /// A string.
    String,
    /// A whole number.
    Int,
    /// `true` or `false`.
    Bool,
    /// A list of values.
    List,
    /// A map of string keys to values.
    Map,
}

impl ParamType {
    /// The name with its article, for messages: "an int", "a list".
    pub fn with_article(self) -> String {
        match self {
            ParamType::Int => "an int".into(),
            other => format!("a {}", other.name()),
        }
    }

    /// The name used in the format and in messages.
    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Bool => "bool",
            ParamType::List => "list",
            ParamType::Map => "map",
        }
    }
}

/// A declared parameter.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParameterSpec {
    /// The type values must have.
    #[serde(rename = "type")]
    #[schemars(with = "ParamType")]
    pub kind: Spanned<ParamType>,
    /// Value used when none is given; a parameter without one is required.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub default: Option<Spanned<serde_json::Value>>,
    /// The only values accepted.
    #[serde(default)]
    pub allowed: Option<Vec<serde_json::Value>>,
    /// A regular expression string values must match (whole value).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub pattern: Option<Spanned<String>>,
    /// What the parameter means.
    #[serde(default)]
    pub description: String,
}

/// Resources to discover: a resource kind, server-side filters and excluded ids.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoverySpec {
    /// Resource kind, e.g. `ec2:security-group` (see `harden list`).
    #[schemars(with = "String")]
    pub resource: Spanned<String>,
    /// Filters sent with the list call, by the API's filter name; each value is a
    /// template rendering to a string or a list of strings.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub filters: BTreeMap<String, Spanned<serde_json::Value>>,
    /// Ids never changed by this runbook; a template rendering to a list. The plan
    /// lists them as excluded.
    #[serde(default)]
    #[schemars(with = "Option<serde_json::Value>")]
    pub exclude_ids: Option<Spanned<serde_json::Value>>,
}

/// What apply does when a change of this step fails.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// Stop this resource's chain and the runbook's later steps in the same account
    /// and region, and the runbooks that require this one there (the default); other
    /// runbooks and regions go on. With `--fail-fast`, stop the whole apply.
    #[default]
    Stop,
    /// Stop this resource's chain only; other resources and later steps go on. The
    /// run still fails.
    Continue,
}

/// Bounds on the waits an action performs after its call.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WaitSpec {
    /// Give up waiting after this many seconds.
    pub timeout_seconds: u64,
}

/// One step of a runbook.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    /// Unique id within the runbook.
    #[schemars(with = "String")]
    pub id: Spanned<String>,
    /// What the step is for.
    #[serde(default)]
    pub description: String,
    /// Action from the registry (see `harden list`).
    #[schemars(with = "String")]
    pub action: Spanned<String>,
    /// Name of a `discover` entry: the step runs once per discovered resource, which
    /// templates see as `item`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub for_each: Option<Spanned<String>>,
    /// A template; the step (or, with `for_each`, the item) is skipped unless it
    /// renders to a true value.
    #[serde(default, rename = "when")]
    #[schemars(with = "Option<String>")]
    pub condition: Option<Spanned<String>>,
    /// Arguments of the action; strings are templates. A string that is exactly one
    /// `{{ path }}` keeps the type of the value it names (a list stays a list).
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub args: BTreeMap<String, Spanned<serde_json::Value>>,
    /// Outputs of the action this step exports to later steps as
    /// `steps.<id>.outputs.<name>`.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub outputs: Vec<Spanned<String>>,
    /// Bounds on the action's waits.
    #[serde(default)]
    pub wait: Option<WaitSpec>,
    /// What a failure of this step does to the rest of the apply.
    #[serde(default)]
    pub on_failure: OnFailure,
}
