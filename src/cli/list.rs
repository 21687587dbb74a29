//! `harden list`: the actions, resource kinds and runbooks this harden has.

use std::path::{Path, PathBuf};

use super::Status;
use super::settings::load;
use crate::error::Result;
use crate::{actions, inventory};

pub(super) fn list_command(path: Option<PathBuf>) -> Result<Status> {
    // A path the user names must exist; the default folder is optional.
    let explicit = path.is_some();
    let path = path.unwrap_or_else(|| PathBuf::from("runbooks"));
    if explicit || Path::new(&path).exists() {
        for r in load(std::slice::from_ref(&path))? {
            let rb = &r.runbook;
            println!("{}  {}", rb.id.value, rb.title);
            println!("  file: {}", r.path.display());
            for c in &rb.controls {
                match &c.note {
                    Some(note) => println!("  control: {} {} ({note})", c.framework, c.id),
                    None => println!("  control: {} {}", c.framework, c.id),
                }
            }
            for (name, spec) in &rb.parameters {
                let default = spec
                    .default
                    .as_ref()
                    .map(|d| format!(" = {}", d.value))
                    .unwrap_or_else(|| " (required)".into());
                println!(
                    "  param: {name}: {}{default}  {}",
                    spec.kind.value.name(),
                    spec.description
                );
            }
            for t in &rb.triggers {
                let entry = &t.discover.value;
                let narrowing = rb
                    .discover
                    .get(entry)
                    .and_then(|d| actions::ResourceKind::from_name(&d.resource.value))
                    .map(actions::ResourceKind::narrowing);
                let place = match (&t.resource_id, narrowing) {
                    (Some(path), _) => {
                        format!("{entry}, narrowed to the ids at {path}", path = path.value)
                    }
                    (None, Some(inventory::Narrowing::Named)) => {
                        format!("{entry} (looked up by its name)")
                    }
                    (None, Some(inventory::Narrowing::ById(_))) => {
                        format!("{entry}, all of them in the event's region")
                    }
                    (None, _) => format!("{entry} of the event's region"),
                };
                println!("  trigger: {} -> {place}", t.event.value);
            }
            println!();
        }
    }
    println!("actions:");
    for a in actions::registry() {
        println!(
            "  {}  (on {}) {}",
            a.info().name,
            a.info().resource_kind,
            a.info().description
        );
    }
    println!("resource kinds:");
    for k in actions::ResourceKind::ALL {
        println!("  {}  filters: {}", k.name(), k.filters().join(", "));
    }
    Ok(Status::Success)
}
