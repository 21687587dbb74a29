//! Recording the AWS operations a process calls, for checking the least IAM policy
//! (`harden iam-policy`) against what harden really does. Off unless
//! `HARDEN_RECORD_CALLS=DIR` is set: each process then appends one JSON line per
//! distinct operation to its own file in DIR, written before the call is sent, so a process
//! killed mid-run has still recorded what it sent.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// The environment variable naming the folder calls are recorded into.
pub const RECORD_CALLS_ENV: &str = "HARDEN_RECORD_CALLS";

/// One recorded operation: the harden command that made it and the SDK's names for
/// the service and the operation (`EC2`, `DescribeSecurityGroups`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct RecordedCall {
    /// The subcommand, e.g. `plan`, `apply`.
    pub command: String,
    /// The SDK's service name.
    pub service: String,
    /// The SDK's operation name.
    pub operation: String,
}

struct Recording {
    command: String,
    file: std::fs::File,
    seen: HashSet<(String, String)>,
}

static RECORDING: OnceLock<Mutex<Recording>> = OnceLock::new();

/// Starts recording this process's calls, made by `command`, into a new file in `dir`.
pub fn start(dir: &Path, command: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let name = format!(
        "{}-{}.jsonl",
        std::process::id(),
        uuid::Uuid::now_v7().simple()
    );
    let file = std::fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(dir.join(name))?;
    // A second start in one process keeps the first recording.
    let _ = RECORDING.set(Mutex::new(Recording {
        command: command.to_string(),
        file,
        seen: HashSet::new(),
    }));
    Ok(())
}

fn record(service: &str, operation: &str) {
    let Some(recording) = RECORDING.get() else {
        return;
    };
    let Ok(mut recording) = recording.lock() else {
        return;
    };
    if !recording
        .seen
        .insert((service.to_string(), operation.to_string()))
    {
        return;
    }
    let call = RecordedCall {
        command: recording.command.clone(),
        service: service.to_string(),
        operation: operation.to_string(),
    };
    if let Ok(mut line) = serde_json::to_string(&call) {
        line.push('\n');
        // A lost record makes the policy check fail loudly (a call the policy seems
        // not to need), never a run fail.
        let _ = recording.file.write_all(line.as_bytes());
    }
}

/// The interceptor every client harden makes carries; it records nothing unless
/// [`start`] was called.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recorder;

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "HardenCallRecorder"
    }

    // Not `read_before_execution`: a client's interceptors run that before the
    // operation's configuration, which holds its name, is in the bag.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(metadata) = cfg.load::<Metadata>() {
            record(metadata.service(), metadata.name());
        }
        Ok(())
    }
}

/// Every call recorded in `dir`'s files.
pub fn read_all(dir: &Path) -> std::io::Result<Vec<RecordedCall>> {
    let mut calls = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            for line in std::fs::read_to_string(&path)?.lines() {
                // A process killed mid-write leaves at most a partial last line.
                if let Ok(call) = serde_json::from_str(line) {
                    calls.push(call);
                }
            }
        }
    }
    Ok(calls)
}
