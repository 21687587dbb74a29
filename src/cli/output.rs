//! What commands show people: the plan in colour, notes, the refusal of a partial plan,
//! and the terminal prompt.

use std::io::{IsTerminal, Write};

use super::settings::Settings;
use crate::error::{Error, Result};
use crate::plan::{Plan, render};

/// The text plan, in colour on a terminal unless `NO_COLOR` is set.
pub(super) fn shown(plan: &Plan) -> String {
    let text = render::text(plan);
    if std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        render::coloured(&text)
    } else {
        text
    }
}

/// Says which organization accounts were left out for not being active.
pub(super) fn report_inactive(settings: &Settings) {
    for (target, state) in &settings.inactive {
        eprintln!(
            "note: skipped account {} ({state}): not active",
            target.label()
        );
    }
}

/// The error line for a partial plan not accepted with `--allow-partial`.
pub(super) fn refuse_partial(plan: &Plan, what: &str) {
    eprintln!(
        "error: the plan is incomplete: {} account(s) could not be reached and {} runbook-region(s) could not be planned (listed at the top); {what}, or pass --allow-partial to accept the rest",
        plan.unreachable.len(),
        plan.not_planned.len()
    );
}

/// Asks on the terminal whether to apply `plan`; only "yes" is yes.
pub(super) fn confirm(plan: &Plan) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::Usage(
            "refusing to apply without confirmation: no terminal to ask on; pass --yes to apply non-interactively".into(),
        ));
    }
    let accounts: Vec<&str> = plan.accounts.iter().map(|a| a.target.id.as_str()).collect();
    print!(
        "\nApply {} change(s) to account(s) {}? Only 'yes' is accepted: ",
        plan.pending(),
        accounts.join(", ")
    );
    std::io::stdout()
        .flush()
        .map_err(|e| Error::io("stdout", e))?;
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Error::io("stdin", e))?;
    Ok(answer.trim() == "yes")
}
