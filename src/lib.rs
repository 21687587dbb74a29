//! `harden` hardens AWS accounts by running declarative YAML remediation runbooks.
//!
//! A runbook flows through five stages, each a module:
//!
//! 1. [`runbook`]: load the YAML (with line/column spans); [`validate`] checks it,
//!    collecting every problem before anything is contacted.
//! 2. [`discovery`]: read the account with list calls into an SDK-free [`inventory`].
//! 3. [`planner`]: walk the steps, ask each [`actions`] entry what it would change on the
//!    inventory, and project the result so later steps and runbooks see the state the
//!    earlier ones leave: a [`plan`].
//! 4. [`execute`]: apply a plan change by change, refusing stale changes, reading every
//!    change back, journaling before and after each call.
//! 5. [`audit`]: append a hash-chained record of every plan, dry-run and change.
//!
//! `ARCHITECTURE.md` at the repository root is the map; this crate's modules follow it.

pub mod accounts;
pub mod actions;
pub mod audit;
pub mod aws;
pub mod cli;
pub mod discovery;
pub mod error;
pub mod event;
pub mod execute;
pub mod input;
pub mod inventory;
pub mod jsonl;
pub mod least_privilege;
pub mod plan;
pub mod planner;
pub mod policy;
pub mod progress;
pub mod report;
pub mod runbook;
pub mod ship;
pub mod template;
pub mod trigger;
pub mod validate;

pub use error::{Error, Result};
