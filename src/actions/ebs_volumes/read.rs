use std::collections::BTreeMap;

use aws_sdk_ec2::types::Filter;

use super::kind::{Artifact, Placed, SOURCE_VOLUME_TAG, Volume, VolumeShape};
use crate::actions::ec2_tags;
use crate::aws::{Answer, RegionClients};
use crate::error::Result;

const MAX_PAGE: i32 = 500;

/// Lists volumes (server-side filters) with the snapshots, copies and replacement
/// volumes harden made for them: three paginated calls whatever their number.
pub(in crate::actions) async fn list_volumes(
    clients: &RegionClients,
    filters: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<Volume>> {
    let mut volumes = describe_volumes(clients, filters).await?;
    // Artifacts by the volumes' ids when reading a few; by the tag's presence otherwise.
    let by_id = filters.contains_key("volume-id");
    find_artifacts(clients, &mut volumes, by_id).await?;
    Ok(volumes)
}

/// An EC2 list filter.
pub(in crate::actions) fn filter(name: &str, values: Vec<String>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values))
        .build()
}

/// Lists volumes (server-side filters), without what harden made for them: one
/// paginated call.
pub(in crate::actions) async fn describe_volumes(
    clients: &RegionClients,
    filters: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<Volume>> {
    let ec2 = &clients.ec2;
    let mut request = ec2.describe_volumes().max_results(MAX_PAGE);
    for (name, values) in filters {
        request = request.filters(filter(name, values.clone()));
    }
    let mut volumes = Vec::new();
    let mut pages = request.into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.or_failure("DescribeVolumes")?;
        for v in page.volumes() {
            let Some(id) = v.volume_id() else { continue };
            volumes.push(Volume {
                id: id.to_string(),
                availability_zone: v.availability_zone().unwrap_or_default().to_string(),
                size: v.size().unwrap_or_default(),
                volume_type: v
                    .volume_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                iops: v.iops(),
                throughput: v.throughput(),
                encrypted: v.encrypted().unwrap_or(false),
                state: v
                    .state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                attached_to: v
                    .attachments()
                    .iter()
                    .filter_map(|a| a.instance_id().map(str::to_string))
                    .collect(),
                tags: ec2_tags(v.tags()),
                snapshot: None,
                copy: None,
                replacement: None,
                strays: Vec::new(),
                stray_volumes: Vec::new(),
            });
        }
    }
    Ok(volumes)
}

/// Finds the snapshot, copy and replacement harden made for each of `volumes` (by
/// their tags): two paginated calls, filtered by the volumes' ids when `by_id`, else
/// by the tag's presence (cheaper than hundreds of ids when listing a region).
pub(in crate::actions) async fn find_artifacts(
    clients: &RegionClients,
    volumes: &mut [Volume],
    by_id: bool,
) -> Result<()> {
    let ec2 = &clients.ec2;
    if volumes.is_empty() {
        return Ok(());
    }
    let sources: Vec<String> = volumes.iter().map(|v| v.id.clone()).collect();
    let source_filter = if by_id {
        filter(&format!("tag:{SOURCE_VOLUME_TAG}"), sources)
    } else {
        filter("tag-key", vec![SOURCE_VOLUME_TAG.to_string()])
    };
    let mut snapshots: BTreeMap<String, (Option<Artifact>, Option<Artifact>)> = BTreeMap::new();
    let mut strays: BTreeMap<String, Vec<Artifact>> = BTreeMap::new();
    let mut pages = ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(source_filter.clone())
        .max_results(1000)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.or_failure("DescribeSnapshots")?;
        for s in page.snapshots() {
            let tags = ec2_tags(s.tags());
            let Some(source) = tags.get(SOURCE_VOLUME_TAG) else {
                continue;
            };
            let artifact = Artifact {
                id: s.snapshot_id().unwrap_or_default().to_string(),
                state: s
                    .state()
                    .map(|st| st.as_str().to_string())
                    .unwrap_or_default(),
                encrypted: s.encrypted().unwrap_or(false),
                shape: None,
                placed: None,
            };
            let entry = snapshots.entry(source.clone()).or_default();
            let slot = if tags.get("harden:stage").map(String::as_str) == Some("copy") {
                &mut entry.1
            } else {
                &mut entry.0
            };
            // Two of one stage: keep a completed one (the lowest id of those), the
            // other is a stray the plan deletes.
            match slot.take() {
                None => *slot = Some(artifact),
                Some(kept) => {
                    let rank = |a: &Artifact| (a.state != "completed", a.id.clone());
                    let (keep, stray) = if rank(&artifact) < rank(&kept) {
                        (artifact, kept)
                    } else {
                        (kept, artifact)
                    };
                    *slot = Some(keep);
                    strays.entry(source.clone()).or_default().push(stray);
                }
            }
        }
    }
    let mut replacements: BTreeMap<String, Vec<Artifact>> = BTreeMap::new();
    let mut pages = ec2
        .describe_volumes()
        .filters(source_filter)
        .max_results(MAX_PAGE)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.or_failure("DescribeVolumes")?;
        for v in page.volumes() {
            let tags = ec2_tags(v.tags());
            let Some(source) = tags.get(SOURCE_VOLUME_TAG) else {
                continue;
            };
            replacements
                .entry(source.clone())
                .or_default()
                .push(Artifact {
                    id: v.volume_id().unwrap_or_default().to_string(),
                    state: v
                        .state()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    encrypted: v.encrypted().unwrap_or(false),
                    shape: Some(Box::new(VolumeShape {
                        volume_type: v
                            .volume_type()
                            .map(|t| t.as_str().to_string())
                            .unwrap_or_default(),
                        size: v.size().unwrap_or_default(),
                        iops: v.iops(),
                        throughput: v.throughput(),
                        tags,
                    })),
                    placed: placed(v),
                });
        }
    }
    for volume in volumes.iter_mut() {
        if let Some((snapshot, copy)) = snapshots.remove(&volume.id) {
            volume.snapshot = snapshot;
            volume.copy = copy;
        }
        // Two replacements of one volume: keep the one the original names, else the
        // one in use, else the lowest id; the others block the plan (artifact_problem).
        let mut found = replacements.remove(&volume.id).unwrap_or_default();
        let named = volume.replaced_by().map(str::to_string);
        found.sort_by_key(|a| {
            (
                Some(a.id.as_str()) != named.as_deref(),
                a.state != "in-use",
                a.id.clone(),
            )
        });
        let mut found = found.into_iter();
        volume.replacement = found.next();
        volume.stray_volumes = found.collect();
        volume.strays = strays.remove(&volume.id).unwrap_or_default();
        volume.strays.sort_by(|a, b| a.id.cmp(&b.id));
    }
    Ok(())
}

/// Since when a replacement has been in place: attached (its attachment's time), or
/// created (one that replaces an unattached volume), and how long that is now.
pub(super) fn placed(volume: &aws_sdk_ec2::types::Volume) -> Option<Placed> {
    let time = volume
        .attachments()
        .iter()
        .find_map(|a| a.attach_time())
        .or(volume.create_time())?;
    let at = jiff::Timestamp::new(time.secs(), i32::try_from(time.subsec_nanos()).ok()?).ok()?;
    let age = jiff::Timestamp::now().duration_since(at);
    Some(Placed {
        at,
        age: std::time::Duration::try_from(age).unwrap_or_default(),
    })
}
