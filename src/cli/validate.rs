//! `harden validate`: runbooks, an accounts file and a policy checked, nothing contacted.

use std::path::{Path, PathBuf};

use super::Status;
use super::settings::load;
use crate::error::Result;

pub(super) fn validate_command(
    paths: &[PathBuf],
    accounts: Option<&Path>,
    policy: Option<&Path>,
) -> Result<Status> {
    let runbooks = load(paths)?;
    for r in &runbooks {
        println!("ok  {}  {}", r.id(), r.path.display());
    }
    println!("{} runbook(s) valid.", runbooks.len());
    if let Some(path) = accounts {
        let listed = crate::accounts::load_file(path)?;
        println!("ok  {}: {} account(s)", path.display(), listed.len());
    }
    if let Some(path) = policy {
        let policy = crate::policy::Policy::load(path)?;
        println!(
            "ok  {}: {} rule(s), default {}",
            path.display(),
            policy.rules.len(),
            policy.default.name()
        );
    }
    Ok(Status::Success)
}
