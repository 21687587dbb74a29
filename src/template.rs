//! Templates: handlebars in strict mode over a JSON context, so a variable that does not
//! exist is an error at validate and plan time rather than an empty string.
//!
//! A string that is exactly one `{{ path }}` keeps the type of the value it names: a
//! list parameter passed as `"{{params.allowed_egress}}"` stays a list. Anything else
//! renders to a string.

use std::sync::LazyLock;

use handlebars::Handlebars;
use regex::Regex;
use serde_json::Value;

/// Placeholder for a value only known once apply has run (a step output, a new id).
pub const KNOWN_AFTER_APPLY: &str = "(known after apply)";
/// Stands in a call's input for the id of the apply run that makes the call (a tag on
/// what the call creates); apply puts the run id in its place before the call.
pub const RUN_ID: &str = "(run id)";

static WHOLE_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\{\{\s*([A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)*)\s*\}\}$")
        .expect("static regex is valid")
});

static STEP_REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\bsteps\.([A-Za-z0-9_\-]+)(?:\.outputs\.([A-Za-z0-9_\-]+))?")
        .expect("static regex is valid")
});

/// Renders templates in strict mode, without HTML escaping.
pub struct Renderer {
    handlebars: Handlebars<'static>,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl Renderer {
    /// A strict renderer.
    pub fn new() -> Self {
        let mut handlebars = Handlebars::new();
        handlebars.set_strict_mode(true);
        handlebars.register_escape_fn(handlebars::no_escape);
        // Only the documented helpers: `log` writes to the process's log, which a
        // template must not reach.
        handlebars.unregister_helper("log");
        Self { handlebars }
    }

    /// Renders a template string to a string.
    pub fn render_str(&self, template: &str, context: &Value) -> Result<String, String> {
        if !template.contains("{{") {
            return Ok(template.to_string());
        }
        self.handlebars
            .render_template(template, context)
            .map_err(|e| describe_render_error(&e))
    }

    /// Renders every string inside `value`; a whole-expression string keeps its type.
    pub fn render_value(&self, value: &Value, context: &Value) -> Result<Value, String> {
        match value {
            Value::String(text) => {
                if let Some(captures) = WHOLE_PATH.captures(text.trim()) {
                    let path = &captures[1];
                    return lookup(context, path)
                        .cloned()
                        .ok_or_else(|| format!("variable \"{path}\" does not exist"));
                }
                self.render_str(text, context).map(Value::String)
            }
            Value::Array(items) => items
                .iter()
                .map(|item| self.render_value(item, context))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Value::Object(map) => {
                let mut rendered = serde_json::Map::new();
                for (key, item) in map {
                    rendered.insert(key.clone(), self.render_value(item, context)?);
                }
                Ok(Value::Object(rendered))
            }
            other => Ok(other.clone()),
        }
    }

    /// Renders a condition; false, null, 0, "", "false" and empty collections are false.
    pub fn render_condition(&self, template: &str, context: &Value) -> Result<bool, String> {
        Ok(truthy(&self.render_value(
            &Value::String(template.to_string()),
            context,
        )?))
    }
}

/// Handlebars' truthiness, plus the string "false" a rendered template produces.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => {
            let s = s.trim();
            !(s.is_empty() || s == "false")
        }
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

/// Looks up a dotted path (`params.allowed_egress`, `item.tags.Name`).
pub fn lookup<'a>(context: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(context, |value, segment| match value {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
}

/// Every `steps.<id>[.outputs.<name>]` reference a template makes, for validation.
pub fn step_references(template: &str) -> Vec<(String, Option<String>)> {
    STEP_REFERENCE
        .captures_iter(template)
        .map(|c| (c[1].to_string(), c.get(2).map(|m| m.as_str().to_string())))
        .collect()
}

/// Handlebars' strict-mode message names the missing variable; keep that part.
fn describe_render_error(error: &handlebars::RenderError) -> String {
    use handlebars::RenderErrorReason;
    match error.reason() {
        RenderErrorReason::MissingVariable(Some(path)) => {
            format!("variable \"{path}\" does not exist")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn context() -> Value {
        json!({"params": {"ports": [443, 80], "name": "web"}, "item": {"id": "sg-1", "tags": {}}})
    }

    #[test]
    fn whole_expression_keeps_the_type() {
        let r = Renderer::new();
        let v = r
            .render_value(&json!("{{ params.ports }}"), &context())
            .expect("renders");
        assert_eq!(v, json!([443, 80]));
    }

    #[test]
    fn mixed_text_renders_to_a_string() {
        let r = Renderer::new();
        let v = r
            .render_value(&json!("group {{item.id}} of {{params.name}}"), &context())
            .expect("renders");
        assert_eq!(v, json!("group sg-1 of web"));
    }

    #[test]
    fn unknown_variable_is_an_error_not_an_empty_string() {
        let r = Renderer::new();
        let whole = r.render_value(&json!("{{params.nope}}"), &context());
        assert_eq!(
            whole,
            Err("variable \"params.nope\" does not exist".to_string())
        );
        let mixed = r
            .render_value(&json!("x-{{params.nope}}"), &context())
            .expect_err("strict mode");
        assert!(mixed.contains("params.nope"), "{mixed}");
    }

    #[test]
    fn values_are_not_html_escaped() {
        let r = Renderer::new();
        let v = r
            .render_str("{{params.name}}&<>", &json!({"params": {"name": "a&b"}}))
            .expect("renders");
        assert_eq!(v, "a&b&<>");
    }

    #[test]
    fn conditions_follow_truthiness() {
        let r = Renderer::new();
        let ctx = json!({"a": true, "b": false, "l": [], "s": "false"});
        assert!(r.render_condition("{{a}}", &ctx).expect("renders"));
        assert!(!r.render_condition("{{b}}", &ctx).expect("renders"));
        assert!(!r.render_condition("{{l}}", &ctx).expect("renders"));
        assert!(!r.render_condition("{{s}}", &ctx).expect("renders"));
        assert!(
            r.render_condition("{{#if a}}yes{{/if}}", &ctx)
                .expect("renders")
        );
    }

    #[test]
    fn finds_step_references() {
        assert_eq!(
            step_references("{{steps.snap.outputs.snapshot_id}} {{steps.copy}}"),
            vec![
                ("snap".to_string(), Some("snapshot_id".to_string())),
                ("copy".to_string(), None)
            ]
        );
    }

    #[test]
    fn only_the_documented_helpers_exist() {
        let renderer = Renderer::new();
        let context = serde_json::json!({"region": "us-east-1"});
        let message = renderer
            .render_str("{{log \"x\"}}", &context)
            .expect_err("log is gone");
        assert!(message.contains("log"), "{message}");
        assert_eq!(
            renderer
                .render_str("{{#if (eq region \"us-east-1\")}}home{{/if}}", &context)
                .expect("eq and if stay"),
            "home"
        );
    }
}
