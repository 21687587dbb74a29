use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::operation::RequestId;
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification, VolumeType};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::waiters::error::WaiterError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::kind::{RUN_ID_TAG, SOURCE_VOLUME_TAG};
use super::plan::state;
use super::read::{filter, list_volumes};
use crate::actions::{Applied, Calls, typed_call};
use crate::aws::{Answer, RegionClients, failure};
use crate::error::{AwsFailure, Error, Result};
use crate::plan::{Change, Probe};
use crate::template::KNOWN_AFTER_APPLY;

/// How long a wait may take when the step gives no `wait.timeout_seconds`: snapshots of
/// large volumes take a while.
pub const DEFAULT_WAIT_SECONDS: u64 = 3600;

/// Reads, applies (with waits) and probes volume replacement changes.
pub struct VolumeCalls;

/// An input value (at JSON pointer `field`) the plan may have left to apply: taken from
/// the state just read at `from`. Probes only run on calls whose inputs are all known.
/// Every call of a volume's replacement, as a plan stores it (EC2's field names); an
/// instance swap makes them too, for each of its volumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
pub(in crate::actions) enum VolumeCall {
    CreateSnapshot(CreateSnapshotInput),
    CopySnapshot(CopySnapshotInput),
    CreateVolume(CreateVolumeInput),
    CreateTags(TagsInput),
    DeleteTags(TagsInput),
    DeleteSnapshot(SnapshotIdInput),
    DeleteVolume(VolumeIdInput),
}

impl VolumeCall {
    /// The volume the call names: the one snapshotted, deleted or tagged, or the one
    /// what it creates is tagged as made for (`None`: a delete of an artifact whose id
    /// the plan could not know).
    pub(in crate::actions) fn named_volume(&self) -> Option<&str> {
        fn source(specs: &[TagSpecificationInput]) -> Option<&str> {
            specs.first().and_then(|spec| {
                spec.tags
                    .iter()
                    .find(|t| t.key == SOURCE_VOLUME_TAG)
                    .and_then(|t| t.value.as_deref())
            })
        }
        match self {
            VolumeCall::CreateSnapshot(input) => Some(&input.volume_id),
            VolumeCall::DeleteVolume(input) => Some(&input.volume_id),
            VolumeCall::CreateTags(input) | VolumeCall::DeleteTags(input) => {
                input.resources.first().map(String::as_str)
            }
            VolumeCall::CopySnapshot(input) => source(&input.tag_specifications),
            VolumeCall::CreateVolume(input) => source(&input.tag_specifications),
            VolumeCall::DeleteSnapshot(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(in crate::actions) struct TagInput {
    pub(in crate::actions) key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(in crate::actions) value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(in crate::actions) struct TagSpecificationInput {
    resource_type: String,
    tags: Vec<TagInput>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(in crate::actions) struct CreateSnapshotInput {
    volume_id: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tag_specifications: Vec<TagSpecificationInput>,
}

/// `SourceSnapshotId` is `(known after apply)` (or absent) while the snapshot is yet
/// to be made: it is taken from the state just read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(in crate::actions) struct CopySnapshotInput {
    #[serde(default)]
    source_snapshot_id: Option<String>,
    encrypted: bool,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tag_specifications: Vec<TagSpecificationInput>,
    #[serde(default)]
    kms_key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(in crate::actions) struct CreateVolumeInput {
    availability_zone: String,
    #[serde(default)]
    snapshot_id: Option<String>,
    volume_type: String,
    #[serde(default)]
    size: Option<i32>,
    encrypted: bool,
    #[serde(default)]
    tag_specifications: Vec<TagSpecificationInput>,
    #[serde(default)]
    iops: Option<i32>,
    #[serde(default)]
    throughput: Option<i32>,
    #[serde(default)]
    kms_key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(in crate::actions) struct TagsInput {
    pub(in crate::actions) resources: Vec<String>,
    pub(in crate::actions) tags: Vec<TagInput>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(in crate::actions) struct SnapshotIdInput {
    pub(in crate::actions) snapshot_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(in crate::actions) struct VolumeIdInput {
    volume_id: String,
}

/// A value of a call's input (`field` names it) that the plan could not know is taken
/// from the state just read, at `from`.
fn resolve(
    change: &Change,
    given: Option<&str>,
    field: &str,
    current: &Value,
    from: &str,
) -> Result<String> {
    match given {
        Some(value) if value != KNOWN_AFTER_APPLY => Ok(value.to_string()),
        _ => current
            .pointer(from)
            .and_then(Value::as_str)
            .filter(|v| *v != KNOWN_AFTER_APPLY)
            .map(str::to_string)
            .ok_or_else(|| {
                Error::StalePlan { resource: change.resource.id.clone(), detail: format!("{field} is known only after an earlier change, and the state read has none at {from}") }
            }),
    }
}

fn tag_specifications(
    specs: &[TagSpecificationInput],
    resource: ResourceType,
) -> Vec<TagSpecification> {
    specs
        .iter()
        .map(|spec| {
            TagSpecification::builder()
                .resource_type(resource.clone())
                .set_tags(Some(
                    spec.tags
                        .iter()
                        .map(|t| {
                            Tag::builder()
                                .key(&t.key)
                                .value(t.value.as_deref().unwrap_or_default())
                                .build()
                        })
                        .collect(),
                ))
                .build()
        })
        .collect()
}

pub(in crate::actions) fn wait_limit(change: &Change) -> Duration {
    Duration::from_secs(change.wait_timeout_seconds.unwrap_or(DEFAULT_WAIT_SECONDS))
}

/// A waiter's failure as the failure of the change: timed out, or the resource reached
/// a state it cannot leave (a snapshot in `error`).
pub(in crate::actions) fn wait_failure<O, E>(
    operation: &str,
    what: &str,
    limit: Duration,
    error: WaiterError<O, E>,
) -> Error
where
    O: std::fmt::Debug,
    E: std::fmt::Debug,
{
    let (code, message) = match &error {
        WaiterError::ExceededMaxWait(_) => (
            "WaitTimeout",
            format!(
                "{what} was not ready within {} s (wait.timeout_seconds)",
                limit.as_secs()
            ),
        ),
        WaiterError::FailureState(_) => ("WaitFailed", format!("{what} reached a failed state")),
        _ => (
            "WaitError",
            format!("waiting for {what}: {error:?}").replace('\n', " "),
        ),
    };
    Error::Aws(AwsFailure {
        operation: operation.into(),
        code: code.into(),
        message,
        request_id: None,
    })
}

/// One attempt per send: the SDK must not repeat a create that has no idempotency
/// token, since a repeat after a lost answer makes a second snapshot.
fn single_attempt() -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::config::Builder::default()
        .retry_config(aws_smithy_types::retry::RetryConfig::standard().with_max_attempts(1))
}

/// Something the snapshot creates answer with.
trait SnapshotAnswer {
    fn snapshot(&self) -> Option<&str>;
}

impl SnapshotAnswer for aws_sdk_ec2::operation::create_snapshot::CreateSnapshotOutput {
    fn snapshot(&self) -> Option<&str> {
        self.snapshot_id()
    }
}

impl SnapshotAnswer for aws_sdk_ec2::operation::copy_snapshot::CopySnapshotOutput {
    fn snapshot(&self) -> Option<&str> {
        self.snapshot_id()
    }
}

/// How many times a snapshot create is sent when no answer comes back and no snapshot
/// it would have made is found.
const CREATE_ATTEMPTS: usize = 3;

/// Makes a snapshot (CreateSnapshot, CopySnapshot: no ClientToken in the EC2 API) at
/// most once: when no answer comes back (the connection dropped, a timeout, a 5xx),
/// the snapshot this run's call would have made is looked for by its tags (source
/// volume, stage and run id) and adopted if found; only if it is not there is the call
/// sent again. Returns the snapshot id and the request id.
async fn create_once<O, E, F, Fut>(
    clients: &RegionClients,
    operation: &str,
    specs: &[TagSpecificationInput],
    dry_run: bool,
    send: F,
) -> Result<(String, Option<String>)>
where
    O: SnapshotAnswer + RequestId,
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<O, SdkError<E, HttpResponse>>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match send().await {
            Ok(out) => {
                let id = out.snapshot().unwrap_or_default().to_string();
                return Ok((id, out.request_id().map(str::to_string)));
            }
            Err(e) => e,
        };
        let lost = !dry_run
            && match &error {
                SdkError::DispatchFailure(_)
                | SdkError::TimeoutError(_)
                | SdkError::ResponseError(_) => true,
                SdkError::ServiceError(s) => s.raw().status().is_server_error(),
                _ => false,
            };
        let failed = Error::Aws(failure(operation, &error));
        if !lost {
            return Err(failed);
        }
        if let Some(id) = made_by_this_call(clients, specs).await? {
            return Ok((id, None));
        }
        if attempt >= CREATE_ATTEMPTS {
            return Err(failed);
        }
    }
}

/// The snapshot this change's call made, if one is there: found by the tags the call
/// puts on it (source volume, stage, run id).
async fn made_by_this_call(
    clients: &RegionClients,
    specs: &[TagSpecificationInput],
) -> Result<Option<String>> {
    let tags = specs.first().map(|s| s.tags.as_slice()).unwrap_or_default();
    let mut request = clients.ec2.describe_snapshots().owner_ids("self");
    for key in [SOURCE_VOLUME_TAG, "harden:stage", RUN_ID_TAG] {
        let value = tags
            .iter()
            .find(|t| t.key == key)
            .and_then(|t| t.value.as_deref());
        let Some(value) = value else {
            return Ok(None);
        };
        request = request.filters(filter(&format!("tag:{key}"), vec![value.to_string()]));
    }
    let out = request.send().await.or_failure("DescribeSnapshots")?;
    Ok(out
        .snapshots()
        .iter()
        .filter_map(|s| s.snapshot_id())
        .next()
        .map(str::to_string))
}

/// Makes a volume step's call. `current` is the volume's state just read and `after`
/// the volume's part of the change's after (the whole after for a volume's own chain):
/// together they tell which artifact a delete whose id the plan could not know is for.
pub(in crate::actions) async fn call(
    clients: &RegionClients,
    change: &Change,
    current: &Value,
    after: &Value,
    dry_run: bool,
) -> Result<Applied> {
    let ec2 = &clients.ec2;
    let operation = change.call.operation.as_str();
    let limit = wait_limit(change);
    match typed_call::<VolumeCall>(change)? {
        VolumeCall::CreateSnapshot(input) => {
            let specs = &input.tag_specifications;
            let (id, request_id) = create_once(clients, operation, specs, dry_run, || {
                ec2.create_snapshot()
                    .volume_id(&input.volume_id)
                    .set_description(input.description.clone())
                    .set_tag_specifications(Some(tag_specifications(specs, ResourceType::Snapshot)))
                    .dry_run(dry_run)
                    .customize()
                    .config_override(single_attempt())
                    .send()
            })
            .await?;
            ec2.wait_until_snapshot_completed()
                .snapshot_ids(&id)
                .wait(limit)
                .await
                .map_err(|e| wait_failure(operation, &format!("snapshot {id}"), limit, e))?;
            Ok(Applied::request(request_id.as_deref()))
        }
        VolumeCall::CopySnapshot(input) => {
            let source = resolve(
                change,
                input.source_snapshot_id.as_deref(),
                "SourceSnapshotId",
                current,
                "/snapshot/id",
            )?;
            let specs = &input.tag_specifications;
            let (id, request_id) = create_once(clients, operation, specs, dry_run, || {
                ec2.copy_snapshot()
                    .source_snapshot_id(&source)
                    .source_region(&clients.region)
                    .encrypted(true)
                    .set_kms_key_id(input.kms_key_id.clone())
                    .set_description(input.description.clone())
                    .set_tag_specifications(Some(tag_specifications(specs, ResourceType::Snapshot)))
                    .dry_run(dry_run)
                    .customize()
                    .config_override(single_attempt())
                    .send()
            })
            .await?;
            ec2.wait_until_snapshot_completed()
                .snapshot_ids(&id)
                .wait(limit)
                .await
                .map_err(|e| wait_failure(operation, &format!("encrypted copy {id}"), limit, e))?;
            Ok(Applied::request(request_id.as_deref()))
        }
        VolumeCall::CreateVolume(input) => {
            let snapshot = resolve(
                change,
                input.snapshot_id.as_deref(),
                "SnapshotId",
                current,
                "/copy/id",
            )?;
            let out = ec2
                .create_volume()
                .availability_zone(input.availability_zone)
                .snapshot_id(snapshot)
                .volume_type(VolumeType::from(input.volume_type.as_str()))
                .set_size(input.size)
                .set_iops(input.iops)
                .set_throughput(input.throughput)
                .encrypted(true)
                .set_kms_key_id(input.kms_key_id)
                .set_tag_specifications(Some(tag_specifications(
                    &input.tag_specifications,
                    ResourceType::Volume,
                )))
                // One token per call, kept by the SDK's retries: a repeat after a lost
                // answer returns the volume already made instead of making another.
                .client_token(crate::actions::client_token())
                .dry_run(dry_run)
                .send()
                .await
                .or_failure(operation)?;
            let id = out.volume_id().unwrap_or_default().to_string();
            ec2.wait_until_volume_available()
                .volume_ids(&id)
                .wait(limit)
                .await
                .map_err(|e| wait_failure(operation, &format!("volume {id}"), limit, e))?;
            Ok(Applied::request(out.request_id()))
        }
        VolumeCall::CreateTags(input) => {
            let tag = first_tag(change, &input)?;
            let value = resolve(
                change,
                tag.value.as_deref(),
                "Tags[0].Value",
                current,
                "/replacement/id",
            )?;
            let out = ec2
                .create_tags()
                .set_resources(Some(resources(change, &input)?))
                .tags(Tag::builder().key(&tag.key).value(value).build())
                .dry_run(dry_run)
                .send()
                .await
                .or_failure(operation)?;
            Ok(Applied::request(out.request_id()))
        }
        VolumeCall::DeleteTags(input) => {
            let tag = first_tag(change, &input)?;
            let out = ec2
                .delete_tags()
                .set_resources(Some(resources(change, &input)?))
                .tags(Tag::builder().key(&tag.key).build())
                .dry_run(dry_run)
                .send()
                .await
                .or_failure(operation)?;
            Ok(Applied::request(out.request_id()))
        }
        VolumeCall::DeleteSnapshot(input) => {
            // Which of the two: the one the change leaves gone.
            let gone = |field: &str| !current[field].is_null() && after[field].is_null();
            let from = if gone("copy") {
                "/copy/id"
            } else if gone("snapshot") {
                "/snapshot/id"
            } else if current
                .pointer("/copy/id")
                .and_then(Value::as_str)
                .is_some()
            {
                "/copy/id"
            } else {
                "/snapshot/id"
            };
            let id = resolve(
                change,
                Some(&input.snapshot_id),
                "SnapshotId",
                current,
                from,
            )?;
            let out = ec2
                .delete_snapshot()
                .snapshot_id(id)
                .dry_run(dry_run)
                .send()
                .await
                .or_failure(operation)?;
            Ok(Applied::request(out.request_id()))
        }
        VolumeCall::DeleteVolume(input) => {
            let out = ec2
                .delete_volume()
                .volume_id(input.volume_id)
                .dry_run(dry_run)
                .send()
                .await
                .or_failure(operation)?;
            Ok(Applied::request(out.request_id()))
        }
    }
}

/// The one tag a tagging change sets or removes.
fn first_tag<'a>(change: &Change, input: &'a TagsInput) -> Result<&'a TagInput> {
    input
        .tags
        .first()
        .ok_or_else(|| Error::plan_input(&change.id, "Tags names no tag"))
}

/// The ids a tagging change names (`Resources`): at least one.
fn resources(change: &Change, input: &TagsInput) -> Result<Vec<String>> {
    let ids = input.resources.clone();
    if ids.is_empty() {
        return Err(Error::plan_input(
            &change.id,
            "Resources names no volume or snapshot",
        ));
    }
    Ok(ids)
}

/// The rights of a volume's encryption: its snapshots, copies and volumes.
pub(crate) static VOLUME_RIGHTS: crate::actions::Rights = crate::actions::Rights {
    reads: &["ec2:DescribeVolumes", "ec2:DescribeSnapshots"],
    changes: &[
        "ec2:CreateSnapshot",
        "ec2:CopySnapshot",
        "ec2:CreateVolume",
        "ec2:DeleteSnapshot",
        "ec2:DeleteVolume",
        "ec2:CreateTags",
        "ec2:DeleteTags",
    ],
    kms_via_ec2: true,
    ..crate::actions::Rights::NONE
};

#[async_trait]
impl Calls for VolumeCalls {
    fn rights(&self) -> &'static crate::actions::Rights {
        &VOLUME_RIGHTS
    }

    fn check(&self, change: &Change) -> Result<()> {
        typed_call::<VolumeCall>(change).map(drop)
    }

    async fn read(&self, clients: &RegionClients, resource_id: &str) -> Result<Value> {
        let mut volumes = list_volumes(
            clients,
            &BTreeMap::from([("volume-id".to_string(), vec![resource_id.to_string()])]),
        )
        .await?;
        Ok(state(volumes.pop().as_ref()))
    }

    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        current: &Value,
    ) -> Result<Applied> {
        call(clients, change, current, &change.after, false).await
    }

    async fn probe(&self, clients: &RegionClients, change: &Change) -> Probe {
        crate::actions::dry_run_answer(
            call(clients, change, &Value::Null, &change.after, true).await,
        )
    }
}
