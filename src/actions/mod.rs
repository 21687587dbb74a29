//! The registry of typed actions runbook steps name, one module per AWS concern.
//!
//! An action has two halves. Planning is pure: given a discovered (or projected)
//! resource and the step's rendered arguments it returns the changes, each with the
//! exact call, the before and the intended after, and the state the resource will be
//! in afterwards. Applying talks to AWS: read the resource's current state (for the
//! stale-plan check and the read-back), make one change's call, and probe it with
//! `DryRun`. The engine never sees an SDK type.

pub mod cloudtrail;
pub mod config;
pub mod ebs;
pub mod ebs_instances;
pub mod ebs_volumes;
pub mod events;
pub mod flow_logs;
pub mod iam;
pub mod logs;
pub mod registry;
pub mod s3;
pub mod s3_account;
pub mod security_group;
pub mod sns;
pub mod sqs;

pub use registry::{Resource, ResourceKind, find, registry};

use async_trait::async_trait;
use serde_json::Value;

use crate::aws::RegionClients;
use crate::error::Result;
use crate::plan::{ApiCall, BlockReason, Change, ChangeKind, Probe};
use crate::runbook::model::ParamType;

/// An argument an action accepts, as its typed arguments' schema declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgSpec {
    /// Name in `args:`.
    pub name: String,
    /// Type the rendered value must have.
    pub kind: ParamType,
    /// Whether the step must give it.
    pub required: bool,
    /// What it means (the field's doc comment).
    pub description: String,
}

/// The arguments of an action whose typed arguments are `T`
/// (`#[derive(Deserialize, JsonSchema)]`): one per field, in order, required when the
/// field has neither a default nor `Option`, typed by its JSON type and described by
/// its doc comment. What validation, `harden list` and the docs know of arguments
/// comes from here, so it cannot drift from what `plan` reads.
pub fn arguments_of<T: schemars::JsonSchema>() -> Vec<ArgSpec> {
    let schema = schemars::schema_for!(T);
    let root = schema.as_value();
    let required: Vec<&str> = root["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let definitions = &root["$defs"];
    let mut specs = Vec::new();
    for (name, property) in root["properties"].as_object().into_iter().flatten() {
        specs.push(ArgSpec {
            name: name.clone(),
            kind: json_type(property, definitions),
            required: required.contains(&name.as_str()),
            description: property["description"]
                .as_str()
                .unwrap_or_default()
                .replace('\n', " "),
        });
    }
    specs
}

/// The runbook type of a property of a JSON schema (its non-null type; a reference
/// is an object, a list or a string by what it refers to).
fn json_type(property: &Value, definitions: &Value) -> ParamType {
    let named = |name: &str| match name {
        "boolean" => Some(ParamType::Bool),
        "integer" => Some(ParamType::Int),
        "array" => Some(ParamType::List),
        "object" => Some(ParamType::Map),
        "string" => Some(ParamType::String),
        _ => None,
    };
    match &property["type"] {
        Value::String(t) => named(t),
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).find_map(named),
        _ => None,
    }
    .or_else(|| {
        let reference = property["$ref"]
            .as_str()
            .or_else(|| property["anyOf"][0]["$ref"].as_str())?;
        let name = reference.rsplit('/').next()?;
        Some(json_type(&definitions[name], definitions))
    })
    .unwrap_or(ParamType::Map)
}

/// Deserializers for arguments rendered from templates: a template that is not exactly
/// one `{{ path }}` renders a string, so `"true"` is a bool and `""` is not given.
pub mod arg {
    use serde::{Deserialize, Deserializer, de::Error};
    use serde_json::Value;

    /// `true`, `false`, `"true"` or `"false"`; null or absent is not given.
    pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(b)),
            Value::String(s) if s == "true" || s == "false" => Ok(Some(s == "true")),
            other => Err(D::Error::custom(format!(
                "expected true or false, found {other}"
            ))),
        }
    }

    /// A string; null, absent and empty are all not given.
    pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        match Value::deserialize(d)? {
            Value::Null => Ok(None),
            Value::String(s) if s.is_empty() => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Err(D::Error::custom(format!(
                "expected a string, found {other}"
            ))),
        }
    }
}

/// One change as an action plans it; the planner adds ids and step context.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeDraft {
    /// Create, update, delete, replace.
    pub kind: ChangeKind,
    /// One line for people.
    pub summary: String,
    /// State before.
    pub before: Value,
    /// Intended state after.
    pub after: Value,
    /// The call.
    pub call: ApiCall,
}

/// Changes to one resource planned in order: each change starts from the state the one
/// before it leaves, as apply will read it back.
#[derive(Debug)]
pub struct DraftChain {
    service: &'static str,
    state: Value,
    changes: Vec<ChangeDraft>,
}

impl DraftChain {
    /// A chain starting from the resource's state `before`.
    pub fn new(service: &'static str, before: Value) -> Self {
        Self {
            service,
            state: before,
            changes: Vec::new(),
        }
    }

    /// The state the changes so far leave.
    pub fn state(&self) -> &Value {
        &self.state
    }

    /// Adds a change from the current state to `after`, made by `operation(input)`.
    pub fn push(
        &mut self,
        kind: ChangeKind,
        summary: String,
        after: Value,
        operation: &str,
        input: Value,
    ) {
        self.changes.push(ChangeDraft {
            kind,
            summary,
            before: std::mem::replace(&mut self.state, after.clone()),
            after,
            call: ApiCall {
                service: self.service.into(),
                operation: operation.into(),
                input,
            },
        });
    }

    /// Adds a change from the current state to `after`, made by the typed `call`.
    pub fn push_call<C: serde::Serialize>(
        &mut self,
        kind: ChangeKind,
        summary: String,
        after: Value,
        call: &C,
    ) -> std::result::Result<(), String> {
        let call = api_call(self.service, call)?;
        self.push(kind, summary, after, &call.operation, call.input);
        Ok(())
    }

    /// True while no change was added.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The changes, in order.
    pub fn into_changes(self) -> Vec<ChangeDraft> {
        self.changes
    }

    /// The action's plan: these changes, leaving the resource as `projected`; nothing
    /// to do when no change was added.
    pub fn into_plan(self, projected: Resource) -> ActionPlan {
        if self.changes.is_empty() {
            return ActionPlan::default();
        }
        ActionPlan {
            changes: self.changes,
            blocked: None,
            projected: Some(projected),
        }
    }
}

/// What an action would do to one resource.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ActionPlan {
    /// Changes in order; empty when the resource is already compliant.
    pub changes: Vec<ChangeDraft>,
    /// Set when the action will not change the resource, with the reason.
    pub blocked: Option<(BlockReason, String)>,
    /// The resource as it will be after the changes, for later steps and runbooks.
    pub projected: Option<Resource>,
}

impl ActionPlan {
    /// The action leaves the resource alone, for `reason`, said in `detail`.
    pub fn blocked(reason: BlockReason, detail: String) -> Self {
        Self {
            changes: Vec::new(),
            blocked: Some((reason, detail)),
            projected: None,
        }
    }
}

/// What applying a change returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// AWS request ids of the calls made.
    pub request_ids: Vec<String>,
    /// Outputs later steps may use.
    pub outputs: serde_json::Map<String, Value>,
}

impl Applied {
    /// One call made, with its request id when the service gave one.
    pub fn request(request_id: Option<&str>) -> Self {
        Self {
            request_ids: request_id.map(str::to_string).into_iter().collect(),
            outputs: serde_json::Map::new(),
        }
    }
}

/// What undoing a resource's unfinished chain of changes did (see
/// [`Calls::compensate`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Compensation {
    /// The calls made, in order, with the inputs sent.
    pub calls: Vec<ApiCall>,
    /// AWS request ids of those calls.
    pub request_ids: Vec<String>,
    /// The state read before undoing.
    pub before: Value,
    /// The state read back afterwards (null when it could not be read).
    pub after: Value,
    /// `None` when the resource was read back as it was before the chain started;
    /// otherwise what went wrong (a person must look).
    pub failure: Option<String>,
}

/// EC2 tags as a map (tags without a key are dropped).
pub fn ec2_tags(tags: &[aws_sdk_ec2::types::Tag]) -> std::collections::BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// The IAM actions one AWS concern's calls need, as `service:Action`.
#[derive(Debug)]
pub struct Rights {
    /// Discovery, the reads of the stale-plan check and read-back, and waiters.
    pub reads: &'static [&'static str],
    /// The changes, their compensations and their inverses (rollback). EC2 checks a
    /// `DryRun` probe against these too.
    pub changes: &'static [&'static str],
    /// Services a change passes a role to (`iam:PassedToService`), e.g.
    /// `config.amazonaws.com`; which roles, the runbooks' arguments say
    /// ([`crate::least_privilege::passed_roles`]).
    pub passes_role_to: &'static [&'static str],
    /// Whether EC2 uses KMS keys for these calls on the caller's behalf (encrypted
    /// snapshot copies and volumes).
    pub kms_via_ec2: bool,
    /// The rights of other calls these build on (an instance's swap makes its volumes'
    /// calls), held too.
    pub includes: &'static [&'static Rights],
}

impl Rights {
    /// No rights: what a concern's `Rights` leaves out it takes from here
    /// (`..Rights::NONE`), so it names only what it needs.
    pub const NONE: Rights = Rights {
        reads: &[],
        changes: &[],
        passes_role_to: &[],
        kms_via_ec2: false,
        includes: &[],
    };

    /// These rights and, depth first, those they include.
    pub fn all(&'static self) -> Vec<&'static Rights> {
        let mut all = vec![self];
        for included in self.includes {
            all.extend(included.all());
        }
        all
    }
}

/// The states [`Calls::read_from_region`] read, and how many calls listing the region
/// took: apply weighs that against reading by filter when it reads the region again.
pub struct RegionRead {
    /// One state per resource asked for, in order, each made as it is taken: apply
    /// keeps only those that differ from the plan, so a page of thousands of resources
    /// is never held as values all at once.
    pub states: Box<dyn ExactSizeIterator<Item = Value> + Send>,
    /// The list calls made.
    pub requests: usize,
}

/// The call half of an AWS concern, shared by its actions: read a resource's state,
/// make one change's call, probe it with `DryRun`.
#[async_trait]
pub trait Calls: Send + Sync {
    /// The IAM actions these calls need (`harden iam-policy`); the integration suite
    /// checks them against every call harden makes.
    fn rights(&self) -> &'static crate::actions::Rights;
    /// Checks that the change's call is one these calls make, with an input that holds
    /// up as its typed input: every change of a saved plan is checked so before the
    /// first AWS call ([`registry::check_calls`]), and `apply` parses it the same way.
    fn check(&self, change: &Change) -> Result<()>;
    /// Reads the resource's current state in the shape of a change's before/after.
    async fn read(&self, clients: &RegionClients, resource_id: &str) -> Result<Value>;

    /// How many resources one [`Calls::read_many`] reads at most, where the API lists
    /// many resources in one call (a filter on their ids). 1, the default: each
    /// resource is read alone.
    fn read_many_limit(&self) -> usize {
        1
    }

    /// Reads the states of `resource_ids` (at most [`Calls::read_many_limit`]) in as
    /// few calls as the API allows: one state per id, in order, each exactly what
    /// [`Calls::read`] answers for it. Apply reads a stage's resources this way before
    /// their calls and once more after them.
    async fn read_many(
        &self,
        clients: &RegionClients,
        resource_ids: &[String],
    ) -> Result<Vec<Value>> {
        let mut states = Vec::with_capacity(resource_ids.len());
        for id in resource_ids {
            states.push(self.read(clients, id).await?);
        }
        Ok(states)
    }
    /// Reads the states of `resource_ids` (one per id, in order, as [`Calls::read`]
    /// answers) by listing every resource of the region, when that takes at most
    /// `requests` calls: `None` when it would take more (then no call beyond those is
    /// made), or when the API cannot list them so (the default). Apply reads a stage's
    /// resources this way when it costs fewer calls than reading them by filter, page
    /// by page: a stage covering most of a region's groups.
    async fn read_from_region(
        &self,
        _clients: &RegionClients,
        _resource_ids: &[String],
        _requests: usize,
    ) -> Result<Option<RegionRead>> {
        Ok(None)
    }
    /// Makes the change's call. `current` is the state just read, which matched the
    /// change's before; values the plan could not know are resolved from it.
    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        current: &Value,
    ) -> Result<Applied>;
    /// Probes the change's call with `DryRun=true`; never changes anything. Only called
    /// for a change whose input is all known (no `(known after apply)`). Only EC2 has
    /// `DryRun`: the default, for every other service, says so (the plan then lists the
    /// service in `Plan::unprobed_services`).
    async fn probe(&self, _clients: &RegionClients, _change: &Change) -> Probe {
        Probe::NotSupported
    }

    /// Puts a resource back as it was when its chain of changes started (`start`, the
    /// first change's before), when the chain stopped part-way (a change failed, or
    /// the apply stopped or was interrupted) in a state its users must not be left in:
    /// an instance stopped, or a volume detached. `cause` names the change that failed
    /// or the reason the chain stopped. `None`: nothing to undo, or the concern's
    /// half-way states are all safe (the default).
    async fn compensate(
        &self,
        _clients: &RegionClients,
        _resource_id: &str,
        _start: &Value,
        _cause: &str,
    ) -> Option<Compensation> {
        None
    }

    /// For calls the API takes for many resources at once (CreateFlowLogs): changes of
    /// one step whose keys are equal may be sent as one call. `None` (the default): the
    /// change is always its own call.
    fn batch_key(&self, _change: &Change) -> Option<Value> {
        None
    }

    /// The most changes one batched call may carry.
    fn max_batch(&self) -> usize {
        1
    }

    /// Makes the calls of `changes` (same batch key; `current` their states just read)
    /// as one call; answers per change, in order. A resource the service refused within
    /// a successful answer is that change's failure.
    async fn apply_batch(
        &self,
        clients: &RegionClients,
        changes: &[&Change],
        current: &[&Value],
    ) -> Vec<Result<Applied>> {
        let mut results = Vec::with_capacity(changes.len());
        for (change, state) in changes.iter().zip(current) {
            results.push(self.apply(clients, change, state).await);
        }
        results
    }
}

/// What an action is, for validation, `harden list` and the docs.
#[derive(Debug)]
pub struct ActionInfo {
    /// Registry name, e.g. `ec2:restrict-egress`.
    pub name: &'static str,
    /// One line for `harden list`.
    pub description: &'static str,
    /// The kind of resource it acts on (its step's `for_each` must discover it).
    pub resource_kind: ResourceKind,
    /// Outputs it can export.
    pub outputs: &'static [&'static str],
    /// Whether it waits after its calls (for a state to settle), so a step's `wait:`
    /// bounds mean something.
    pub waits: bool,
}

/// A typed action: its plan half. Its calls are those of its AWS concern.
pub trait Action: Send + Sync {
    /// Name, description, resource kind, arguments, outputs.
    fn info(&self) -> &'static ActionInfo;
    /// The arguments it takes: [`arguments_of`] its typed arguments.
    fn arguments(&self) -> Vec<ArgSpec>;
    /// Plans the changes to `target` for rendered `args`. Pure: no AWS calls.
    fn plan(&self, target: &Resource, args: &Value) -> std::result::Result<ActionPlan, String>;
    /// The calls that read, apply and probe its changes.
    fn calls(&self) -> &'static dyn Calls;
    /// The argument naming the role its call hands to a service (which IAM authorizes
    /// as `iam:PassRole` on that role), so `harden iam-policy` can name the roles a
    /// runbook set passes instead of allowing every role.
    fn passed_role_arg(&self) -> Option<&'static str> {
        None
    }
    /// Fields of its resource's state (JSON pointers) that the service changes on its
    /// own, such as a recorder's last status: a rollback holds them to no recorded
    /// value, neither in its stale check nor in its read-back.
    fn service_owned(&self) -> &'static [&'static str] {
        &[]
    }
    /// The change that undoes one this action made (`harden rollback`), from what the
    /// audit recorded of it: its call, the state read before it and the state read back
    /// after it. Pure. `Err` says why there is no way back (the default: none known).
    fn inverse(
        &self,
        call: &ApiCall,
        _before: &Value,
        _after: &Value,
    ) -> std::result::Result<Inverse, String> {
        Err(format!(
            "{} {}: this harden has no inverse for it",
            self.info().name,
            call.operation
        ))
    }
    /// For an action whose changes of one resource build one state together (an
    /// instance swap: stop, copies, detach, attach, start), the changes that undo the
    /// run's whole chain on `resource_id` at once, from its recorded changes in the
    /// order they were made (`run_id` names the run undone). Each inverse's `after` is
    /// the state it leaves; the first starts from the last change's after. `None` (the
    /// default): each change is undone alone by [`Action::inverse`].
    fn inverse_chain(
        &self,
        _run_id: &str,
        _resource_id: &str,
        _made: &[RecordedChange<'_>],
    ) -> Option<std::result::Result<Vec<Inverse>, String>> {
        None
    }
}

/// One change a run made, as the audit recorded it: the input of
/// [`Action::inverse_chain`].
#[derive(Debug, Clone, Copy)]
pub struct RecordedChange<'a> {
    /// The call made.
    pub call: &'a ApiCall,
    /// The state read before it.
    pub before: &'a Value,
    /// The state read back after it.
    pub after: &'a Value,
}

/// The call that undoes a recorded change, and the state it leaves: the recorded
/// before, with what cannot come back the same (the id of a rule authorized again) as
/// `(known after apply)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Inverse {
    /// Create, update or delete.
    pub kind: ChangeKind,
    /// One line for the plan.
    pub summary: String,
    /// The call, with AWS's field names.
    pub operation: String,
    /// Its input.
    pub input: Value,
    /// The state it leaves.
    pub after: Value,
    /// True when the call deletes what the run created, and with it everything the run
    /// changed on it afterwards: the later changes of the resource need no inverse of
    /// their own (a bucket's settings go with the bucket).
    pub removes_created: bool,
}

impl Inverse {
    /// The update that puts `before`, the state recorded before the change, back.
    pub fn restoring(before: &Value, summary: String, operation: &str, input: Value) -> Self {
        Self {
            kind: ChangeKind::Update,
            summary,
            operation: operation.into(),
            input,
            after: before.clone(),
            removes_created: false,
        }
    }

    /// The deletion of what the change created, leaving `before` (where it was not).
    pub fn deleting_created(
        before: &Value,
        summary: String,
        operation: &str,
        input: Value,
    ) -> Self {
        Self {
            kind: ChangeKind::Delete,
            removes_created: true,
            ..Self::restoring(before, summary, operation, input)
        }
    }
}

/// The id (ARN, URL or name) read back of what `call` created, for its deletion: `call`
/// must be the `create` operation of a `what` that did not exist before it.
pub fn created_id(
    call: &ApiCall,
    create: &str,
    existed: bool,
    read_back: Option<String>,
    what: &str,
) -> std::result::Result<String, String> {
    if call.operation != create {
        return Err(format!(
            "{} on {what} is not undone by this harden",
            call.operation
        ));
    }
    if existed {
        return Err(format!("{what} existed before the run"));
    }
    read_back
        .filter(|id| id != crate::template::KNOWN_AFTER_APPLY)
        .ok_or(format!("the id of the {what} it created was not read back"))
}

/// The state recorded before a change, read as the concern's type `T` (`what` names it
/// in the error).
pub fn recorded<T: serde::de::DeserializeOwned>(
    before: &Value,
    what: &str,
) -> std::result::Result<T, String> {
    serde_json::from_value(before.clone())
        .map_err(|e| format!("the {what} recorded before it does not parse: {e}"))
}

/// What a call made with `DryRun=true` answered, as a probe result. EC2 never answers a
/// dry run with success: `DryRunOperation` is its "would have succeeded".
pub fn dry_run_answer(result: Result<Applied>) -> Probe {
    match result {
        Ok(_) => Probe::Failed {
            code: "NoDryRunAnswer".into(),
            message: "the call returned success under DryRun; it may have been made".into(),
        },
        Err(crate::Error::Aws(f)) if f.code == "DryRunOperation" => Probe::WouldSucceed,
        Err(crate::Error::Aws(f)) if f.code == "UnauthorizedOperation" => {
            Probe::Unauthorized { message: f.message }
        }
        Err(crate::Error::Aws(f)) => Probe::Failed {
            code: f.code,
            message: f.message,
        },
        Err(other) => Probe::Failed {
            code: "Error".into(),
            message: other.to_string(),
        },
    }
}

/// A resource's plain data as the state a change records, compares and reads back.
/// Resource kinds are plain data (string-keyed maps, no floats from outside), which
/// always serialize; `Null` stands in for the impossible failure rather than a panic.
pub fn state_of(resource: &impl serde::Serialize) -> Value {
    serde_json::to_value(resource).unwrap_or_default()
}

/// A step's rendered arguments as the action's typed arguments; the error names the
/// argument and what was expected.
pub fn typed_args<T: serde::de::DeserializeOwned>(args: &Value) -> std::result::Result<T, String> {
    serde_path_to_error::deserialize(args).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("arguments: {}", e.into_inner())
        } else {
            format!("argument {path}: {}", e.into_inner())
        }
    })
}

/// A concern's call as the plan stores it: `call` is a value of the concern's enum of
/// typed calls (`#[serde(tag = "operation", content = "input")]`, inputs in AWS's
/// field names), split into the operation and its input.
pub fn api_call<C: serde::Serialize>(
    service: &str,
    call: &C,
) -> std::result::Result<ApiCall, String> {
    let tagged = serde_json::to_value(call).map_err(|e| format!("a call: {e}"))?;
    let operation = tagged
        .get("operation")
        .and_then(Value::as_str)
        .ok_or("a typed call is tagged with its operation")?
        .to_string();
    Ok(ApiCall {
        service: service.into(),
        operation,
        input: tagged
            .get("input")
            .cloned()
            .unwrap_or_else(|| serde_json::json!({})),
    })
}

/// A recorded call as the concern's enum of typed calls (for an inverse, built from
/// what the audit recorded); the error says what does not hold up.
pub fn parse_call<C: serde::de::DeserializeOwned>(
    call: &ApiCall,
) -> std::result::Result<C, String> {
    let tagged = serde_json::json!({"operation": call.operation, "input": call.input});
    serde_path_to_error::deserialize(&tagged)
        .map_err(|e| format!("{} at {}: {}", call.operation, e.path(), e.inner()))
}

/// A saved change's call as the concern's enum of typed calls (see [`api_call`]): an
/// operation the concern does not make, or an input that does not hold up, is refused
/// naming the change, the operation and the field.
pub fn typed_call<C: serde::de::DeserializeOwned>(change: &Change) -> Result<C> {
    let tagged = serde_json::json!({
        "operation": change.call.operation,
        "input": change.call.input,
    });
    serde_path_to_error::deserialize(&tagged).map_err(|e| {
        crate::Error::plan_input(
            &change.id,
            format!("{} at {}: {}", change.call.operation, e.path(), e.inner()),
        )
    })
}

/// The input of a call that takes none (beyond what the client sends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoInput {}

/// A typed call input as the plan stores it (AWS's field names, as JSON).
pub fn call_input<T: serde::Serialize>(input: T) -> std::result::Result<Value, String> {
    serde_json::to_value(input).map_err(|e| format!("a call input: {e}"))
}

/// A fresh idempotency token (`ClientToken`) for one call. The SDK sends a retried
/// request unchanged, token included, so a call whose answer was lost and that is sent
/// again is recognised by AWS as the same call; a later apply gets a new token.
pub fn client_token() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Test support shared by the concerns' mocked-response tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::time::SystemTime;

    use aws_smithy_async::time::{SharedTimeSource, TimeSource};

    /// Time that moves with tokio's clock, so under `start_paused` the SDK waiters'
    /// deadlines pass without the test waiting.
    #[derive(Debug)]
    struct TokioClock {
        base: SystemTime,
        start: tokio::time::Instant,
    }

    impl TimeSource for TokioClock {
        fn now(&self) -> SystemTime {
            self.base + self.start.elapsed()
        }
    }

    /// A time source following tokio's (paused) clock from now.
    pub(crate) fn tokio_time() -> SharedTimeSource {
        SharedTimeSource::new(TokioClock {
            base: SystemTime::now(),
            start: tokio::time::Instant::now(),
        })
    }
}
