//! Checking a set of runbooks before anything is contacted: structure the parser cannot
//! see (unknown actions, arguments, parameters, resource kinds, step references) and
//! every template, rendered in strict mode against a context of the right shape.
//! Every problem is collected and reported with its location, not just the first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value, json};

use crate::actions;
use crate::actions::ResourceKind;
use crate::error::{Problems, Result, SourceLocation};
use crate::inventory::Narrowing;
use crate::runbook::LoadedRunbook;
use crate::runbook::model::{ParamType, Runbook};
use crate::runbook::params::check_value;
use crate::template::{KNOWN_AFTER_APPLY, Renderer, step_references};
use crate::trigger;

static RUNBOOK_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[a-z0-9][a-z0-9-]*$").expect("static regex is valid"));
static STEP_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[a-z0-9_-]+$").expect("static regex is valid"));
static PARAM_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new("^[A-Za-z_][A-Za-z0-9_]*$").expect("static regex is valid"));

/// Checks every runbook and returns them in apply order (`after:` respected, otherwise
/// the order given).
pub fn validate(runbooks: Vec<LoadedRunbook>) -> Result<Vec<LoadedRunbook>> {
    let mut problems = Problems::default();
    let renderer = Renderer::new();
    let mut seen: HashMap<String, SourceLocation> = HashMap::new();
    for loaded in &runbooks {
        let id = &loaded.runbook.id;
        let here = loaded.at(&id.referenced);
        if let Some(first) = seen.get(&id.value) {
            problems.push(
                Some(here.clone()),
                format!("runbook id {} is already used by {first}", id.value),
            );
        } else {
            seen.insert(id.value.clone(), here);
        }
        validate_one(loaded, &renderer, &mut problems);
    }
    for loaded in &runbooks {
        for needed in &loaded.runbook.requires {
            if !runbooks.iter().any(|r| r.id() == needed.value) {
                problems.push(
                    Some(loaded.at(&needed.referenced)),
                    format!(
                        "runbook {} requires {}, which is not selected: select it too (use after: to order without needing it)",
                        loaded.id(),
                        needed.value
                    ),
                );
            }
        }
    }
    problems.into_result()?;
    order(runbooks)
}

fn validate_one(loaded: &LoadedRunbook, renderer: &Renderer, problems: &mut Problems) {
    check_header(loaded, problems);
    let params = check_parameters(loaded, renderer, problems);
    check_triggers(loaded, problems);
    let base = json!({
        "params": Value::Object(params),
        "account_id": "000000000000",
        "region": "us-east-1",
        "partition": "aws",
        "home_region": "us-east-1",
        "regions": ["us-east-1"],
        "runbook": {"id": loaded.runbook.id.value},
        "triggers": [{"name": "AuthorizeSecurityGroupEgress", "source": "ec2.amazonaws.com"}],
    });
    let (discovered, kinds) = check_discover(loaded, renderer, &base, problems);
    let mut context = base;
    context["discovered"] = Value::Object(discovered);
    check_steps(loaded, renderer, context, &kinds, problems);
}

/// The format version and the runbook's id.
fn check_header(loaded: &LoadedRunbook, problems: &mut Problems) {
    let runbook: &Runbook = &loaded.runbook;
    let at = |l: &serde_saphyr::Location| Some(loaded.at(l));
    if runbook.version.value != 1 {
        problems.push(
            at(&runbook.version.referenced),
            format!(
                "version {} is not supported: expected 1",
                runbook.version.value
            ),
        );
    }
    if !RUNBOOK_ID.is_match(&runbook.id.value) {
        problems.push(
            at(&runbook.id.referenced),
            format!(
                "runbook id \"{}\": expected lowercase letters, digits and dashes",
                runbook.id.value
            ),
        );
    }
}

/// Parameter names, patterns and defaults; the parameters as templates will see them
/// (each default, rendered over a sample scope, or a sample of its type).
fn check_parameters(
    loaded: &LoadedRunbook,
    renderer: &Renderer,
    problems: &mut Problems,
) -> Map<String, Value> {
    let runbook: &Runbook = &loaded.runbook;
    let at = |l: &serde_saphyr::Location| Some(loaded.at(l));
    let mut params = Map::new();
    for (name, spec) in &runbook.parameters {
        if !PARAM_NAME.is_match(name) {
            problems.push(
                at(&spec.kind.referenced),
                format!("parameter name \"{name}\": expected letters, digits and underscores"),
            );
        }
        if let Some(pattern) = &spec.pattern {
            if spec.kind.value != ParamType::String {
                problems.push(
                    at(&pattern.referenced),
                    format!("parameter {name}: pattern applies to string parameters only"),
                );
            } else if let Err(e) = Regex::new(&pattern.value) {
                problems.push(
                    at(&pattern.referenced),
                    format!("parameter {name}: pattern does not compile: {e}"),
                );
                // The default cannot be held to a pattern that does not compile.
                params.insert(name.clone(), sample_value(spec.kind.value));
                continue;
            }
        }
        let sample = match &spec.default {
            Some(default) => match check_value(spec, None, default.value.clone()) {
                Ok(v) => v,
                Err(message) => {
                    problems.push(
                        at(&default.referenced),
                        format!("default of parameter {name}: {message}"),
                    );
                    continue;
                }
            },
            None => sample_value(spec.kind.value),
        };
        params.insert(name.clone(), sample);
    }
    // Parameter values may be templates over the account, region and partition (bucket
    // names derived from them); render them as the planner will.
    let scope = json!({"account_id": "000000000000", "region": "us-east-1", "partition": "aws",
        "home_region": "us-east-1", "regions": ["us-east-1"]});
    for (name, value) in params.iter_mut() {
        let location = runbook.parameters.get(name).map(|spec| {
            spec.default
                .as_ref()
                .map_or(&spec.kind.referenced, |d| &d.referenced)
        });
        if let Some(rendered) = check_template(
            renderer,
            value,
            &scope,
            problems,
            location.and_then(at),
            &format!(
                "default of parameter {name} (a parameter may use account_id, region and partition)"
            ),
        ) {
            *value = rendered;
        }
    }
    params
}

/// Discover entries: kinds, filters and their templates. Answers each entry with one
/// sample member (so `discovered.NAME.0.FIELD` paths are checked) and its kind.
fn check_discover<'a>(
    loaded: &'a LoadedRunbook,
    renderer: &Renderer,
    base: &Value,
    problems: &mut Problems,
) -> (Map<String, Value>, BTreeMap<&'a str, ResourceKind>) {
    let runbook: &Runbook = &loaded.runbook;
    let at = |l: &serde_saphyr::Location| Some(loaded.at(l));
    let mut discovered = Map::new();
    let mut kinds: BTreeMap<&str, ResourceKind> = BTreeMap::new();
    for (name, spec) in &runbook.discover {
        discovered.insert(name.clone(), Value::Array(Vec::new()));
        let Some(kind) = ResourceKind::from_name(&spec.resource.value) else {
            problems.push(
                at(&spec.resource.referenced),
                format!(
                    "discover.{name}: unknown resource kind \"{}\": expected one of {}",
                    spec.resource.value,
                    ResourceKind::ALL
                        .iter()
                        .map(|k| k.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            continue;
        };
        kinds.insert(name.as_str(), kind);
        // One sample member, so `discovered.NAME.0.FIELD` paths are checked too.
        discovered.insert(name.clone(), Value::Array(vec![kind.sample()]));
        for (filter, value) in &spec.filters {
            if !kind.filters().contains(&filter.as_str()) && !filter.starts_with("tag:") {
                problems.push(
                    at(&value.referenced),
                    format!(
                        "discover.{name}: unknown filter \"{filter}\" for {kind}: expected tag:KEY or one of {}",
                        kind.filters().join(", ")
                    ),
                );
            }
            check_template(
                renderer,
                &value.value,
                base,
                problems,
                at(&value.referenced),
                &format!("discover.{name}.filters.{filter}"),
            );
        }
        if let Some(exclude) = &spec.exclude_ids {
            check_template(
                renderer,
                &exclude.value,
                base,
                problems,
                at(&exclude.referenced),
                &format!("discover.{name}.exclude_ids"),
            );
        }
    }

    (discovered, kinds)
}

/// Steps in order: ids, actions, `for_each`, arguments, `when`, `wait` and outputs; a
/// template may name only earlier steps' outputs.
fn check_steps(
    loaded: &LoadedRunbook,
    renderer: &Renderer,
    mut context: Value,
    kinds: &BTreeMap<&str, ResourceKind>,
    problems: &mut Problems,
) {
    let runbook: &Runbook = &loaded.runbook;
    let at = |l: &serde_saphyr::Location| Some(loaded.at(l));
    context["steps"] = json!({});
    let mut step_ids: BTreeSet<&str> = BTreeSet::new();
    let all_step_ids: BTreeSet<&str> = runbook.steps.iter().map(|s| s.id.value.as_str()).collect();
    if runbook.steps.is_empty() {
        problems.push(
            at(&runbook.id.referenced),
            "a runbook needs at least one step",
        );
    }
    for step in &runbook.steps {
        let sid = step.id.value.as_str();
        if !STEP_ID.is_match(sid) {
            problems.push(
                at(&step.id.referenced),
                format!("step id \"{sid}\": expected lowercase letters, digits, _ and -"),
            );
        }
        if !step_ids.insert(sid) {
            problems.push(
                at(&step.id.referenced),
                format!("duplicate step id \"{sid}\""),
            );
        }
        let Some(action) = actions::find(&step.action.value) else {
            problems.push(
                at(&step.action.referenced),
                format!(
                    "step {sid}: unknown action \"{}\": expected one of {}",
                    step.action.value,
                    actions::registry()
                        .iter()
                        .map(|a| a.info().name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            continue;
        };
        let mut step_context = context.clone();
        match &step.for_each {
            None => problems.push(
                at(&step.action.referenced),
                format!(
                    "step {sid}: action {} acts on each discovered {}: add for_each naming a discover entry",
                    action.info().name,
                    action.info().resource_kind
                ),
            ),
            Some(for_each) => match kinds.get(for_each.value.as_str()) {
                None if runbook.discover.contains_key(&for_each.value) => {}
                None => problems.push(
                    at(&for_each.referenced),
                    format!(
                        "step {sid}: for_each names \"{}\", which is not a discover entry (expected one of: {})",
                        for_each.value,
                        runbook.discover.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ),
                Some(kind) if *kind != action.info().resource_kind => problems.push(
                    at(&for_each.referenced),
                    format!(
                        "step {sid}: action {} acts on {}, but discover.{} finds {}",
                        action.info().name,
                        action.info().resource_kind,
                        for_each.value,
                        kind
                    ),
                ),
                Some(kind) => {
                    step_context["item"] = kind.sample();
                }
            },
        }
        // Arguments the action knows, with the required ones present.
        let arguments = action.arguments();
        for (name, value) in &step.args {
            match arguments.iter().find(|a| a.name == *name) {
                None => problems.push(
                    at(&value.referenced),
                    format!(
                        "step {sid}: action {} has no argument \"{name}\": expected {}",
                        action.info().name,
                        arguments
                            .iter()
                            .map(|a| a.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
                Some(spec) => {
                    // A value naming a step it cannot use is reported once, as that.
                    if !check_references(
                        &value.value,
                        sid,
                        &step_ids,
                        &all_step_ids,
                        runbook,
                        problems,
                        at(&value.referenced),
                    ) {
                        continue;
                    }
                    if let Some(rendered) = check_template(
                        renderer,
                        &value.value,
                        &step_context,
                        problems,
                        at(&value.referenced),
                        &format!("step {sid} argument {name}"),
                    ) && !rendered.to_string().contains(KNOWN_AFTER_APPLY)
                        && let Err(message) = type_matches(spec.kind, &rendered)
                    {
                        problems.push(
                            at(&value.referenced),
                            format!("step {sid} argument {name}: {message}"),
                        );
                    }
                }
            }
        }
        for spec in arguments.iter().filter(|a| a.required) {
            if !step.args.contains_key(&spec.name) {
                problems.push(
                    at(&step.action.referenced),
                    format!(
                        "step {sid}: action {} needs the argument {} ({})",
                        action.info().name,
                        spec.name,
                        spec.description
                    ),
                );
            }
        }
        if let Some(condition) = &step.condition {
            let value = Value::String(condition.value.clone());
            if check_references(
                &value,
                sid,
                &step_ids,
                &all_step_ids,
                runbook,
                problems,
                at(&condition.referenced),
            ) {
                check_template(
                    renderer,
                    &value,
                    &step_context,
                    problems,
                    at(&condition.referenced),
                    &format!("step {sid} when"),
                );
            }
        }
        if let (Some(_), false) = (&step.wait, action.info().waits) {
            problems.push(
                at(&step.action.referenced),
                format!(
                    "step {sid}: action {} does not wait for anything, so `wait` has no effect: remove it",
                    action.info().name
                ),
            );
        }
        let mut outputs = Map::new();
        for output in &step.outputs {
            if !action.info().outputs.contains(&output.value.as_str()) {
                problems.push(
                    at(&output.referenced),
                    format!(
                        "step {sid}: action {} has no output \"{}\" (it has: {})",
                        action.info().name,
                        output.value,
                        if action.info().outputs.is_empty() {
                            "none".to_string()
                        } else {
                            action.info().outputs.join(", ")
                        }
                    ),
                );
            }
            outputs.insert(
                output.value.clone(),
                Value::String(KNOWN_AFTER_APPLY.into()),
            );
        }
        context["steps"][sid] = json!({ "outputs": outputs });
    }
}

/// Each trigger names an event harden knows, a discover entry of the runbook it can
/// narrow, and (for listed kinds) a valid path to the resource id.
fn check_triggers(loaded: &LoadedRunbook, problems: &mut Problems) {
    let runbook = &loaded.runbook;
    let mut seen = BTreeSet::new();
    for (index, trigger) in runbook.triggers.iter().enumerate() {
        let here = Some(loaded.at(&trigger.event.referenced));
        let event = &trigger.event.value;
        if trigger::known_event(event).is_none() {
            problems.push(
                here.clone(),
                format!(
                    "triggers[{index}]: unknown event \"{event}\": expected one of {}",
                    trigger::known_events()
                        .iter()
                        .map(|e| e.name)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        let entry = &trigger.discover.value;
        if !seen.insert((event.clone(), entry.clone())) {
            problems.push(
                here.clone(),
                format!("triggers[{index}]: {event} on {entry} is declared twice"),
            );
        }
        let discover_at = Some(loaded.at(&trigger.discover.referenced));
        let Some(spec) = runbook.discover.get(entry) else {
            problems.push(
                discover_at,
                format!(
                    "triggers[{index}]: discover entry \"{entry}\" does not exist: expected one of {}",
                    runbook.discover.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
            continue;
        };
        // An unknown kind is reported with the discover entry.
        let Some(kind) = ResourceKind::from_name(&spec.resource.value) else {
            continue;
        };
        match (kind.narrowing(), &trigger.resource_id) {
            (Narrowing::Named, Some(path)) => problems.push(
                Some(loaded.at(&path.referenced)),
                format!(
                    "triggers[{index}]: {entry} is a {} looked up by the name the runbook gives it, not by an id in the event: leave resource_id out",
                    kind.name()
                ),
            ),
            (Narrowing::RegionWide, Some(path)) => problems.push(
                Some(loaded.at(&path.referenced)),
                format!(
                    "triggers[{index}]: {entry} is a {}, one per region: an event names the region, not an id, so leave resource_id out",
                    kind.name()
                ),
            ),
            (Narrowing::ById(_), Some(path)) => {
                if let Err(message) = trigger::EventPath::parse(&path.value) {
                    problems.push(
                        Some(loaded.at(&path.referenced)),
                        format!("triggers[{index}]: {message}"),
                    );
                }
            }
            (Narrowing::ById(_) | Narrowing::RegionWide | Narrowing::Named, None) => {}
        }
    }
}

/// A `steps.X` reference must name an earlier step of the same runbook; false when one
/// does not.
fn check_references(
    value: &Value,
    sid: &str,
    earlier: &BTreeSet<&str>,
    all: &BTreeSet<&str>,
    runbook: &Runbook,
    problems: &mut Problems,
    location: Option<SourceLocation>,
) -> bool {
    let mut fine = true;
    let mut texts = Vec::new();
    collect_strings(value, &mut texts);
    for text in texts {
        for (target, _) in step_references(text) {
            if target == sid {
                fine = false;
                problems.push(
                    location.clone(),
                    format!("step {sid} refers to its own outputs (steps.{target})"),
                );
            } else if all.contains(target.as_str()) && !earlier.contains(target.as_str()) {
                fine = false;
                problems.push(
                    location.clone(),
                    format!("step {sid} refers to steps.{target}, a later step: a step can use only the outputs of steps before it"),
                );
            } else if !all.contains(target.as_str()) {
                fine = false;
                problems.push(
                    location.clone(),
                    format!(
                        "step {sid} refers to steps.{target}, but runbook {} has no such step",
                        runbook.id.value
                    ),
                );
            }
        }
    }
    fine
}

fn collect_strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| collect_strings(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect_strings(i, out)),
        _ => {}
    }
}

fn check_template(
    renderer: &Renderer,
    value: &Value,
    context: &Value,
    problems: &mut Problems,
    location: Option<SourceLocation>,
    what: &str,
) -> Option<Value> {
    match renderer.render_value(value, context) {
        Ok(rendered) => Some(rendered),
        Err(message) => {
            problems.push(location, format!("{what}: {message}"));
            None
        }
    }
}

fn type_matches(kind: ParamType, value: &Value) -> std::result::Result<(), String> {
    let ok = match kind {
        ParamType::String => value.is_string(),
        ParamType::Int => value.is_i64() || value.is_u64(),
        // A template such as `{{eq region params.home_region}}` renders "true"/"false".
        ParamType::Bool => value.is_boolean() || matches!(value.as_str(), Some("true" | "false")),
        ParamType::List => value.is_array(),
        ParamType::Map => value.is_object(),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("expected {}, found {value}", kind.with_article()))
    }
}

fn sample_value(kind: ParamType) -> Value {
    match kind {
        ParamType::String => Value::String("sample".into()),
        ParamType::Int => json!(0),
        ParamType::Bool => Value::Bool(false),
        ParamType::List => json!([]),
        ParamType::Map => json!({}),
    }
}

/// Orders runbooks so each comes after the ones its `after:` and `requires:` name (when
/// selected), keeping the given order otherwise. A cycle is an error.
fn order(runbooks: Vec<LoadedRunbook>) -> Result<Vec<LoadedRunbook>> {
    let ids: Vec<String> = runbooks.iter().map(|r| r.id().to_string()).collect();
    let mut placed: Vec<bool> = vec![false; runbooks.len()];
    let mut order = Vec::new();
    while order.len() < runbooks.len() {
        let next = (0..runbooks.len()).find(|&i| {
            !placed[i]
                && runbooks[i]
                    .runbook
                    .after
                    .iter()
                    .chain(&runbooks[i].runbook.requires)
                    .all(|dep| {
                        ids.iter()
                            .position(|id| *id == dep.value)
                            .is_none_or(|j| placed[j])
                    })
        });
        match next {
            Some(i) => {
                placed[i] = true;
                order.push(i);
            }
            None => {
                let mut problems = Problems::default();
                for (i, r) in runbooks.iter().enumerate().filter(|(i, _)| !placed[*i]) {
                    let location = r
                        .runbook
                        .after
                        .iter()
                        .chain(&r.runbook.requires)
                        .next()
                        .map(|a| r.at(&a.referenced));
                    problems.push(
                        location,
                        format!(
                            "runbook {} is part of an `after:`/`requires:` cycle",
                            ids[i]
                        ),
                    );
                }
                return Err(crate::Error::Invalid(problems));
            }
        }
    }
    let mut slots: Vec<Option<LoadedRunbook>> = runbooks.into_iter().map(Some).collect();
    Ok(order.into_iter().filter_map(|i| slots[i].take()).collect())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::runbook::load::parse_runbook;

    fn runbook(id: &str, order: &str) -> LoadedRunbook {
        let text = format!(
            "version: 1\nid: {id}\ntitle: t\n{order}discover:\n  setting:\n    resource: ec2:ebs-encryption-default\nsteps:\n  - id: enable\n    action: ec2:enable-ebs-encryption-by-default\n    for_each: setting\n"
        );
        parse_runbook(Path::new(&format!("{id}.yaml")), &text).expect("parses")
    }

    fn messages(result: Result<Vec<LoadedRunbook>>) -> Vec<String> {
        match result {
            Err(crate::Error::Invalid(problems)) => {
                problems.0.iter().map(ToString::to_string).collect()
            }
            Err(other) => vec![format!("unexpected error: {other}")],
            Ok(_) => Vec::new(),
        }
    }

    #[test]
    fn requires_orders_like_after() {
        let ordered = validate(vec![
            runbook("b", "requires: [a]\n"),
            runbook("c", "after: [b]\n"),
            runbook("a", ""),
        ])
        .expect("valid");
        let ids: Vec<&str> = ordered.iter().map(LoadedRunbook::id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn a_required_runbook_must_be_selected() {
        assert_eq!(
            messages(validate(vec![runbook("b", "requires: [a]\n")])),
            [
                "b.yaml:4:12: runbook b requires a, which is not selected: select it too (use after: to order without needing it)"
            ]
        );
        // `after:` names a runbook that may or may not be selected.
        assert!(validate(vec![runbook("b", "after: [a]\n")]).is_ok());
    }

    #[test]
    fn a_cycle_through_after_or_requires_is_located() {
        assert_eq!(
            messages(validate(vec![
                runbook("a", "after: [b]\n"),
                runbook("b", "requires: [a]\n"),
            ])),
            [
                "a.yaml:4:9: runbook a is part of an `after:`/`requires:` cycle",
                "b.yaml:4:12: runbook b is part of an `after:`/`requires:` cycle",
            ]
        );
    }

    /// One runbook and the problems validation reports for it, in order: each
    /// `LINE:COLUMN: message` the start of what is reported at `r.yaml`.
    struct Case {
        name: &'static str,
        runbook: &'static str,
        problems: &'static [&'static str],
    }

    /// Every problem `validate` reports for a single runbook, each shown by the smallest
    /// runbook that has it (the multi-runbook ones, `requires` and cycles, are below).
    const CASES: &[Case] = &[
        Case {
            name: "version",
            runbook: r#"version: 2
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
"#,
            problems: &["1:10: version 2 is not supported: expected 1"],
        },
        Case {
            name: "runbook_id",
            runbook: r#"version: 1
id: R_1
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
"#,
            problems: &["2:5: runbook id \"R_1\": expected lowercase letters, digits and dashes"],
        },
        Case {
            name: "param_name",
            runbook: r#"version: 1
id: r
title: t
parameters:
  bad-name:
    type: string
    default: x
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
"#,
            problems: &[
                "6:11: parameter name \"bad-name\": expected letters, digits and underscores",
            ],
        },
        Case {
            name: "pattern_type",
            runbook: r#"version: 1
id: r
title: t
parameters:
  n:
    type: int
    default: 1
    pattern: '^[0-9]+$'
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
"#,
            problems: &["8:14: parameter n: pattern applies to string parameters only"],
        },
        Case {
            name: "pattern_compile",
            runbook: r#"version: 1
id: r
title: t
parameters:
  s:
    type: string
    default: x
    pattern: '(['
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
"#,
            problems: &["8:14: parameter s: pattern does not compile: regex parse error:"],
        },
        Case {
            name: "default_type",
            runbook: r#"version: 1
id: r
title: t
parameters:
  n:
    type: int
    default: many
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
"#,
            problems: &["7:14: default of parameter n: expected an int, found the string \"many\""],
        },
        Case {
            name: "default_template",
            runbook: r#"version: 1
id: r
title: t
parameters:
  s:
    type: string
    default: '{{bucket}}'
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
"#,
            problems: &[
                "7:14: default of parameter s (a parameter may use account_id, region and partition): variable \"bucket\" does not exist",
            ],
        },
        Case {
            name: "unknown_kind",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
  things:
    resource: ec2:thing
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
"#,
            problems: &[
                "8:15: discover.things: unknown resource kind \"ec2:thing\": expected one of ec2:security-group, ",
            ],
        },
        Case {
            name: "unknown_filter",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
  groups:
    resource: ec2:security-group
    filters:
      colour: red
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
"#,
            problems: &[
                "10:15: discover.groups: unknown filter \"colour\" for ec2:security-group: expected tag:KEY or one of group-id, group-name, vpc-id, tag-key, description, owner-id",
            ],
        },
        Case {
            name: "filter_template",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
  groups:
    resource: ec2:security-group
    filters:
      vpc-id: '{{params.vpc}}'
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
"#,
            problems: &[
                "10:15: discover.groups.filters.vpc-id: variable \"params.vpc\" does not exist",
            ],
        },
        Case {
            name: "exclude_template",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
    exclude_ids: '{{params.skip}}'
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
"#,
            problems: &[
                "7:18: discover.setting.exclude_ids: variable \"params.skip\" does not exist",
            ],
        },
        Case {
            name: "no_steps",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps: []
"#,
            problems: &["2:5: a runbook needs at least one step"],
        },
        Case {
            name: "step_id",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: Enable!
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
"#,
            problems: &["8:9: step id \"Enable!\": expected lowercase letters, digits, _ and -"],
        },
        Case {
            name: "duplicate_step",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
"#,
            problems: &["11:9: duplicate step id \"enable\""],
        },
        Case {
            name: "unknown_action",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-everything
    for_each: setting
"#,
            problems: &[
                "9:13: step enable: unknown action \"ec2:enable-everything\": expected one of ec2:restrict-egress, ",
            ],
        },
        Case {
            name: "no_for_each",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
"#,
            problems: &[
                "9:13: step enable: action ec2:enable-ebs-encryption-by-default acts on each discovered ec2:ebs-encryption-default: add for_each naming a discover entry",
            ],
        },
        Case {
            name: "for_each_missing",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: settings
"#,
            problems: &[
                "10:15: step enable: for_each names \"settings\", which is not a discover entry (expected one of: setting)",
            ],
        },
        Case {
            name: "for_each_kind",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
  groups:
    resource: ec2:security-group
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: groups
"#,
            problems: &[
                "12:15: step enable: action ec2:enable-ebs-encryption-by-default acts on ec2:ebs-encryption-default, but discover.groups finds ec2:security-group",
            ],
        },
        Case {
            name: "unknown_arg",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
    args:
      kms_key: k
"#,
            problems: &[
                "12:16: step enable: action ec2:enable-ebs-encryption-by-default has no argument \"kms_key\": expected kms_key_arn",
            ],
        },
        Case {
            name: "own_outputs",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
    args:
      kms_key_arn: '{{steps.enable.outputs.x}}'
"#,
            problems: &["12:20: step enable refers to its own outputs (steps.enable)"],
        },
        Case {
            name: "later_step",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
    args:
      kms_key_arn: '{{steps.later.outputs.x}}'
  - id: later
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
"#,
            problems: &[
                "12:20: step enable refers to steps.later, a later step: a step can use only the outputs of steps before it",
            ],
        },
        Case {
            name: "no_such_step",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
    args:
      kms_key_arn: '{{steps.nowhere.outputs.x}}'
"#,
            problems: &[
                "12:20: step enable refers to steps.nowhere, but runbook r has no such step",
            ],
        },
        Case {
            name: "arg_template",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
    args:
      kms_key_arn: '{{item.colour}}'
"#,
            problems: &[
                "12:20: step enable argument kms_key_arn: variable \"item.colour\" does not exist",
            ],
        },
        Case {
            name: "arg_type",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
    args:
      kms_key_arn: [a, b]
"#,
            problems: &[
                "12:20: step enable argument kms_key_arn: expected a string, found [\"a\",\"b\"]",
            ],
        },
        Case {
            name: "required_arg",
            runbook: r#"version: 1
id: r
title: t
discover:
  trails:
    resource: cloudtrail:trails
steps:
  - id: trail
    action: cloudtrail:ensure-trail
    for_each: trails
"#,
            problems: &[
                "9:13: step trail: action cloudtrail:ensure-trail needs the argument trail_name (",
                "9:13: step trail: action cloudtrail:ensure-trail needs the argument bucket_name (",
            ],
        },
        Case {
            name: "when_template",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
    when: '{{params.missing}}'
"#,
            problems: &["11:11: step enable when: variable \"params.missing\" does not exist"],
        },
        Case {
            name: "when_reference",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
    when: '{{steps.enable.outputs.x}}'
"#,
            problems: &["11:11: step enable refers to its own outputs (steps.enable)"],
        },
        Case {
            name: "wait",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
    wait:
      timeout_seconds: 60
"#,
            problems: &[
                "9:13: step enable: action ec2:enable-ebs-encryption-by-default does not wait for anything, so `wait` has no effect: remove it",
            ],
        },
        Case {
            name: "output",
            runbook: r#"version: 1
id: r
title: t
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
    outputs: [key]
"#,
            problems: &[
                "11:15: step enable: action ec2:enable-ebs-encryption-by-default has no output \"key\" (it has: none)",
            ],
        },
        Case {
            name: "trigger_event",
            runbook: r#"version: 1
id: r
title: t
triggers:
  - event: DisableEbsEncryption
    discover: setting
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
"#,
            problems: &[
                "5:12: triggers[0]: unknown event \"DisableEbsEncryption\": expected one of AuthorizeSecurityGroupEgress, ",
            ],
        },
        Case {
            name: "trigger_twice",
            runbook: r#"version: 1
id: r
title: t
triggers:
  - event: DisableEbsEncryptionByDefault
    discover: setting
  - event: DisableEbsEncryptionByDefault
    discover: setting
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
"#,
            problems: &[
                "7:12: triggers[1]: DisableEbsEncryptionByDefault on setting is declared twice",
            ],
        },
        Case {
            name: "trigger_entry",
            runbook: r#"version: 1
id: r
title: t
triggers:
  - event: DisableEbsEncryptionByDefault
    discover: settings
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
"#,
            problems: &[
                "6:15: triggers[0]: discover entry \"settings\" does not exist: expected one of setting",
            ],
        },
        Case {
            name: "trigger_region_wide_id",
            runbook: r#"version: 1
id: r
title: t
triggers:
  - event: DisableEbsEncryptionByDefault
    discover: setting
    resource_id: detail.requestParameters.x
discover:
  setting:
    resource: ec2:ebs-encryption-default
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
"#,
            problems: &[
                "7:18: triggers[0]: setting is a ec2:ebs-encryption-default, one per region: an event names the region, not an id, so leave resource_id out",
            ],
        },
        Case {
            name: "trigger_named_id",
            runbook: r#"version: 1
id: r
title: t
triggers:
  - event: DeleteTrail
    discover: bucket
    resource_id: detail.requestParameters.name
discover:
  setting:
    resource: ec2:ebs-encryption-default
  bucket:
    resource: s3:bucket
    filters:
      name: b
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
"#,
            problems: &[
                "7:18: triggers[0]: bucket is a s3:bucket looked up by the name the runbook gives it, not by an id in the event: leave resource_id out",
            ],
        },
        Case {
            name: "trigger_path",
            runbook: r#"version: 1
id: r
title: t
triggers:
  - event: CreateSecurityGroup
    discover: groups
    resource_id: responseElements.groupId
discover:
  setting:
    resource: ec2:ebs-encryption-default
  groups:
    resource: ec2:security-group
steps:
  - id: enable
    action: ec2:enable-ebs-encryption-by-default
    for_each: setting
"#,
            problems: &[
                "7:18: triggers[0]: resource_id \"responseElements.groupId\": expected detail.requestParameters.KEY... or detail.responseElements.KEY...",
            ],
        },
    ];

    #[test]
    fn every_problem_is_reported_where_it_is_with_what_was_expected() {
        let mut mismatches = Vec::new();
        for case in CASES {
            let loaded = parse_runbook(Path::new("r.yaml"), case.runbook)
                .unwrap_or_else(|e| panic!("{}: the case parses: {e}", case.name));
            let found = messages(validate(vec![loaded]));
            let matches = found.len() == case.problems.len()
                && found
                    .iter()
                    .zip(case.problems)
                    .all(|(message, expected)| message.starts_with(&format!("r.yaml:{expected}")));
            if !matches {
                mismatches.push(format!(
                    "{}:
  expected {:#?}
  found {found:#?}",
                    case.name, case.problems
                ));
            }
        }
        assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    }

    #[test]
    fn the_unchanged_base_of_the_cases_is_valid() {
        let base = CASES[0].runbook.replacen("version: 2", "version: 1", 1);
        let loaded = parse_runbook(Path::new("r.yaml"), &base).expect("parses");
        assert!(validate(vec![loaded]).is_ok());
    }

    #[test]
    fn a_runbook_id_used_twice_names_the_first_use() {
        assert_eq!(
            messages(validate(vec![runbook("a", ""), runbook("a", "")])),
            ["a.yaml:2:5: runbook id a is already used by a.yaml:2:5"]
        );
    }
}
