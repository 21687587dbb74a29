//! Computing a plan. Each account-region is planned on its own, concurrently under a
//! bound, with its account's clients: discovery first (read-only), then the runbooks in
//! order on one inventory that each planned change is projected onto, so a later step
//! or runbook sees the state the earlier ones leave. That is what makes runbooks that
//! touch the same resources compose. Nothing is shared between accounts.

use std::collections::{BTreeMap, BTreeSet};

use futures::stream::{self, StreamExt};
use serde_json::{Map, Value, json};

use crate::accounts::{Scope, Session, Unreachable};
use crate::actions;
use crate::actions::{Resource, ResourceKind};
use crate::aws::Aws;
use crate::discovery::{self, Query};
use crate::error::{Error, Problems, Result};
use crate::inventory::Narrowing;
use crate::plan::{
    BlockReason, Blocked, Change, PLAN_FORMAT_VERSION, Plan, PlannedAccount, PlannedRunbook,
    ResourceRef, UnreachableAccount,
};
use crate::runbook::LoadedRunbook;
use crate::runbook::params::ResolvedParams;
use crate::template::{KNOWN_AFTER_APPLY, Renderer};
use crate::trigger::{Focus, Narrowed};

/// What to plan.
#[derive(Debug, Clone)]
pub struct PlanRequest<'a> {
    /// Validated runbooks in apply order.
    pub runbooks: &'a [LoadedRunbook],
    /// Their parameter values.
    pub params: &'a ResolvedParams,
    /// Who is planning (the caller's ARN).
    pub principal: &'a str,
    /// Accounts of the run that could not be reached, listed in the plan.
    pub unreachable: &'a [Unreachable],
    /// Stop at the first discovery failure instead of leaving that runbook out of that
    /// account-region's plan.
    pub fail_fast: bool,
    /// Account-regions discovered and planned at once.
    pub concurrency: usize,
    /// Told of each account-region planned.
    pub progress: &'a dyn crate::progress::Progress,
    /// Plan only what one event concerns (`harden respond`, `harden watch`): the
    /// runbooks it triggers, their discovery narrowed to the resources it names.
    pub focus: Option<&'a Focus>,
    /// Until when a throttled discovery read is sent again (`aws::persist`).
    pub deadline: std::time::Instant,
}

/// Where one region plan is made: an account and one of its regions.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    /// The account.
    pub scope: &'a Scope,
    /// The region.
    pub region: &'a str,
}

/// A runbook's parameter values for templates over `scope` (account, region,
/// partition): what `--param` gave is data, kept as typed even if it holds `{{...}}`;
/// a default may be a template over the scope and is rendered here.
pub fn parameter_values(
    renderer: &Renderer,
    runbook: &LoadedRunbook,
    params: &ResolvedParams,
    scope: &Value,
) -> Result<Map<String, Value>> {
    let mut values = Map::new();
    for (name, value) in params.get(runbook.id()).into_iter().flatten() {
        if params.is_given(runbook.id(), name) {
            values.insert(name.clone(), value.clone());
            continue;
        }
        let rendered = renderer.render_value(value, scope).map_err(|m| {
            let location = runbook
                .runbook
                .parameters
                .get(name)
                .map(|spec| &spec.kind.referenced);
            let mut problems = Problems::default();
            problems.push(
                location.map(|l| runbook.at(l)),
                format!(
                    "parameter {name}: {m} (a parameter may use account_id, region and partition)"
                ),
            );
            Error::Invalid(problems)
        })?;
        values.insert(name.clone(), rendered);
    }
    Ok(values)
}

/// The template context of a runbook in a region, before `item` and `steps`. Parameter
/// values that are templates (defaults such as `harden-flowlogs-{{account_id}}-{{region}}`)
/// are rendered here, against the account, region and partition only.
fn base_context(
    renderer: &Renderer,
    runbook: &LoadedRunbook,
    request: &PlanRequest<'_>,
    place: Place<'_>,
) -> Result<Value> {
    let (account, region) = (place.scope, place.region);
    let scope = json!({
        "account_id": account.identity.account_id,
        "region": region,
        "partition": account.identity.partition,
        // The account's first region: where account-wide things (a multi-region
        // trail, global resource recording) are set up when a runbook does not say.
        "home_region": account.regions.first().map(String::as_str).unwrap_or(region),
        "regions": account.regions,
    });
    let values = parameter_values(renderer, runbook, request.params, &scope)?;
    let mut context = scope;
    // Every render serializes the whole context: only runbooks that use the events
    // carry them (the alerting runbook's rule).
    if runbook_mentions(runbook, "triggers") {
        context["triggers"] = trigger_context(request.runbooks, runbook);
    }
    context["params"] = Value::Object(values);
    context["runbook"] = json!({"id": runbook.id()});
    Ok(context)
}

/// The CloudTrail events templates see as `triggers` (what the alerting runbook's rule
/// listens for): those the runbooks selected with `runbook` declare, with its own; or,
/// when none of the others declares any, every event harden knows.
pub fn trigger_context(runbooks: &[LoadedRunbook], runbook: &LoadedRunbook) -> Value {
    let others_declare = runbooks
        .iter()
        .any(|r| r.id() != runbook.id() && !r.runbook.triggers.is_empty());
    let events = if others_declare {
        crate::trigger::events_of(runbooks)
    } else {
        crate::trigger::known_events()
    };
    Value::Array(
        events
            .iter()
            .map(|e| json!({"name": e.name, "source": e.source}))
            .collect(),
    )
}

fn render_error(
    runbook: &LoadedRunbook,
    location: &serde_saphyr::Location,
    message: String,
) -> Error {
    let mut problems = Problems::default();
    problems.push(Some(runbook.at(location)), message);
    Error::Invalid(problems)
}

/// Renders a discover entry's filters into a query.
fn query_for(
    renderer: &Renderer,
    runbook: &LoadedRunbook,
    name: &str,
    context: &Value,
) -> Result<Query> {
    let spec = &runbook.runbook.discover[name];
    let kind = ResourceKind::from_name(&spec.resource.value).ok_or_else(|| {
        render_error(
            runbook,
            &spec.resource.referenced,
            format!("unknown resource kind {}", spec.resource.value),
        )
    })?;
    let mut filters = BTreeMap::new();
    for (filter, value) in &spec.filters {
        let rendered = renderer.render_value(&value.value, context).map_err(|m| {
            render_error(
                runbook,
                &value.referenced,
                format!("discover.{name}.filters.{filter}: {m}"),
            )
        })?;
        filters.insert(
            filter.clone(),
            string_list(&rendered).map_err(|m| {
                render_error(
                    runbook,
                    &value.referenced,
                    format!("discover.{name}.filters.{filter}: {m}"),
                )
            })?,
        );
    }
    Ok(Query { kind, filters })
}

fn string_list(value: &Value) -> std::result::Result<Vec<String>, String> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(format!("expected strings, found {other}")),
            })
            .collect(),
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Null => Ok(Vec::new()),
        other => Err(format!(
            "expected a string or a list of strings, found {other}"
        )),
    }
}

/// Plans every runbook in every region of every account reached.
pub async fn plan(sessions: &[Session], request: PlanRequest<'_>) -> Result<Plan> {
    let created_at = jiff::Timestamp::now();
    let places: Vec<(&Session, &str)> = sessions
        .iter()
        .flat_map(|s| s.scope.regions.iter().map(move |r| (s, r.as_str())))
        .collect();
    let request = &request;
    request
        .progress
        .start("account-regions planned", places.len());
    // The futures are made first, so the stream holds no closure: one over references
    // is not provably `Send` for every lifetime, which a spawned caller (`harden
    // watch`) needs (rust-lang/rust issue 100013).
    let planning: Vec<_> = places
        .into_iter()
        .map(|(session, region)| async move {
            let planned = plan_region(
                &session.aws,
                request,
                Place {
                    scope: &session.scope,
                    region,
                },
            )
            .await;
            request.progress.advance();
            planned
        })
        .collect();
    let planned: Vec<Result<RegionPlan>> = stream::iter(planning)
        .buffered(request.concurrency.max(1))
        .collect()
        .await;
    request.progress.finish();
    let planned = planned.into_iter().collect::<Result<Vec<_>>>()?;
    let scopes: Vec<&Scope> = sessions.iter().map(|s| &s.scope).collect();
    Ok(assemble(request, &scopes, created_at, planned))
}

/// Joins the account-regions' plans (in the order of `scopes` and their regions) into
/// one plan.
pub fn assemble(
    request: &PlanRequest<'_>,
    scopes: &[&Scope],
    created_at: jiff::Timestamp,
    per_place: Vec<RegionPlan>,
) -> Plan {
    let mut changes = Vec::new();
    let mut blocked = Vec::new();
    let mut not_planned = Vec::new();
    let mut compliant: BTreeMap<String, BTreeMap<String, BTreeMap<String, usize>>> =
        BTreeMap::new();
    let places = scopes
        .iter()
        .flat_map(|s| s.regions.iter().map(move |r| (&s.target.id, r)));
    for ((account, region), region_plan) in places.zip(per_place) {
        changes.extend(region_plan.changes);
        blocked.extend(region_plan.blocked);
        not_planned.extend(region_plan.not_planned);
        for (runbook, count) in region_plan.compliant {
            compliant
                .entry(runbook)
                .or_default()
                .entry(account.clone())
                .or_default()
                .insert(region.clone(), count);
        }
    }
    Plan {
        format_version: PLAN_FORMAT_VERSION,
        harden_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at,
        principal: request.principal.to_string(),
        accounts: scopes
            .iter()
            .map(|s| PlannedAccount {
                // What was used, not what was asked: the role assumed, the regions planned.
                target: crate::accounts::Target {
                    regions: s.regions.clone(),
                    role: s.role.clone(),
                    ..s.target.clone()
                },
                principal: s.identity.arn.clone(),
            })
            .collect(),
        unreachable: request
            .unreachable
            .iter()
            .map(|u| UnreachableAccount {
                id: u.target.id.clone(),
                name: u.target.name.clone(),
                reason: u.reason.clone(),
            })
            .collect(),
        runbooks: request
            .runbooks
            .iter()
            .filter(|r| request.focus.is_none_or(|f| f.includes(r.id())))
            .map(|r| PlannedRunbook {
                id: r.id().to_string(),
                title: r.runbook.title.clone(),
                path: r.path.display().to_string(),
                digest: r.digest.clone(),
                controls: r.runbook.controls.clone(),
                steps: r.runbook.steps.iter().map(|s| s.id.value.clone()).collect(),
                requires: r.runbook.requires.iter().map(|n| n.value.clone()).collect(),
                parameters: request.params.get(r.id()).cloned().unwrap_or_default(),
                given_parameters: request.params.given_in(r.id()),
                compliant: compliant.remove(r.id()).unwrap_or_default(),
            })
            .collect(),
        changes,
        blocked,
        not_planned,
        unprobed_services: Vec::new(),
    }
}

/// The plan of one region.
#[derive(Debug, Default)]
pub struct RegionPlan {
    /// Changes in apply order.
    pub changes: Vec<Change>,
    /// Blocked changes.
    pub blocked: Vec<Blocked>,
    /// Compliant resources per runbook.
    pub compliant: BTreeMap<String, usize>,
    /// Runbooks left out of this region's plan, with why.
    pub not_planned: Vec<crate::plan::NotPlanned>,
}

async fn plan_region(aws: &Aws, request: &PlanRequest<'_>, place: Place<'_>) -> Result<RegionPlan> {
    let renderer = Renderer::new();
    let region = place.region;
    let clients = aws.region(region);
    // Render every query first so discovery can run once, concurrently.
    let mut queries: BTreeMap<(String, String), Query> = BTreeMap::new();
    for runbook in request.runbooks {
        if request.focus.is_some_and(|f| !f.includes(runbook.id())) {
            continue;
        }
        let context = base_context(&renderer, runbook, request, place)?;
        for name in runbook.runbook.discover.keys() {
            let query = query_for(&renderer, runbook, name, &context)?;
            let Some(query) = narrowed(query, request.focus, runbook.id(), name) else {
                continue;
            };
            queries.insert((runbook.id().to_string(), name.clone()), query);
        }
    }
    let all: Vec<Query> = queries.values().cloned().collect();
    let found = discovery::run_all(&clients, &all, request.deadline).await;
    // A runbook whose discovery failed here is left out of this region's plan, with the
    // reason, and so is every runbook requiring it; the rest is planned.
    let mut left_out: BTreeMap<String, String> = BTreeMap::new();
    for ((runbook, _), query) in &queries {
        if let Some(Err(error)) = found.get(query) {
            if request.fail_fast {
                return Err(Error::DiscoveryFailed {
                    runbook: runbook.clone(),
                    account: place.scope.target.label(),
                    region: region.to_string(),
                    reason: error.to_string(),
                });
            }
            left_out
                .entry(runbook.clone())
                .or_insert_with(|| format!("discovery failed: {error}"));
        }
    }
    // Runbooks are in order, and one can only require those before it.
    for runbook in request.runbooks {
        if left_out.contains_key(runbook.id()) {
            continue;
        }
        if let Some(needed) = runbook
            .runbook
            .requires
            .iter()
            .find(|n| left_out.contains_key(&n.value))
        {
            left_out.insert(
                runbook.id().to_string(),
                format!(
                    "requires {}, which could not be planned in {region}",
                    needed.value
                ),
            );
        }
    }
    let mut inventory = RegionInventory::default();
    let mut members: BTreeMap<(String, String), Vec<(ResourceKind, String)>> = BTreeMap::new();
    for (key, query) in &queries {
        if left_out.contains_key(&key.0) {
            continue;
        }
        let resources = match found.get(query) {
            Some(Ok(resources)) => resources.clone(),
            _ => Vec::new(),
        };
        members.insert(
            key.clone(),
            resources
                .iter()
                .map(|r| (r.kind(), r.id().to_string()))
                .collect(),
        );
        inventory.merge_discovered(resources);
    }
    plan_on_inventory(
        request,
        place,
        &mut inventory,
        &members,
        &renderer,
        &left_out,
    )
}

/// The query of discover entry `name` of `runbook` as `focus` narrows it: `None` when
/// the entry is not to be read at all (the event names none of its resources).
fn narrowed(mut query: Query, focus: Option<&Focus>, runbook: &str, name: &str) -> Option<Query> {
    let Some(focus) = focus else {
        return Some(query);
    };
    match (query.kind.narrowing(), focus.entry(runbook, name)) {
        // Prerequisites looked up by name are read whenever their runbook is.
        (Narrowing::Named, _) | (_, Some(Narrowed::Whole)) => Some(query),
        (Narrowing::ById(filter), Some(Narrowed::Ids(ids))) => {
            // Keep a runbook's own filter on ids: only ids both name are read.
            let ids: Vec<String> = match query.filters.get(filter) {
                Some(own) => ids.iter().filter(|id| own.contains(id)).cloned().collect(),
                None => ids.iter().cloned().collect(),
            };
            if ids.is_empty() {
                return None;
            }
            query.filters.insert(filter.to_string(), ids);
            Some(query)
        }
        (Narrowing::RegionWide, Some(Narrowed::Ids(_))) | (_, None) => None,
    }
}

/// Plans every runbook of a region on `inventory`, projecting each change onto it,
/// except those in `left_out` (runbook id to why), which are listed as not planned.
/// Pure: no AWS call, so unit tests drive it directly.
pub fn plan_on_inventory(
    request: &PlanRequest<'_>,
    place: Place<'_>,
    inventory: &mut RegionInventory,
    members: &BTreeMap<(String, String), Vec<(ResourceKind, String)>>,
    renderer: &Renderer,
    left_out: &BTreeMap<String, String>,
) -> Result<RegionPlan> {
    let mut out = RegionPlan::default();
    let (account, region) = (place.scope.target.id.as_str(), place.region);
    // Resources an earlier runbook left alone to protect their users, with why.
    let mut protected: BTreeMap<String, (BlockReason, String)> = BTreeMap::new();
    for runbook in request.runbooks {
        let rid = runbook.id().to_string();
        if request.focus.is_some_and(|f| !f.includes(&rid)) {
            continue;
        }
        if let Some(reason) = left_out.get(&rid) {
            out.not_planned.push(crate::plan::NotPlanned {
                runbook: rid,
                account_id: account.to_string(),
                region: region.to_string(),
                reason: reason.clone(),
            });
            continue;
        }
        let mut context = base_context(renderer, runbook, request, place)?;
        // Every render serializes the whole context: carry the discovered lists only for
        // runbooks whose templates use them, or planning grows with the square of the
        // number of resources.
        let uses_discovered = runbook_mentions(runbook, "discovered");
        let mut discovered = Map::new();
        let mut excluded: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (name, spec) in &runbook.runbook.discover {
            let list = members
                .get(&(rid.clone(), name.clone()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            if uses_discovered {
                discovered.insert(
                    name.clone(),
                    Value::Array(
                        list.iter()
                            .filter_map(|(k, id)| inventory.get(*k, id))
                            .map(|r| r.to_template_value())
                            .collect(),
                    ),
                );
            }
            if let Some(exclude) = &spec.exclude_ids {
                let rendered = renderer
                    .render_value(&exclude.value, &context)
                    .map_err(|m| {
                        render_error(
                            runbook,
                            &exclude.referenced,
                            format!("discover.{name}.exclude_ids: {m}"),
                        )
                    })?;
                let ids = string_list(&rendered).map_err(|m| {
                    render_error(
                        runbook,
                        &exclude.referenced,
                        format!("discover.{name}.exclude_ids: {m}"),
                    )
                })?;
                excluded.insert(name.clone(), ids.into_iter().collect());
            }
        }
        context["discovered"] = Value::Object(discovered);
        context["steps"] = json!({});
        let mut targets: BTreeSet<(ResourceKind, String)> = BTreeSet::new();
        let mut touched: BTreeSet<(ResourceKind, String)> = BTreeSet::new();
        for step in &runbook.runbook.steps {
            let sid = step.id.value.clone();
            let action = actions::find(&step.action.value).ok_or_else(|| {
                render_error(
                    runbook,
                    &step.action.referenced,
                    format!("unknown action {}", step.action.value),
                )
            })?;
            let Some(for_each) = &step.for_each else {
                return Err(render_error(
                    runbook,
                    &step.action.referenced,
                    format!("step {sid}: for_each is required"),
                ));
            };
            let items = members
                .get(&(rid.clone(), for_each.value.clone()))
                .cloned()
                .unwrap_or_default();
            let no_exclusions = BTreeSet::new();
            let step_excluded = excluded.get(&for_each.value).unwrap_or(&no_exclusions);
            for (kind, id) in items {
                // The projected state: what earlier steps and runbooks will leave.
                let Some(target) = inventory.get(kind, &id) else {
                    continue;
                };
                context["item"] = target.to_template_value();
                if let Some(condition) = &step.condition {
                    let keep = renderer
                        .render_condition(&condition.value, &context)
                        .map_err(|m| {
                            render_error(
                                runbook,
                                &condition.referenced,
                                format!("step {sid} when: {m}"),
                            )
                        })?;
                    if !keep {
                        continue;
                    }
                }
                // Only what a step looked at can be called compliant.
                targets.insert((kind, id.clone()));
                let mut args = Map::new();
                for (name, value) in &step.args {
                    let rendered = renderer.render_value(&value.value, &context).map_err(|m| {
                        render_error(
                            runbook,
                            &value.referenced,
                            format!("step {sid} argument {name}: {m}"),
                        )
                    })?;
                    args.insert(name.clone(), rendered);
                }
                let planned = action.plan(&target, &Value::Object(args)).map_err(|m| {
                    render_error(
                        runbook,
                        &step.action.referenced,
                        format!("step {sid} on {id}: {m}"),
                    )
                })?;
                if planned.changes.is_empty() && planned.blocked.is_none() {
                    continue;
                }
                touched.insert((kind, id.clone()));
                let resource = ResourceRef {
                    kind,
                    id: id.clone(),
                    tags: target.tags().cloned().unwrap_or_default(),
                };
                let block = |reason: BlockReason, detail: String| Blocked {
                    runbook: rid.clone(),
                    account_id: account.to_string(),
                    region: region.to_string(),
                    step: sid.clone(),
                    resource: resource.clone(),
                    reason,
                    detail,
                };
                if target.is_exempt() {
                    push_block(
                        &mut out.blocked,
                        block(
                            BlockReason::Exempt,
                            format!("tagged {}=true", crate::inventory::EXEMPT_TAG),
                        ),
                    );
                    continue;
                }
                if step_excluded.contains(&id) {
                    push_block(
                        &mut out.blocked,
                        block(
                            BlockReason::Excluded,
                            format!("listed in discover.{}.exclude_ids", for_each.value),
                        ),
                    );
                    continue;
                }
                if let Some((reason, detail)) = protected.get(&id) {
                    push_block(&mut out.blocked, block(reason.clone(), detail.clone()));
                    continue;
                }
                if let Some((reason, detail)) = planned.blocked {
                    if reason.protects_resource() {
                        protected.insert(
                            id.clone(),
                            (
                                reason.clone(),
                                format!("runbook {rid} leaves it alone: {detail}"),
                            ),
                        );
                    }
                    push_block(&mut out.blocked, block(reason, detail));
                    continue;
                }
                for (n, draft) in planned.changes.into_iter().enumerate() {
                    out.changes.push(Change {
                        id: format!("{account}/{rid}/{region}/{sid}/{id}#{}", n + 1),
                        runbook: rid.clone(),
                        account_id: account.to_string(),
                        region: region.to_string(),
                        step: sid.clone(),
                        action: action.info().name.to_string(),
                        resource: resource.clone(),
                        kind: draft.kind,
                        summary: draft.summary,
                        before: draft.before,
                        after: draft.after,
                        call: draft.call,
                        on_failure: step.on_failure,
                        wait_timeout_seconds: step.wait.as_ref().map(|w| w.timeout_seconds),
                        probe: None,
                    });
                }
                if let Some(projected) = planned.projected {
                    inventory.put(projected);
                }
            }
            let outputs: Map<String, Value> = step
                .outputs
                .iter()
                .map(|o| (o.value.clone(), Value::String(KNOWN_AFTER_APPLY.into())))
                .collect();
            context["steps"][&sid] = json!({ "outputs": outputs });
        }
        out.compliant
            .insert(rid, targets.difference(&touched).count());
    }
    Ok(out)
}

/// Whether any template of the runbook (its steps' arguments and conditions, its
/// discovery filters and exclusions) mentions `word`.
fn runbook_mentions(runbook: &LoadedRunbook, word: &str) -> bool {
    fn in_value(value: &Value, word: &str) -> bool {
        match value {
            Value::String(s) => s.contains(word),
            Value::Array(items) => items.iter().any(|i| in_value(i, word)),
            Value::Object(map) => map.values().any(|i| in_value(i, word)),
            _ => false,
        }
    }
    let in_steps = runbook.runbook.steps.iter().any(|step| {
        step.args.values().any(|a| in_value(&a.value, word))
            || step
                .condition
                .as_ref()
                .is_some_and(|c| c.value.contains(word))
    });
    in_steps
        || runbook.runbook.discover.values().any(|d| {
            d.filters.values().any(|f| in_value(&f.value, word))
                || d.exclude_ids
                    .as_ref()
                    .is_some_and(|e| in_value(&e.value, word))
        })
}

/// A resource blocked by several steps of one runbook is listed once.
fn push_block(blocked: &mut Vec<Blocked>, entry: Blocked) {
    if !blocked.iter().any(|b| {
        b.runbook == entry.runbook
            && b.account_id == entry.account_id
            && b.region == entry.region
            && b.resource == entry.resource
    }) {
        blocked.push(entry);
    }
}

/// Probes every change of a plan with `DryRun=true`, concurrently under a bound, each
/// with its account's clients. Nothing is changed.
pub async fn probe(sessions: &[Session], plan: &mut Plan, concurrency: usize) {
    let probes: Vec<_> = stream::iter(plan.changes.iter().map(|change| {
        let session = sessions
            .iter()
            .find(|s| s.scope.target.id == change.account_id);
        async move {
            let Some(session) = session else {
                return crate::plan::Probe::Failed {
                    code: "AccountUnreachable".into(),
                    message: format!("account {} was not reached", change.account_id),
                };
            };
            let clients = session.aws.region(&change.region);
            // Only a call whose input is all known can be probed.
            if change.call.input.to_string().contains(KNOWN_AFTER_APPLY) {
                return crate::plan::Probe::NotProbed {
                    reason: "its input is known only after an earlier change".into(),
                };
            }
            match actions::find(&change.action) {
                Some(action) => action.calls().probe(&clients, change).await,
                None => crate::plan::Probe::Failed {
                    code: "UnknownAction".into(),
                    message: format!("action {} is not in this harden", change.action),
                },
            }
        }
    }))
    .buffered(concurrency.max(1))
    .collect()
    .await;
    for (change, result) in plan.changes.iter_mut().zip(probes) {
        change.probe = Some(result);
    }
    // Services without a dry-run (S3): their changes are listed, not probed.
    let mut unprobed: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| matches!(c.probe, Some(crate::plan::Probe::NotSupported)))
        .map(|c| c.call.service.clone())
        .collect();
    unprobed.sort();
    unprobed.dedup();
    plan.unprobed_services = unprobed;
}

/// What harden knows of one region of one account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegionInventory {
    /// Resources the discoveries asked for, by kind and id.
    resources: BTreeMap<(ResourceKind, String), Resource>,
}

impl RegionInventory {
    /// The resource with this kind and id.
    pub fn get(&self, kind: ResourceKind, id: &str) -> Option<Resource> {
        self.resources.get(&(kind, id.to_string())).cloned()
    }

    /// Replaces a resource with its projected state.
    pub fn put(&mut self, resource: Resource) {
        self.resources
            .insert((resource.kind(), resource.id().to_string()), resource);
    }

    /// Adds resources read by discovery, keeping any projected state already there
    /// (a later runbook must see what earlier runbooks will leave).
    pub fn merge_discovered(&mut self, resources: Vec<Resource>) {
        for resource in resources {
            self.resources
                .entry((resource.kind(), resource.id().to_string()))
                .or_insert(resource);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::inventory::{Peer, Rule, SecurityGroup, sort_rules};
    use crate::runbook::load::parse_runbook;
    use crate::runbook::params;
    use crate::validate::validate;

    fn shipped() -> Vec<LoadedRunbook> {
        let read = |name: &str| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("runbooks")
                .join(name);
            let text = std::fs::read_to_string(&path).expect("shipped runbook");
            parse_runbook(Path::new(&format!("runbooks/{name}")), &text).expect("parses")
        };
        // Given in the "wrong" order on purpose: `after:` decides.
        validate(vec![
            read("restrict-sg-egress.yaml"),
            read("close-default-security-groups.yaml"),
        ])
        .expect("valid")
    }

    fn group(id: &str, name: &str, egress: Vec<Rule>, interfaces: usize) -> SecurityGroup {
        let mut egress = egress;
        sort_rules(&mut egress);
        SecurityGroup {
            id: id.into(),
            name: name.into(),
            description: name.into(),
            vpc_id: Some("vpc-1".into()),
            owner_id: "123456789012".into(),
            tags: BTreeMap::new(),
            interface_count: interfaces,
            ingress: Vec::new(),
            egress,
        }
    }

    fn open(id: &str) -> Rule {
        Rule::new(
            Some(id.into()),
            "-1",
            None,
            None,
            Peer::Cidr("0.0.0.0/0".into()),
            None,
        )
    }

    fn inventory() -> RegionInventory {
        let mut inventory = RegionInventory::default();
        for g in [
            group("sg-default", "default", vec![open("sgr-d")], 0),
            group("sg-default-used", "default", vec![open("sgr-u")], 3),
            group("sg-web", "web", vec![open("sgr-w")], 1),
        ] {
            inventory.put(Resource::SecurityGroup(g));
        }
        inventory
    }

    fn members() -> BTreeMap<(String, String), Vec<(ResourceKind, String)>> {
        let sg = |ids: &[&str]| {
            ids.iter()
                .map(|id| (ResourceKind::SecurityGroup, id.to_string()))
                .collect::<Vec<_>>()
        };
        BTreeMap::from([
            (
                (
                    "close-default-security-groups".into(),
                    "default_groups".into(),
                ),
                sg(&["sg-default", "sg-default-used"]),
            ),
            (
                ("restrict-sg-egress".into(), "groups".into()),
                sg(&["sg-default", "sg-default-used", "sg-web"]),
            ),
        ])
    }

    fn scope() -> Scope {
        Scope::own(
            crate::aws::CallerIdentity {
                account_id: "123456789012".into(),
                arn: "arn:aws:iam::123456789012:user/t".into(),
                partition: "aws".into(),
            },
            vec!["us-east-1".to_string()],
        )
    }

    fn request<'a>(runbooks: &'a [LoadedRunbook], params: &'a ResolvedParams) -> PlanRequest<'a> {
        PlanRequest {
            runbooks,
            params,
            principal: "arn:aws:iam::123456789012:user/t",
            unreachable: &[],
            fail_fast: false,
            concurrency: 1,
            progress: &crate::progress::Silent,
            focus: None,
            deadline: std::time::Instant::now() + std::time::Duration::from_secs(60),
        }
    }

    fn plan_once(inventory: &mut RegionInventory) -> RegionPlan {
        let runbooks = shipped();
        let params = params::resolve(&runbooks, &[]).expect("defaults");
        let scope = scope();
        let request = request(&runbooks, &params);
        plan_on_inventory(
            &request,
            Place {
                scope: &scope,
                region: "us-east-1",
            },
            inventory,
            &members(),
            &Renderer::new(),
            &BTreeMap::new(),
        )
        .expect("plans")
    }

    #[test]
    fn a_param_given_on_the_command_line_is_data_not_a_template() {
        let runbooks = shipped();
        let given: crate::runbook::params::Assignment =
            "restrict-sg-egress.exclude_group_ids=[\"{{region}}\"]"
                .parse()
                .expect("an assignment");
        let params = params::resolve(&runbooks, &[given]).expect("resolves");
        let scope = scope();
        let request = request(&runbooks, &params);
        let place = Place {
            scope: &scope,
            region: "us-east-1",
        };
        let renderer = Renderer::new();
        let egress = runbooks
            .iter()
            .find(|r| r.id() == "restrict-sg-egress")
            .expect("shipped");
        let context = base_context(&renderer, egress, &request, place).expect("renders");
        assert_eq!(
            context["params"]["exclude_group_ids"],
            json!(["{{region}}"])
        );
    }

    #[test]
    fn runbooks_compose_on_shared_default_groups_and_converge() {
        let mut inventory = inventory();
        let plan = plan_once(&mut inventory);
        let summary: Vec<(String, String, String)> = plan
            .changes
            .iter()
            .map(|c| {
                (
                    c.runbook.clone(),
                    c.resource.id.clone(),
                    c.call.operation.clone(),
                )
            })
            .collect();
        // The default group is closed once, by the runbook declared to run first; the
        // egress runbook, planned on the state that leaves, has nothing to add to it.
        assert_eq!(
            summary,
            vec![
                (
                    "close-default-security-groups".to_string(),
                    "sg-default".to_string(),
                    "RevokeSecurityGroupEgress".to_string()
                ),
                (
                    "restrict-sg-egress".to_string(),
                    "sg-web".to_string(),
                    "ModifySecurityGroupRules".to_string()
                ),
            ]
        );
        // The in-use default group is left alone by both runbooks, with the reason.
        let blocked: Vec<(String, String, BlockReason)> = plan
            .blocked
            .iter()
            .map(|b| (b.runbook.clone(), b.resource.id.clone(), b.reason.clone()))
            .collect();
        assert_eq!(
            blocked,
            vec![
                (
                    "close-default-security-groups".to_string(),
                    "sg-default-used".to_string(),
                    BlockReason::InUse
                ),
                (
                    "restrict-sg-egress".to_string(),
                    "sg-default-used".to_string(),
                    BlockReason::InUse
                ),
            ]
        );
        // Planning again on the projected state finds nothing left to do.
        let again = plan_once(&mut inventory);
        assert!(again.changes.is_empty(), "{:?}", again.changes);
    }

    #[test]
    fn the_text_rendering_is_stable() {
        let mut inventory = inventory();
        let region_plan = plan_once(&mut inventory);
        let runbooks = shipped();
        let params = params::resolve(&runbooks, &[]).expect("defaults");
        let scope = scope();
        let plan = assemble(
            &request(&runbooks, &params),
            &[&scope],
            jiff::Timestamp::UNIX_EPOCH,
            vec![region_plan],
        );
        insta::assert_snapshot!(crate::plan::render::text(&plan));
    }
}
