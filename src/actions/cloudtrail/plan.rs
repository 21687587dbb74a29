//! `cloudtrail:ensure-trail`: an exact plan that fixes a trail homed here in place, or
//! creates one, and the inverse of each change.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::actions::{
    Action, ActionInfo, ActionPlan, ArgSpec, Calls, DraftChain, Inverse, Resource, ResourceKind,
    arg, arguments_of, parse_call, typed_args,
};
use crate::plan::{ApiCall, BlockReason, ChangeKind};
use crate::template::KNOWN_AFTER_APPLY;

use super::calls::{TrailCall, TrailCalls};
use super::kind::{Trail, Trails};

/// Brings a trail into compliance, or creates one when there is none to fix.
pub struct EnsureTrail;

static ENSURE: ActionInfo = ActionInfo {
    name: "cloudtrail:ensure-trail",
    description: "make sure some trail is multi-region, logging, records all read and write management events, validates log files (and is KMS-encrypted when kms_key_id is given): fix an existing trail homed in the region in place, create one only when none exists",
    resource_kind: ResourceKind::Trails,
    outputs: &[],
    waits: false,
};

pub(super) fn state(trails: &Trails) -> Value {
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
        let trails: Vec<Trail> = crate::actions::recorded(&before["trails"], "trails")?;
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
pub(super) fn sort_trails(trails: &mut [Trail]) {
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
