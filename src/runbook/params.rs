//! Parameter values: `--param KEY=VALUE` sets KEY in every selected runbook that
//! declares it, `--param RUNBOOK_ID.KEY=VALUE` in that runbook only. Values are parsed
//! as YAML scalars or lists, then checked against the declared type, allowed values and
//! pattern. A key no selected runbook declares is an error.

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::Value;

use super::load::LoadedRunbook;
use super::model::{ParamType, ParameterSpec};
use crate::error::{Problems, Result};

/// One `--param` flag, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The runbook it is scoped to, for `RUNBOOK_ID.KEY=VALUE`.
    pub runbook: Option<String>,
    /// The parameter.
    pub key: String,
    /// The value as typed.
    pub raw: String,
}

impl std::str::FromStr for Assignment {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let (name, raw) = text
            .split_once('=')
            .ok_or_else(|| format!("--param {text}: expected KEY=VALUE or RUNBOOK_ID.KEY=VALUE"))?;
        let name = name.trim();
        let (runbook, key) = match name.split_once('.') {
            Some((runbook, key)) => (Some(runbook.to_string()), key.to_string()),
            None => (None, name.to_string()),
        };
        if key.is_empty() || runbook.as_deref() == Some("") {
            return Err(format!(
                "--param {text}: expected KEY=VALUE or RUNBOOK_ID.KEY=VALUE"
            ));
        }
        Ok(Self {
            runbook,
            key,
            raw: raw.to_string(),
        })
    }
}

/// Parameter values by runbook id, then by name (read through `Deref`), and which of
/// them a `--param` gave: those are data, never rendered as templates; only a
/// runbook's own defaults may be templates over the documented context.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResolvedParams {
    values: BTreeMap<String, BTreeMap<String, Value>>,
    given: std::collections::BTreeSet<(String, String)>,
}

impl ResolvedParams {
    /// Whether `--param` gave parameter `name` of runbook `runbook`.
    pub fn is_given(&self, runbook: &str, name: &str) -> bool {
        self.given
            .contains(&(runbook.to_string(), name.to_string()))
    }

    /// The names of `runbook`'s parameters `--param` gave, in order.
    pub fn given_in(&self, runbook: &str) -> Vec<String> {
        self.given
            .iter()
            .filter(|(r, _)| r == runbook)
            .map(|(_, name)| name.clone())
            .collect()
    }

    /// Parameter values by runbook, with the (runbook, name) pairs `--param` gave:
    /// values recorded earlier, resolved again as they were.
    pub fn recorded(
        values: BTreeMap<String, BTreeMap<String, Value>>,
        given: std::collections::BTreeSet<(String, String)>,
    ) -> Self {
        Self { values, given }
    }
}

impl std::ops::Deref for ResolvedParams {
    type Target = BTreeMap<String, BTreeMap<String, Value>>;

    fn deref(&self) -> &Self::Target {
        &self.values
    }
}

/// Checks a value against a declaration, coercing a YAML-typed value where the
/// declared type says otherwise (a string parameter given `123` gets `"123"`).
pub fn check_value(
    spec: &ParameterSpec,
    raw: Option<&str>,
    value: Value,
) -> std::result::Result<Value, String> {
    let kind = spec.kind.value;
    let value = match (kind, value) {
        (ParamType::String, Value::String(s)) => Value::String(s),
        (ParamType::String, other @ (Value::Number(_) | Value::Bool(_))) => {
            Value::String(raw.map(str::to_string).unwrap_or_else(|| other.to_string()))
        }
        (ParamType::Int, Value::Number(n)) if n.is_i64() || n.is_u64() => Value::Number(n),
        (ParamType::Bool, Value::Bool(b)) => Value::Bool(b),
        (ParamType::List, Value::Array(items)) => Value::Array(items),
        (ParamType::List, Value::Null) => Value::Array(Vec::new()),
        (ParamType::Map, Value::Object(map)) => Value::Object(map),
        (kind, other) => {
            return Err(format!(
                "expected {}, found {}",
                kind.with_article(),
                describe(&other)
            ));
        }
    };
    if let Some(allowed) = &spec.allowed
        && !allowed.contains(&value)
    {
        return Err(format!(
            "{value} is not one of the allowed values {}",
            Value::Array(allowed.clone())
        ));
    }
    if let (Some(pattern), Value::String(s)) = (&spec.pattern, &value) {
        let re = Regex::new(&format!("^(?:{})$", pattern.value))
            .map_err(|e| format!("pattern {} does not compile: {e}", pattern.value))?;
        if !re.is_match(s) {
            return Err(format!(
                "\"{s}\" does not match the pattern {}",
                pattern.value
            ));
        }
    }
    Ok(value)
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("the bool {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string \"{s}\""),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a map".into(),
    }
}

/// Parses a `--param` value as YAML.
fn parse_raw(raw: &str) -> std::result::Result<Value, String> {
    if raw.trim().is_empty() {
        return Ok(Value::String(String::new()));
    }
    serde_saphyr::from_str::<Value>(raw).map_err(|e| format!("value does not parse as YAML: {e}"))
}

/// Resolves the values of every selected runbook's parameters.
pub fn resolve(runbooks: &[LoadedRunbook], assignments: &[Assignment]) -> Result<ResolvedParams> {
    let mut problems = Problems::default();
    let mut resolved = ResolvedParams::default();
    for assignment in assignments {
        let targets: Vec<&LoadedRunbook> = runbooks
            .iter()
            .filter(|r| assignment.runbook.as_deref().is_none_or(|id| id == r.id()))
            .collect();
        let flag = format!(
            "--param {}{}",
            assignment
                .runbook
                .as_ref()
                .map(|r| format!("{r}."))
                .unwrap_or_default(),
            assignment.key
        );
        if let Some(id) = &assignment.runbook
            && targets.is_empty()
        {
            problems.push(None, format!("{flag}: no selected runbook has the id {id}"));
            continue;
        }
        if !targets
            .iter()
            .any(|r| r.runbook.parameters.contains_key(&assignment.key))
        {
            problems.push(
                None,
                format!(
                    "{flag}: no selected runbook declares the parameter {} (declared: {})",
                    assignment.key,
                    declared_names(&targets)
                ),
            );
        }
    }
    for runbook in runbooks {
        let mut values = BTreeMap::new();
        for (name, spec) in &runbook.runbook.parameters {
            // A scoped assignment wins over a global one, whatever the order given.
            let given = assignments
                .iter()
                .filter(|a| &a.key == name)
                .filter(|a| a.runbook.as_deref().is_none_or(|id| id == runbook.id()))
                .max_by_key(|a| a.runbook.is_some());
            if given.is_some() {
                resolved
                    .given
                    .insert((runbook.id().to_string(), name.clone()));
            }
            let value = match given {
                Some(a) => parse_raw(&a.raw).and_then(|v| check_value(spec, Some(&a.raw), v)),
                None => match &spec.default {
                    Some(default) => check_value(spec, None, default.value.clone()),
                    None => {
                        problems.push(
                            Some(runbook.at(&spec.kind.referenced)),
                            format!(
                                "runbook {} needs the parameter {name} ({}): pass --param {name}=VALUE",
                                runbook.id(),
                                spec.kind.value.name()
                            ),
                        );
                        continue;
                    }
                },
            };
            match value {
                Ok(v) => {
                    values.insert(name.clone(), v);
                }
                // A value given on the command line is the flag's problem, not the file's.
                Err(message) => match given {
                    Some(a) => problems.push(
                        None,
                        format!(
                            "--param {}{name}={}: parameter {name} of runbook {}: {message}",
                            a.runbook
                                .as_ref()
                                .map(|r| format!("{r}."))
                                .unwrap_or_default(),
                            a.raw,
                            runbook.id()
                        ),
                    ),
                    None => problems.push(
                        Some(runbook.at(&spec.kind.referenced)),
                        format!("parameter {name} of runbook {}: {message}", runbook.id()),
                    ),
                },
            }
        }
        resolved.values.insert(runbook.id().to_string(), values);
    }
    problems.into_result()?;
    Ok(resolved)
}

fn declared_names(runbooks: &[&LoadedRunbook]) -> String {
    let mut names: Vec<&str> = runbooks
        .iter()
        .flat_map(|r| r.runbook.parameters.keys().map(String::as_str))
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use super::*;
    use crate::runbook::load::parse_runbook;

    fn runbook(id: &str) -> LoadedRunbook {
        let text = format!(
            "version: 1\nid: {id}\ntitle: T\nparameters:\n  name:\n    type: string\n    default: d\n    pattern: \"[a-z0-9]+\"\n  count:\n    type: int\n    default: 1\n  mode:\n    type: string\n    default: safe\n    allowed: [safe, fast]\nsteps: []\n"
        );
        parse_runbook(Path::new("t.yaml"), &text).expect("parses")
    }

    fn assign(text: &str) -> Assignment {
        text.parse().expect("parses")
    }

    #[test]
    fn a_scoped_value_beats_a_global_one_whatever_the_order() {
        let runbooks = vec![runbook("a"), runbook("b")];
        let resolved =
            resolve(&runbooks, &[assign("a.count=3"), assign("count=2")]).expect("resolves");
        assert_eq!(resolved["a"]["count"], json!(3));
        assert_eq!(resolved["b"]["count"], json!(2));
        assert_eq!(resolved["b"]["name"], json!("d"), "defaults fill the rest");
    }

    #[test]
    fn given_values_are_told_from_defaults() {
        let runbooks = vec![runbook("a")];
        let resolved = resolve(&runbooks, &[assign("name={{log}}")]);
        // A pattern still applies to what is given.
        assert!(resolved.is_err());
        let resolved = resolve(&runbooks, &[assign("count=4")]).expect("resolves");
        assert!(resolved.is_given("a", "count"));
        assert!(!resolved.is_given("a", "name"));
    }

    #[test]
    fn values_are_typed_checked_and_coerced() {
        let runbooks = vec![runbook("a")];
        let resolved = resolve(&runbooks, &[assign("name=123")]).expect("a number for a string");
        assert_eq!(resolved["a"]["name"], json!("123"));
        for (flag, message) in [
            (
                "count=many",
                "--param count=many: parameter count of runbook a: expected an int, found the string \"many\"",
            ),
            (
                "mode=slow",
                "--param mode=slow: parameter mode of runbook a: \"slow\" is not one of the allowed values [\"safe\",\"fast\"]",
            ),
            (
                "name=UPPER",
                "--param name=UPPER: parameter name of runbook a: \"UPPER\" does not match the pattern [a-z0-9]+",
            ),
        ] {
            let error = resolve(&runbooks, &[assign(flag)])
                .expect_err(flag)
                .to_string();
            assert_eq!(error, message, "{flag}");
        }
    }
}
