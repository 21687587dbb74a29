//! `harden iam-policy`: the least IAM policy a runbook set needs.

use std::path::PathBuf;

use super::Status;
use super::settings::load;
use crate::error::{Error, Result};
use crate::least_privilege::{self, Access, Features};
use crate::runbook::params::Assignment;

/// Prints the policy the runbooks at `paths` need for `access`, with the engine
/// features asked for and the roles the given parameters pass.
pub(super) fn iam_policy_command(
    paths: &[PathBuf],
    access: Access,
    params: &[Assignment],
    features: Features,
) -> Result<Status> {
    let runbooks = load(paths)?;
    let params = crate::runbook::params::resolve(&runbooks, params)?;
    let actions = least_privilege::actions_of(&runbooks);
    let passed = least_privilege::passed_roles(&runbooks, &params)?;
    let document = least_privilege::policy(&actions, access, &features, &passed);
    println!(
        "{}",
        serde_json::to_string_pretty(&document).map_err(|e| Error::Internal(e.to_string()))?
    );
    Ok(Status::Success)
}
