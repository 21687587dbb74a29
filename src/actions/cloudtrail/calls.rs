//! The CloudTrail calls of this concern as typed inputs in AWS's field names, and how
//! each is applied.

use async_trait::async_trait;
use aws_sdk_cloudtrail::operation::RequestId;
use aws_sdk_cloudtrail::types::{
    AdvancedEventSelector, AdvancedFieldSelector, DataResource, EventSelector, ReadWriteType,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::actions::{Applied, Calls, typed_call};
use crate::aws::{Answer, RegionClients};
use crate::error::{Error, Result};
use crate::plan::Change;

use super::plan::state;
use super::read::read_trails;

/// Reads, applies (and cannot probe) trail changes.
pub struct TrailCalls;

/// Every call of this concern, as a plan stores it (CloudTrail's field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
pub(super) enum TrailCall {
    CreateTrail(CreateTrailInput),
    UpdateTrail(UpdateTrailInput),
    PutEventSelectors(SelectorsInput),
    StartLogging(TrailName),
    /// Rollback of a start.
    StopLogging(TrailName),
    /// Rollback of a created trail.
    DeleteTrail(TrailName),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct CreateTrailInput {
    pub(super) name: String,
    pub(super) s3_bucket_name: String,
    #[serde(default)]
    pub(super) is_multi_region_trail: Option<bool>,
    #[serde(default)]
    pub(super) enable_log_file_validation: Option<bool>,
    #[serde(default)]
    pub(super) include_global_service_events: Option<bool>,
    #[serde(default)]
    pub(super) kms_key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct UpdateTrailInput {
    pub(super) name: String,
    #[serde(default)]
    pub(super) is_multi_region_trail: Option<bool>,
    #[serde(default)]
    pub(super) enable_log_file_validation: Option<bool>,
    #[serde(default)]
    pub(super) include_global_service_events: Option<bool>,
    #[serde(default)]
    pub(super) kms_key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct TrailName {
    pub(super) name: String,
}

/// A trail's selectors: basic ones, or advanced ones (CloudTrail takes one kind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct SelectorsInput {
    pub(super) trail_name: String,
    #[serde(default)]
    pub(super) event_selectors: Option<Vec<BasicSelector>>,
    #[serde(default)]
    pub(super) advanced_event_selectors: Option<Vec<AdvancedSelector>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct BasicSelector {
    #[serde(default)]
    read_write_type: Option<String>,
    #[serde(default)]
    include_management_events: Option<bool>,
    #[serde(default)]
    data_resources: Option<Vec<DataResourceInput>>,
    #[serde(default)]
    exclude_management_event_sources: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct DataResourceInput {
    #[serde(default)]
    r#type: Option<String>,
    #[serde(default)]
    values: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct AdvancedSelector {
    #[serde(default)]
    name: Option<String>,
    field_selectors: Vec<FieldSelectorInput>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct FieldSelectorInput {
    field: String,
    #[serde(default)]
    equals: Option<Vec<String>>,
    #[serde(default)]
    starts_with: Option<Vec<String>>,
    #[serde(default)]
    ends_with: Option<Vec<String>>,
    #[serde(default)]
    not_equals: Option<Vec<String>>,
    #[serde(default)]
    not_starts_with: Option<Vec<String>>,
    #[serde(default)]
    not_ends_with: Option<Vec<String>>,
}

fn basic_selector(input: BasicSelector) -> EventSelector {
    EventSelector::builder()
        .set_read_write_type(input.read_write_type.as_deref().map(ReadWriteType::from))
        .set_include_management_events(input.include_management_events)
        .set_data_resources(input.data_resources.map(|items| {
            items
                .into_iter()
                .map(|d| {
                    DataResource::builder()
                        .set_type(d.r#type)
                        .set_values(d.values)
                        .build()
                })
                .collect()
        }))
        .set_exclude_management_event_sources(input.exclude_management_event_sources)
        .build()
}

fn advanced_selector(input: AdvancedSelector) -> Result<AdvancedEventSelector> {
    let fields = input
        .field_selectors
        .into_iter()
        .map(|f| {
            AdvancedFieldSelector::builder()
                .field(f.field)
                .set_equals(f.equals)
                .set_starts_with(f.starts_with)
                .set_ends_with(f.ends_with)
                .set_not_equals(f.not_equals)
                .set_not_starts_with(f.not_starts_with)
                .set_not_ends_with(f.not_ends_with)
                .build()
                .map_err(|e| Error::Internal(format!("advanced field selector: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    AdvancedEventSelector::builder()
        .set_name(input.name)
        .set_field_selectors(Some(fields))
        .build()
        .map_err(|e| Error::Internal(format!("advanced event selector: {e}")))
}

#[async_trait]
impl Calls for TrailCalls {
    fn rights(&self) -> &'static crate::actions::Rights {
        &crate::actions::Rights {
            reads: &[
                "cloudtrail:DescribeTrails",
                "cloudtrail:GetTrailStatus",
                "cloudtrail:GetEventSelectors",
                "cloudtrail:ListTags",
            ],
            changes: &[
                "cloudtrail:CreateTrail",
                "cloudtrail:UpdateTrail",
                "cloudtrail:PutEventSelectors",
                "cloudtrail:StartLogging",
                "cloudtrail:StopLogging",
                "cloudtrail:DeleteTrail",
            ],
            ..crate::actions::Rights::NONE
        }
    }

    fn check(&self, change: &Change) -> Result<()> {
        typed_call::<TrailCall>(change).map(drop)
    }

    async fn read(&self, clients: &RegionClients, _resource_id: &str) -> Result<Value> {
        Ok(state(&read_trails(clients).await?))
    }

    async fn apply(
        &self,
        clients: &RegionClients,
        change: &Change,
        _current: &Value,
    ) -> Result<Applied> {
        let ct = &clients.cloudtrail;
        let operation = change.call.operation.as_str();
        let request_id = match typed_call::<TrailCall>(change)? {
            TrailCall::CreateTrail(input) => ct
                .create_trail()
                .name(input.name)
                .s3_bucket_name(input.s3_bucket_name)
                .set_is_multi_region_trail(input.is_multi_region_trail)
                .set_enable_log_file_validation(input.enable_log_file_validation)
                .set_include_global_service_events(input.include_global_service_events)
                .set_kms_key_id(input.kms_key_id)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            TrailCall::UpdateTrail(input) => ct
                .update_trail()
                .name(input.name)
                .set_is_multi_region_trail(input.is_multi_region_trail)
                .set_enable_log_file_validation(input.enable_log_file_validation)
                .set_include_global_service_events(input.include_global_service_events)
                .set_kms_key_id(input.kms_key_id)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            TrailCall::PutEventSelectors(input) => {
                let mut request = ct.put_event_selectors().trail_name(input.trail_name);
                request = match input.advanced_event_selectors {
                    Some(advanced) => request.set_advanced_event_selectors(Some(
                        advanced
                            .into_iter()
                            .map(advanced_selector)
                            .collect::<Result<Vec<_>>>()?,
                    )),
                    None => request.set_event_selectors(Some(
                        input
                            .event_selectors
                            .unwrap_or_default()
                            .into_iter()
                            .map(basic_selector)
                            .collect(),
                    )),
                };
                request
                    .send()
                    .await
                    .or_failure(operation)?
                    .request_id()
                    .map(str::to_string)
            }
            TrailCall::StartLogging(input) => ct
                .start_logging()
                .name(input.name)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            TrailCall::StopLogging(input) => ct
                .stop_logging()
                .name(input.name)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
            TrailCall::DeleteTrail(input) => ct
                .delete_trail()
                .name(input.name)
                .send()
                .await
                .or_failure(operation)?
                .request_id()
                .map(str::to_string),
        };
        Ok(Applied::request(request_id.as_deref()))
    }
}
