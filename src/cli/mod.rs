//! The command line: arguments are parsed here ([`args`]), each subcommand is one
//! function in [`commands`], and errors become exit codes in one place ([`main`]).
//! Exit codes: 0 success (and no changes, with `--detailed-exitcode`), 1 error,
//! 2 success with changes pending (`--detailed-exitcode`), 130 stopped at once by a
//! second Ctrl-C.

pub mod apply;
pub mod args;
pub mod audit;
pub mod commands;
pub mod enforce;
pub mod iam_policy;
pub mod list;
pub mod output;
pub mod plan;
pub mod progress;
pub mod report;
pub mod respond;
pub mod resume;
pub mod rollback;
pub mod runs;
pub mod settings;
pub mod validate;
pub mod watch;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::error::Error;
pub use args::Cli;

/// Exit statuses of the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Success; no changes pending.
    Success,
    /// An error; nothing more was changed.
    Failure,
    /// Success with changes pending (`--detailed-exitcode`).
    ChangesPending,
    /// Stopped at once by a second Ctrl-C: 130, as shells report an interrupt.
    Interrupted,
}

/// Told by a second Ctrl-C during an apply (the first lets the changes in flight
/// finish): [`main`] drops the command where it is and exits [`Status::Interrupted`].
pub(crate) static EXIT_AT_ONCE: std::sync::LazyLock<tokio::sync::Notify> =
    std::sync::LazyLock::new(tokio::sync::Notify::new);

impl From<Status> for ExitCode {
    fn from(status: Status) -> Self {
        match status {
            Status::Success => ExitCode::SUCCESS,
            Status::Failure => ExitCode::from(1),
            Status::ChangesPending => ExitCode::from(2),
            Status::Interrupted => ExitCode::from(130),
        }
    }
}

/// Runs the binary: parse, execute, print the error once, map it to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HARDEN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error,harden=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    // One thread: a command's work is one task polling many calls at once, and on a
    // multi-threaded runtime every answer was read by a worker thread that then woke
    // the task on another (futex and epoll were about an eighth of apply's CPU).
    // Blocking work (DNS lookups) still goes to tokio's blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = commands::run(cli) => outcome,
            () = EXIT_AT_ONCE.notified() => Ok(Status::Interrupted),
        }
    });
    // Tasks still running (a change in flight at a second Ctrl-C) are not waited for.
    runtime.shutdown_background();
    match outcome {
        Ok(status) => status.into(),
        Err(error) => {
            report(&error);
            Status::Failure.into()
        }
    }
}

/// Prints an error, one `error:` line per problem.
pub fn report(error: &Error) {
    match error {
        Error::Invalid(problems) => {
            for problem in &problems.0 {
                eprintln!("error: {problem}");
            }
        }
        other => eprintln!("error: {other}"),
    }
}
