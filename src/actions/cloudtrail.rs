//! CloudTrail (FSBP CloudTrail.1, .2, .4; CIS 3.1, 3.2, 3.5): some trail records every
//! region's read and write management events, is logging, validates its log files and,
//! when a key is asked for, is KMS-encrypted.
//!
//! Compliance is a property of the region's set of trails, so the resource is the set
//! (`cloudtrail:trails`, one per region). An existing trail homed here is brought into
//! compliance in place (UpdateTrail, PutEventSelectors, StartLogging) rather than
//! adding a second trail, which would double the cost of management events; a trail is
//! created only when none exists that could be fixed. CloudTrail has no dry-run.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_cloudtrail::operation::RequestId;
use aws_sdk_cloudtrail::types::{
    AdvancedEventSelector, AdvancedFieldSelector, DataResource, EventSelector, ReadWriteType,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{
    Action, ActionInfo, ActionPlan, Applied, ArgSpec, Calls, DraftChain, Inverse, arg,
    arguments_of, parse_call, typed_args, typed_call,
};
use crate::actions::{Resource, ResourceKind};
use crate::aws::{RegionClients, failure};
use crate::error::{Error, Result};
use crate::event::KnownEvent;
use crate::inventory::{EXEMPT_TAG, Filters, Kind, Narrowing};
use crate::plan::{ApiCall, BlockReason, Change, ChangeKind};
use crate::template::KNOWN_AFTER_APPLY;

/// Brings a trail into compliance, or creates one when there is none to fix.
pub struct EnsureTrail;

static ENSURE: ActionInfo = ActionInfo {
    name: "cloudtrail:ensure-trail",
    description: "make sure some trail is multi-region, logging, records all read and write management events, validates log files (and is KMS-encrypted when kms_key_id is given): fix an existing trail homed in the region in place, create one only when none exists",
    resource_kind: ResourceKind::Trails,
    outputs: &[],
    waits: false,
};

fn state(trails: &Trails) -> Value {
    json!({ "trails": trails.trails })
}

/// The selectors that record all management events while keeping the trail's data
/// event selectors.
fn management_selectors(selectors: &Value) -> Value {
    if let Some(advanced) = selectors
        .get("AdvancedEventSelectors")
        .and_then(Value::as_array)
    {
        let mut kept: Vec<Value> = advanced
            .iter()
            .filter(|s| {
                !s.get("FieldSelectors")
                    .and_then(Value::as_array)
                    .is_some_and(|f| {
                        f.iter().any(|f| {
                            f.get("Field").and_then(Value::as_str) == Some("eventCategory")
                                && f.get("Equals") == Some(&json!(["Management"]))
                        })
                    })
            })
            .cloned()
            .collect();
        kept.push(
            json!({"Name": "Management events (harden)", "FieldSelectors": [
            {"Field": "eventCategory", "Equals": ["Management"]}]}),
        );
        return json!({ "AdvancedEventSelectors": kept });
    }
    // Data-event selectors stay, without management events; one selector records every
    // management event.
    let mut kept: Vec<Value> = selectors
        .get("EventSelectors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|s| {
            s.get("DataResources")
                .and_then(Value::as_array)
                .is_some_and(|d| !d.is_empty())
        })
        .map(|s| {
            let mut s = s.clone();
            s["IncludeManagementEvents"] = json!(false);
            if let Some(map) = s.as_object_mut() {
                map.remove("ExcludeManagementEventSources");
            }
            s
        })
        .collect();
    kept.push(json!({"ReadWriteType": "All", "IncludeManagementEvents": true}));
    json!({ "EventSelectors": kept })
}

/// The trails' changes so far and the state they leave.
struct Drafts {
    chain: DraftChain,
    current: Trails,
}

impl Drafts {
    fn push(
        &mut self,
        summary: String,
        kind: ChangeKind,
        next: Trails,
        operation: &str,
        input: Value,
    ) {
        self.chain
            .push(kind, summary, state(&next), operation, input);
        self.current = next;
    }
}

impl Action for EnsureTrail {
    fn arguments(&self) -> Vec<ArgSpec> {
        arguments_of::<TrailArgs>()
    }

    fn info(&self) -> &'static ActionInfo {
        &ENSURE
    }

    fn plan(&self, target: &Resource, args: &Value) -> std::result::Result<ActionPlan, String> {
        let Resource::Trails(trails) = target else {
            return Err(format!(
                "expected a region's trails, given {}",
                target.kind()
            ));
        };
        let args: TrailArgs = typed_args(args)?;
        let trail_name = args
            .trail_name
            .ok_or_else(|| "argument trail_name: a name is required".to_string())?;
        let bucket = args
            .bucket_name
            .ok_or_else(|| "argument bucket_name: a name is required".to_string())?;
        let kms = args.kms_key_id;
        if trails.trails.iter().any(|t| t.is_compliant(kms.is_some())) {
            return Ok(ActionPlan::default());
        }
        // The trail to fix: homed here and changeable; the named one first, then the
        // one closest to compliance.
        let mut candidates: Vec<&Trail> = trails
            .trails
            .iter()
            .filter(|t| t.home_region == trails.region && !t.organization)
            .collect();
        candidates.sort_by_key(|t| {
            (
                t.name != trail_name,
                !t.multi_region,
                !t.logging,
                t.name.clone(),
            )
        });
        if let Some(exempt) = candidates.iter().find(|t| t.is_exempt())
            && candidates.iter().all(|t| t.is_exempt())
        {
            return Ok(ActionPlan::blocked(
                BlockReason::Exempt,
                format!(
                    "trail {} is tagged harden:exempt; no second trail is created beside it",
                    exempt.name
                ),
            ));
        }
        let mut drafts = Drafts {
            chain: DraftChain::new("cloudtrail", state(trails)),
            current: trails.clone(),
        };
        if let Some(trail) = candidates.iter().find(|t| !t.is_exempt()) {
            fix_in_place(&mut drafts, trail, kms.as_deref());
        } else if let Some(elsewhere) = trails
            .trails
            .iter()
            .find(|t| t.multi_region && !t.organization && t.home_region != trails.region)
        {
            return Ok(ActionPlan::blocked(
                BlockReason::OtherRegion,
                format!(
                    "multi-region trail {} is homed in {} and can only be changed there: plan {} (set home_region) to fix it in place",
                    elsewhere.name, elsewhere.home_region, elsewhere.home_region
                ),
            ));
        } else {
            create(&mut drafts, trails, &trail_name, &bucket, kms.as_deref());
        }
        Ok(ActionPlan {
            changes: drafts.chain.into_changes(),
            blocked: None,
            projected: Some(Resource::Trails(drafts.current)),
        })
    }

    fn calls(&self) -> &'static dyn Calls {
        &TrailCalls
    }

    /// A trail the run created is deleted; a trail fixed in place gets its recorded
    /// settings back: UpdateTrail with the flags it had, its selectors as they were,
    /// StopLogging since it was not logging. A KMS key the run added stays: CloudTrail
    /// documents no way to take a trail's key away, so that change is refused.
    fn inverse(
        &self,
        call: &ApiCall,
        before: &Value,
        _after: &Value,
    ) -> std::result::Result<Inverse, String> {
        let trails: Vec<Trail> = super::recorded(&before["trails"], "trails")?;
        let made: TrailCall = parse_call(call)?;
        let name = match &made {
            TrailCall::CreateTrail(input) => input.name.as_str(),
            TrailCall::UpdateTrail(input) => input.name.as_str(),
            TrailCall::PutEventSelectors(input) => input.trail_name.as_str(),
            TrailCall::StartLogging(input)
            | TrailCall::StopLogging(input)
            | TrailCall::DeleteTrail(input) => input.name.as_str(),
        };
        let was = trails.iter().find(|t| t.name == name);
        match (call.operation.as_str(), was) {
            ("CreateTrail", None) => Ok(Inverse::deleting_created(
                before,
                format!("delete trail {name}, which the run created"),
                "DeleteTrail",
                json!({"Name": name}),
            )),
            ("CreateTrail", Some(_)) => Err(format!("trail {name} existed before the run")),
            (_, None) => Err(format!("trail {name} was not recorded before the run")),
            ("UpdateTrail", Some(was)) => {
                if matches!(&made, TrailCall::UpdateTrail(input) if input.kms_key_id.is_some())
                    && was.kms_key_id.is_none()
                {
                    return Err(format!(
                        "it encrypted trail {name} with KMS, which CloudTrail cannot undo"
                    ));
                }
                Ok(Inverse::restoring(
                    before,
                    format!("set trail {name}'s region, validation and global event flags back"),
                    "UpdateTrail",
                    json!({"Name": name, "IsMultiRegionTrail": was.multi_region,
                        "EnableLogFileValidation": was.log_file_validation,
                        "IncludeGlobalServiceEvents": was.include_global_service_events}),
                ))
            }
            ("PutEventSelectors", Some(was)) => {
                let Some(selectors) = was.selectors.as_object() else {
                    return Err(format!("trail {name}'s selectors before it were not read"));
                };
                let mut input = json!({"TrailName": name});
                if let Some(input) = input.as_object_mut() {
                    input.extend(selectors.clone());
                }
                Ok(Inverse::restoring(
                    before,
                    format!("put trail {name}'s event selectors back"),
                    "PutEventSelectors",
                    input,
                ))
            }
            ("StartLogging", Some(was)) if !was.logging => Ok(Inverse::restoring(
                before,
                format!("stop logging on trail {name} again, as before the run"),
                "StopLogging",
                json!({"Name": name}),
            )),
            ("StartLogging", Some(_)) => Err(format!("trail {name} was logging before the run")),
            (other, _) => Err(format!("no inverse for {other}")),
        }
    }
}

fn with_trail(trails: &Trails, name: &str, change: impl FnOnce(&mut Trail)) -> Trails {
    let mut next = trails.clone();
    if let Some(t) = next.trails.iter_mut().find(|t| t.name == name) {
        change(t);
    }
    next
}

fn fix_in_place(drafts: &mut Drafts, trail: &Trail, kms: Option<&str>) {
    let name = trail.name.clone();
    let kms_missing = kms.is_some() && trail.kms_key_id.is_none();
    if !trail.multi_region
        || !trail.log_file_validation
        || !trail.include_global_service_events
        || kms_missing
    {
        let mut input = json!({"Name": name, "IsMultiRegionTrail": true,
            "EnableLogFileValidation": true, "IncludeGlobalServiceEvents": true});
        if kms_missing {
            input["KmsKeyId"] = json!(kms);
        }
        let next = with_trail(&drafts.current, &name, |t| {
            t.multi_region = true;
            t.log_file_validation = true;
            t.include_global_service_events = true;
            if kms_missing {
                // AWS answers with the key's ARN whatever form was given.
                t.kms_key_id = Some(KNOWN_AFTER_APPLY.into());
            }
        });
        drafts.push(
            format!(
                "make trail {name} multi-region with log file validation{}",
                if kms_missing {
                    " and KMS encryption"
                } else {
                    ""
                }
            ),
            ChangeKind::Update,
            next,
            "UpdateTrail",
            input,
        );
    }
    if !trail.records_all_management_events() {
        let selectors = management_selectors(&trail.selectors);
        let mut input = json!({"TrailName": name});
        if let (Some(input), Some(sel)) = (input.as_object_mut(), selectors.as_object()) {
            input.extend(sel.clone());
        }
        let next = with_trail(&drafts.current, &name, |t| t.selectors = selectors.clone());
        drafts.push(
            format!("record all read and write management events on trail {name}, data event selectors kept"),
            ChangeKind::Update,
            next,
            "PutEventSelectors",
            input,
        );
    }
    if !trail.logging {
        let next = with_trail(&drafts.current, &name, |t| t.logging = true);
        drafts.push(
            format!("start logging on trail {name}"),
            ChangeKind::Update,
            next,
            "StartLogging",
            json!({"Name": name}),
        );
    }
}

fn create(drafts: &mut Drafts, trails: &Trails, name: &str, bucket: &str, kms: Option<&str>) {
    let mut input = json!({"Name": name, "S3BucketName": bucket, "IsMultiRegionTrail": true,
        "EnableLogFileValidation": true, "IncludeGlobalServiceEvents": true});
    if let Some(key) = kms {
        input["KmsKeyId"] = json!(key);
    }
    let mut next = drafts.current.clone();
    next.trails.push(Trail {
        name: name.into(),
        arn: KNOWN_AFTER_APPLY.into(),
        home_region: trails.region.clone(),
        multi_region: true,
        organization: false,
        logging: false,
        log_file_validation: true,
        kms_key_id: kms.map(|_| KNOWN_AFTER_APPLY.to_string()),
        bucket: bucket.into(),
        include_global_service_events: true,
        // A new trail's default selectors are set explicitly by the next change.
        selectors: json!(KNOWN_AFTER_APPLY),
        tags: BTreeMap::new(),
    });
    sort_trails(&mut next.trails);
    drafts.push(
        format!("create multi-region trail {name} writing to bucket {bucket}"),
        ChangeKind::Create,
        next,
        "CreateTrail",
        input,
    );
    let selectors =
        json!({"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": true}]});
    let next = with_trail(&drafts.current, name, |t| t.selectors = selectors.clone());
    let mut input = json!({"TrailName": name});
    if let (Some(input), Some(sel)) = (input.as_object_mut(), selectors.as_object()) {
        input.extend(sel.clone());
    }
    drafts.push(
        format!("record all read and write management events on trail {name}"),
        ChangeKind::Update,
        next,
        "PutEventSelectors",
        input,
    );
    let next = with_trail(&drafts.current, name, |t| t.logging = true);
    drafts.push(
        format!("start logging on trail {name}"),
        ChangeKind::Update,
        next,
        "StartLogging",
        json!({"Name": name}),
    );
}

/// Trails sorted by name within home region: a planned trail (ARN not yet known) sits
/// where the read-back puts it.
fn sort_trails(trails: &mut [Trail]) {
    trails.sort_by(|a, b| (&a.home_region, &a.name).cmp(&(&b.home_region, &b.name)));
}

/// The arguments of `cloudtrail:ensure-trail`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrailArgs {
    /// Name of the trail to create when none can be fixed (an existing trail of this
    /// name is preferred).
    #[serde(deserialize_with = "arg::text")]
    #[schemars(required)]
    pub trail_name: Option<String>,
    /// Bucket a created trail writes to.
    #[serde(deserialize_with = "arg::text")]
    #[schemars(required)]
    pub bucket_name: Option<String>,
    /// KMS key (ARN, id or alias) to encrypt logs with (CloudTrail.2); its key policy
    /// must let CloudTrail use it.
    #[serde(default, deserialize_with = "arg::text")]
    pub kms_key_id: Option<String>,
}

/// Reads, applies (and cannot probe) trail changes.
pub struct TrailCalls;

/// Every call of this concern, as a plan stores it (CloudTrail's field names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "input")]
enum TrailCall {
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
struct CreateTrailInput {
    name: String,
    s3_bucket_name: String,
    #[serde(default)]
    is_multi_region_trail: Option<bool>,
    #[serde(default)]
    enable_log_file_validation: Option<bool>,
    #[serde(default)]
    include_global_service_events: Option<bool>,
    #[serde(default)]
    kms_key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct UpdateTrailInput {
    name: String,
    #[serde(default)]
    is_multi_region_trail: Option<bool>,
    #[serde(default)]
    enable_log_file_validation: Option<bool>,
    #[serde(default)]
    include_global_service_events: Option<bool>,
    #[serde(default)]
    kms_key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct TrailName {
    name: String,
}

/// A trail's selectors: basic ones, or advanced ones (CloudTrail takes one kind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct SelectorsInput {
    trail_name: String,
    #[serde(default)]
    event_selectors: Option<Vec<BasicSelector>>,
    #[serde(default)]
    advanced_event_selectors: Option<Vec<AdvancedSelector>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct BasicSelector {
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
struct AdvancedSelector {
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
            passes_role_to: &[],
            kms_via_ec2: false,
            includes: &[],
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
        let aws = |e| Error::Aws(e);
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
                .map_err(|e| aws(failure(operation, &e)))?
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
                .map_err(|e| aws(failure(operation, &e)))?
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
                    .map_err(|e| aws(failure(operation, &e)))?
                    .request_id()
                    .map(str::to_string)
            }
            TrailCall::StartLogging(input) => ct
                .start_logging()
                .name(input.name)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
            TrailCall::StopLogging(input) => ct
                .stop_logging()
                .name(input.name)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
            TrailCall::DeleteTrail(input) => ct
                .delete_trail()
                .name(input.name)
                .send()
                .await
                .map_err(|e| aws(failure(operation, &e)))?
                .request_id()
                .map(str::to_string),
        };
        Ok(Applied::request(request_id.as_deref()))
    }
}

/// Selectors in AWS's shape with empty lists and absent fields left out, so a read-back
/// compares equal to what was sent.
fn selectors_json(basic: &[EventSelector], advanced: &[AdvancedEventSelector]) -> Value {
    fn put(map: &mut Map<String, Value>, key: &str, values: &[String]) {
        if !values.is_empty() {
            map.insert(key.into(), json!(values));
        }
    }
    if !advanced.is_empty() {
        let list: Vec<Value> = advanced
            .iter()
            .map(|s| {
                let fields: Vec<Value> = s
                    .field_selectors()
                    .iter()
                    .map(|f| {
                        let mut map = Map::new();
                        map.insert("Field".into(), json!(f.field()));
                        put(&mut map, "Equals", f.equals());
                        put(&mut map, "StartsWith", f.starts_with());
                        put(&mut map, "EndsWith", f.ends_with());
                        put(&mut map, "NotEquals", f.not_equals());
                        put(&mut map, "NotStartsWith", f.not_starts_with());
                        put(&mut map, "NotEndsWith", f.not_ends_with());
                        Value::Object(map)
                    })
                    .collect();
                let mut map = Map::new();
                if let Some(name) = s.name() {
                    map.insert("Name".into(), json!(name));
                }
                map.insert("FieldSelectors".into(), Value::Array(fields));
                Value::Object(map)
            })
            .collect();
        return json!({ "AdvancedEventSelectors": list });
    }
    let list: Vec<Value> = basic
        .iter()
        .map(|s| {
            let mut map = Map::new();
            if let Some(rw) = s.read_write_type() {
                map.insert("ReadWriteType".into(), json!(rw.as_str()));
            }
            if let Some(include) = s.include_management_events() {
                map.insert("IncludeManagementEvents".into(), json!(include));
            }
            if !s.data_resources().is_empty() {
                let data: Vec<Value> = s
                    .data_resources()
                    .iter()
                    .map(|d| json!({"Type": d.r#type(), "Values": d.values()}))
                    .collect();
                map.insert("DataResources".into(), Value::Array(data));
            }
            put(
                &mut map,
                "ExcludeManagementEventSources",
                s.exclude_management_event_sources(),
            );
            Value::Object(map)
        })
        .collect();
    json!({ "EventSelectors": list })
}

/// Reads every trail the region sees, with status, selectors and tags.
pub async fn read_trails(clients: &RegionClients) -> Result<Trails> {
    let ct = &clients.cloudtrail;
    let out = ct
        .describe_trails()
        .include_shadow_trails(true)
        .send()
        .await
        .map_err(|e| Error::Aws(failure("DescribeTrails", &e)))?;
    let mut trails = Vec::new();
    for t in out.trail_list() {
        let (Some(name), Some(arn)) = (t.name(), t.trail_arn()) else {
            continue;
        };
        let home_region = t.home_region().unwrap_or(&clients.region).to_string();
        // A multi-region trail shows in every region, but its status and selectors are
        // answered in its home region.
        let home = clients.cloudtrail_in(&home_region);
        let (status, selectors) = tokio::join!(
            home.get_trail_status().name(arn).send(),
            home.get_event_selectors().trail_name(arn).send(),
        );
        let status = status.map_err(|e| Error::Aws(failure("GetTrailStatus", &e)))?;
        let selectors = selectors.map_err(|e| Error::Aws(failure("GetEventSelectors", &e)))?;
        trails.push(Trail {
            name: name.to_string(),
            arn: arn.to_string(),
            home_region,
            multi_region: t.is_multi_region_trail().unwrap_or(false),
            organization: t.is_organization_trail().unwrap_or(false),
            logging: status.is_logging().unwrap_or(false),
            log_file_validation: t.log_file_validation_enabled().unwrap_or(false),
            kms_key_id: t.kms_key_id().map(str::to_string),
            bucket: t.s3_bucket_name().unwrap_or_default().to_string(),
            include_global_service_events: t.include_global_service_events().unwrap_or(false),
            selectors: selectors_json(
                selectors.event_selectors(),
                selectors.advanced_event_selectors(),
            ),
            tags: BTreeMap::new(),
        });
    }
    // Tags of the trails homed here (ListTags answers only for the region's own trails).
    let own: Vec<String> = trails
        .iter()
        .filter(|t| t.home_region == clients.region)
        .map(|t| t.arn.clone())
        .collect();
    if !own.is_empty() {
        let tags = ct
            .list_tags()
            .set_resource_id_list(Some(own))
            .send()
            .await
            .map_err(|e| Error::Aws(failure("ListTags", &e)))?;
        for entry in tags.resource_tag_list() {
            let Some(trail) = trails
                .iter_mut()
                .find(|t| Some(t.arn.as_str()) == entry.resource_id())
            else {
                continue;
            };
            trail.tags = entry
                .tags_list()
                .iter()
                .map(|t| {
                    (
                        t.key().to_string(),
                        t.value().unwrap_or_default().to_string(),
                    )
                })
                .collect();
        }
    }
    sort_trails(&mut trails);
    Ok(Trails {
        region: clients.region.clone(),
        trails,
    })
}

/// The CloudTrail trails a region sees: its own and other regions' multi-region and
/// organization trails. One resource per region, whose id is the region, because
/// compliance (CloudTrail.1) is a property of the set: some trail must qualify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trails {
    /// The region, which is also the id.
    pub region: String,
    /// The trails, sorted by ARN.
    pub trails: Vec<Trail>,
}

/// One trail, as far as the CloudTrail controls care.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trail {
    /// Name.
    pub name: String,
    /// ARN.
    pub arn: String,
    /// The region it was created in; only there can it be changed.
    pub home_region: String,
    /// Records every region.
    pub multi_region: bool,
    /// An organization trail (counts, but a member account cannot change it).
    pub organization: bool,
    /// Whether it is logging.
    pub logging: bool,
    /// Log file integrity validation (CloudTrail.4).
    pub log_file_validation: bool,
    /// KMS key encrypting the logs (CloudTrail.2).
    pub kms_key_id: Option<String>,
    /// Destination bucket.
    pub bucket: String,
    /// Records global services (IAM, STS) events.
    pub include_global_service_events: bool,
    /// The event selectors in AWS's shape: `{"EventSelectors": [...]}` or
    /// `{"AdvancedEventSelectors": [...]}`, empty lists and absent fields left out.
    pub selectors: serde_json::Value,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

impl Trail {
    /// Records read and write management events of every source (the selectors of
    /// CloudTrail.1): a basic selector with management events, `ReadWriteType` All and
    /// no excluded sources, or an advanced selector on `eventCategory = Management`
    /// alone.
    pub fn records_all_management_events(&self) -> bool {
        use serde_json::Value;
        let list = |key: &str| {
            self.selectors
                .get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let basic = list("EventSelectors").iter().any(|s| {
            s.get("IncludeManagementEvents").and_then(Value::as_bool) != Some(false)
                && s.get("ReadWriteType")
                    .and_then(Value::as_str)
                    .unwrap_or("All")
                    == "All"
                && s.get("ExcludeManagementEventSources")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty)
        });
        let advanced = list("AdvancedEventSelectors").iter().any(|s| {
            let fields = s
                .get("FieldSelectors")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            fields.len() == 1
                && fields[0].get("Field").and_then(Value::as_str) == Some("eventCategory")
                && fields[0].get("Equals") == Some(&serde_json::json!(["Management"]))
        });
        basic || advanced
    }

    /// Satisfies CloudTrail.1 and CloudTrail.4 (and CloudTrail.2 when `kms_required`).
    pub fn is_compliant(&self, kms_required: bool) -> bool {
        self.multi_region
            && self.logging
            && self.log_file_validation
            && self.records_all_management_events()
            && (!kms_required || self.kms_key_id.is_some())
    }

    /// True when tagged `harden:exempt` = `true`.
    pub fn is_exempt(&self) -> bool {
        self.tags
            .get(EXEMPT_TAG)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }
}

impl Trails {
    /// Whether making the region compliant means creating a trail: no trail qualifies
    /// (setting KMS aside), none homed here could be brought into compliance in place
    /// (or is exempt), and no multi-region trail homed elsewhere could be.
    pub fn needs_new_trail(&self) -> bool {
        !self.trails.iter().any(|t| {
            t.is_compliant(false)
                || (!t.organization && (t.home_region == self.region || t.multi_region))
        })
    }
}

impl Kind for Trails {
    const NAME: &'static str = "cloudtrail:trails";
    const FILTERS: &'static [&'static str] = &[];
    const NARROWING: Narrowing = Narrowing::RegionWide;
    const UNDONE_BY: &'static [KnownEvent] = &[
        KnownEvent::new("StopLogging", "cloudtrail.amazonaws.com"),
        KnownEvent::new("DeleteTrail", "cloudtrail.amazonaws.com"),
        KnownEvent::new("UpdateTrail", "cloudtrail.amazonaws.com"),
        KnownEvent::new("PutEventSelectors", "cloudtrail.amazonaws.com"),
    ];

    fn sample() -> Self {
        Trails {
            region: "us-east-1".into(),
            trails: Vec::new(),
        }
    }

    fn id(&self) -> &str {
        &self.region
    }

    fn tags(&self) -> Option<&BTreeMap<String, String>> {
        // Trails are exempted one by one; the action honours their tags.
        None
    }

    fn template_facts(&self) -> Vec<(&'static str, serde_json::Value)> {
        vec![("needs_new_trail", self.needs_new_trail().into())]
    }

    /// Reads the region's trails: one resource whose id is the region.
    async fn discover(clients: &RegionClients, _filters: &Filters) -> Result<Vec<Self>> {
        Ok(vec![read_trails(clients).await?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trail_gets_its_settings_back_and_a_created_one_is_deleted() {
        let mut was = trail("t", "eu-west-1");
        was.logging = false;
        was.multi_region = false;
        let before = state(&Trails {
            region: "eu-west-1".into(),
            trails: vec![was.clone()],
        });
        let inverse = |operation: &str, input: Value, before: &Value| {
            EnsureTrail.inverse(
                &ApiCall {
                    service: "cloudtrail".into(),
                    operation: operation.into(),
                    input,
                },
                before,
                &json!(null),
            )
        };
        let update = inverse("UpdateTrail", json!({"Name": "t"}), &before).expect("way back");
        assert_eq!(update.input["IsMultiRegionTrail"], json!(false));
        let stop = inverse("StartLogging", json!({"Name": "t"}), &before).expect("way back");
        assert_eq!(stop.operation, "StopLogging");
        let keyed = inverse(
            "UpdateTrail",
            json!({"Name": "t", "KmsKeyId": "k"}),
            &before,
        )
        .expect_err("a key cannot come off");
        assert!(keyed.contains("KMS"), "{keyed}");
        let created = inverse(
            "CreateTrail",
            json!({"Name": "new", "S3BucketName": "b"}),
            &before,
        )
        .expect("way back");
        assert_eq!(
            (created.operation.as_str(), created.removes_created),
            ("DeleteTrail", true)
        );
        assert!(
            inverse(
                "CreateTrail",
                json!({"Name": "t", "S3BucketName": "b"}),
                &before
            )
            .is_err()
        );
    }

    fn trail(name: &str, home: &str) -> Trail {
        Trail {
            name: name.into(),
            arn: format!("arn:aws:cloudtrail:{home}:111122223333:trail/{name}"),
            home_region: home.into(),
            multi_region: true,
            organization: false,
            logging: true,
            log_file_validation: true,
            kms_key_id: None,
            bucket: "b".into(),
            include_global_service_events: true,
            selectors: json!({"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": true}]}),
            tags: BTreeMap::new(),
        }
    }

    fn trails(list: Vec<Trail>) -> Resource {
        Resource::Trails(Trails {
            region: "eu-west-1".into(),
            trails: list,
        })
    }

    fn plan(target: &Resource, args: Value) -> ActionPlan {
        EnsureTrail.plan(target, &args).expect("plans")
    }

    fn operations(planned: &ActionPlan) -> Vec<&str> {
        planned
            .changes
            .iter()
            .map(|c| c.call.operation.as_str())
            .collect()
    }

    fn args() -> Value {
        json!({"trail_name": "harden-trail", "bucket_name": "logs"})
    }

    #[test]
    fn a_compliant_trail_anywhere_is_enough_and_an_organization_trail_counts() {
        assert_eq!(
            plan(&trails(vec![trail("main", "eu-west-1")]), args()),
            ActionPlan::default()
        );
        let mut org = trail("org", "us-east-1");
        org.organization = true;
        assert_eq!(plan(&trails(vec![org]), args()), ActionPlan::default());
    }

    #[test]
    fn a_non_compliant_trail_homed_here_is_fixed_in_place_never_doubled() {
        let mut t = trail("single", "eu-west-1");
        t.multi_region = false;
        t.logging = false;
        t.log_file_validation = false;
        t.selectors = json!({"EventSelectors": [
            {"ReadWriteType": "WriteOnly", "IncludeManagementEvents": true},
            {"ReadWriteType": "All", "IncludeManagementEvents": false,
             "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]}]});
        let planned = plan(&trails(vec![t]), args());
        assert_eq!(
            operations(&planned),
            ["UpdateTrail", "PutEventSelectors", "StartLogging"]
        );
        assert_eq!(
            planned.changes[1].call.input,
            json!({"TrailName": "single", "EventSelectors": [
                {"ReadWriteType": "All", "IncludeManagementEvents": false,
                 "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}]},
                {"ReadWriteType": "All", "IncludeManagementEvents": true}]}),
            "data events are kept"
        );
        for pair in planned.changes.windows(2) {
            assert_eq!(pair[0].after, pair[1].before);
        }
        let Some(projected) = planned.projected else {
            panic!("projects")
        };
        assert_eq!(plan(&projected, args()), ActionPlan::default());
    }

    #[test]
    fn excluded_management_sources_and_missing_kms_are_not_compliant() {
        let mut t = trail("main", "eu-west-1");
        t.selectors = json!({"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": true,
            "ExcludeManagementEventSources": ["kms.amazonaws.com"]}]});
        assert_eq!(
            operations(&plan(&trails(vec![t]), args())),
            ["PutEventSelectors"]
        );
        let with_kms = json!({"trail_name": "harden-trail", "bucket_name": "logs", "kms_key_id": "alias/trail"});
        let planned = plan(&trails(vec![trail("main", "eu-west-1")]), with_kms);
        assert_eq!(operations(&planned), ["UpdateTrail"]);
        assert_eq!(planned.changes[0].call.input["KmsKeyId"], "alias/trail");
    }

    #[test]
    fn with_no_trail_one_is_created_explicitly_and_started() {
        let planned = plan(&trails(Vec::new()), args());
        assert_eq!(
            operations(&planned),
            ["CreateTrail", "PutEventSelectors", "StartLogging"]
        );
        assert_eq!(
            planned.changes[0].call.input,
            json!({"Name": "harden-trail", "S3BucketName": "logs", "IsMultiRegionTrail": true,
                   "EnableLogFileValidation": true, "IncludeGlobalServiceEvents": true})
        );
    }

    #[test]
    fn exempt_and_other_region_trails_block_rather_than_add_a_second_trail() {
        let mut t = trail("mine", "eu-west-1");
        t.logging = false;
        t.tags.insert("harden:exempt".into(), "true".into());
        let planned = plan(&trails(vec![t]), args());
        assert_eq!(planned.blocked.map(|b| b.0), Some(BlockReason::Exempt));
        let mut far = trail("far", "us-east-1");
        far.logging = false;
        let planned = plan(&trails(vec![far]), args());
        assert_eq!(planned.blocked.map(|b| b.0), Some(BlockReason::OtherRegion));
    }
}
