//! Reading a region's trails with their status and selectors.

use std::collections::BTreeMap;

use aws_sdk_cloudtrail::types::{AdvancedEventSelector, EventSelector};
use serde_json::{Map, Value, json};

use crate::aws::{Answer, RegionClients};
use crate::error::Result;

use super::kind::{Trail, Trails};
use super::plan::sort_trails;

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
pub(super) async fn read_trails(clients: &RegionClients) -> Result<Trails> {
    let ct = &clients.cloudtrail;
    let out = ct
        .describe_trails()
        .include_shadow_trails(true)
        .send()
        .await
        .or_failure("DescribeTrails")?;
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
        let status = status.or_failure("GetTrailStatus")?;
        let selectors = selectors.or_failure("GetEventSelectors")?;
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
            .or_failure("ListTags")?;
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
