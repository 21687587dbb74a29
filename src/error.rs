//! Typed errors of the library. Every user-facing problem says what was expected and
//! where: a runbook problem names `file:line:column`, a flag names the flag, an AWS
//! failure names the operation and the service's error code.

use std::fmt;
use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A place in a runbook file, 1-based, as editors count.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceLocation {
    /// The file as the user named it.
    pub file: PathBuf,
    /// 1-based line; 0 when the parser could not tell.
    pub line: u64,
    /// 1-based column; 0 when the parser could not tell.
    pub column: u64,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
        }
    }
}

/// One problem found while loading or validating input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where it is, when it comes from a file.
    pub location: Option<SourceLocation>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// Every problem of one validation pass, reported together rather than one at a time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// Records a problem at `location`.
    pub fn push(&mut self, location: Option<SourceLocation>, message: impl Into<String>) {
        self.0.push(Problem {
            location,
            message: message.into(),
        });
    }

    /// `Ok(())` when nothing was found, the collected problems otherwise.
    pub fn into_result(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(self))
        }
    }

    /// True when no problem was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// A failed AWS call, with what the service said.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AwsFailure {
    /// The API operation, e.g. `RevokeSecurityGroupEgress`.
    pub operation: String,
    /// The service's error code, e.g. `UnauthorizedOperation`, or a transport class
    /// such as `DispatchFailure` when no answer came back.
    pub code: String,
    /// The service's message, or the transport error.
    pub message: String,
    /// The request id, when the service answered.
    pub request_id: Option<String>,
}

impl fmt::Display for AwsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} failed: {}: {}",
            self.operation, self.code, self.message
        )?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

/// Errors of the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Runbooks, parameters or plan files that do not hold up; nothing was contacted.
    #[error("{0}")]
    Invalid(Problems),
    /// A command-line value that does not parse, naming the flag.
    #[error("{0}")]
    Usage(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An AWS call failed.
    #[error("{0}")]
    Aws(AwsFailure),
    /// A saved plan no longer matches the account: the resource changed since planning.
    #[error("stale plan: {resource} changed since the plan was made ({detail}); plan again")]
    StalePlan {
        /// The drifted resource.
        resource: String,
        /// What differs.
        detail: String,
    },
    /// A change was made but reading it back did not show the intended state.
    #[error("verification failed for {resource}: {detail}")]
    Verification {
        /// The resource read back.
        resource: String,
        /// What differs.
        detail: String,
    },
    /// An account of the run could not be reached: its role could not be assumed, or
    /// the credentials act for another account.
    #[error("account {account}: {reason}")]
    AccountUnreachable {
        /// The account, as people name it.
        account: String,
        /// Why.
        reason: String,
    },
    /// Discovery failed and `--fail-fast` asked not to plan the rest without it.
    #[error("runbook {runbook} in account {account}, {region}: discovery failed: {reason}")]
    DiscoveryFailed {
        /// The runbook whose discovery failed.
        runbook: String,
        /// The account, as people name it.
        account: String,
        /// Where.
        region: String,
        /// The failed call.
        reason: String,
    },
    /// A saved plan is not as harden saved it: edited by hand, or made elsewhere.
    #[error(
        "{path}: refusing to apply an edited plan: {detail}; plan again, or pass --accept-edited-plan to apply it as it is (the audit records that you did)"
    )]
    EditedPlan {
        /// The plan file.
        path: PathBuf,
        /// What differs from the plan as saved.
        detail: String,
    },
    /// No run of that id in the state directory.
    #[error("{state_dir} has no run {run} (`harden runs` lists them)", state_dir = state_dir.display())]
    NoSuchRun {
        /// The run id asked for.
        run: String,
        /// The state directory.
        state_dir: PathBuf,
    },
    /// A run cannot be resumed as it is: it was resumed already, or a runbook it applied
    /// has changed since.
    #[error("cannot resume run {run}: {reason}")]
    NotResumable {
        /// The run id.
        run: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// A run was rolled back already: rolling it back again would undo the rollback's
    /// own record of what it put back.
    #[error("rollback {run}: run {by} rolled it back already")]
    RolledBackAlready {
        /// The run asked to be rolled back.
        run: String,
        /// The rollback run that did.
        by: String,
    },
    /// No compliance report to read: the run named has none, or no run has one yet.
    #[error("{detail}")]
    NoReport {
        /// Where harden looked and what to do instead.
        detail: String,
    },
    /// Another run holds the account-region's lease (`--lease-bucket`).
    #[error(
        "account {account}, {region}: run {run} ({principal}) is changing it and holds its lease until {until}; nothing was changed: apply again once it has finished"
    )]
    Leased {
        /// The account.
        account: String,
        /// The region.
        region: String,
        /// The run holding it.
        run: String,
        /// Who runs it.
        principal: String,
        /// When the lease expires.
        until: String,
    },
    /// A resource a run created holds data now, so undoing the run leaves it: harden
    /// deletes only what is still empty.
    #[error(
        "{resource} is not empty ({what}); harden deletes only an empty one it created, so it is left as it is"
    )]
    NotEmpty {
        /// The resource.
        resource: String,
        /// What it holds, or what uses it.
        what: String,
    },
    /// The audit log does not verify.
    #[error("audit log {path} line {line}: {detail}")]
    AuditBroken {
        /// The log.
        path: PathBuf,
        /// First bad line, 1-based.
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// A change of a saved plan whose call harden cannot make as written (a plan file
    /// edited by hand, or made by another harden), named before anything is sent.
    #[error("change {change}: {detail}")]
    PlanInput {
        /// The change's id.
        change: String,
        /// What is wrong with its call.
        detail: String,
    },
    /// Another harden holds the state directory's lock.
    #[error(
        "{}: another harden is writing to this state directory; wait for it to finish (two writers would fork the audit chain)",
        state_dir.display()
    )]
    StateDirBusy {
        /// The state directory.
        state_dir: PathBuf,
    },
    /// What a run did could not be written to its journal or the audit log (a full
    /// disk, a removed folder): the run stopped starting changes at the first.
    #[error(
        "the run stopped: {} could not be recorded; the journal and audit log end before it, and `harden plan` reads what was made",
        .0.join("; ")
    )]
    NotRecorded(Vec<String>),
    /// A template failed to render.
    #[error("{0}")]
    Template(String),
    /// An internal invariant broke; a bug in harden.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// A saved plan's change `change` whose call cannot be made as written.
    pub fn plan_input(change: &str, detail: impl Into<String>) -> Self {
        Error::PlanInput {
            change: change.to_string(),
            detail: detail.into(),
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
