//! The audit log: one JSON line per change apply attempted (and one per plan, dry-run
//! and apply summary), each carrying the SHA-256 of the record before it and its own,
//! so an edited, removed or reordered record breaks the chain at that line. A head file
//! beside the log holds the count and last hash, so a record cut from the end is seen
//! too. Records never hold credentials: only the caller's ARN. Format:
//! `docs/audit-format.md`.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::jsonl::JsonLines;
use crate::plan::{ApiCall, ResourceRef};

/// Version of the record format.
pub const AUDIT_FORMAT_VERSION: u32 = 1;
/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How an attempted change ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Made and read back as intended.
    Succeeded,
    /// Not made, or made but not verified.
    Failed {
        /// AWS error code, or `StalePlan` / `VerificationFailed`.
        code: String,
        /// What happened.
        message: String,
    },
    /// Not attempted.
    Skipped {
        /// Why.
        reason: String,
    },
}

/// A change apply attempted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// Plan change id.
    pub change_id: String,
    /// Runbook id.
    pub runbook: String,
    /// SHA-256 of the runbook file.
    pub runbook_digest: String,
    /// Region.
    pub region: String,
    /// Step id.
    pub step: String,
    /// Action.
    pub action: String,
    /// Target.
    pub resource: ResourceRef,
    /// Rendered call.
    pub call: ApiCall,
    /// State read before the call (for a revoke: exactly the rules removed, so they can
    /// be restored).
    pub before: Value,
    /// State read back after the call; null when not read.
    pub after: Value,
    /// How it ended.
    pub outcome: Outcome,
    /// AWS request ids.
    pub request_ids: Vec<String>,
    /// Milliseconds from the read before to the read back.
    pub duration_ms: u64,
    /// The event the change responded to (`harden respond`, `harden watch`): who made
    /// the call it reverts, from where, and the call as AWS recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<crate::event::EventCause>,
}

/// What apply did to put a resource back after its chain of changes stopped part-way
/// (an instance whose volume swap failed: originals re-attached, state restored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompensationRecord {
    /// The change that failed, or was the first not attempted.
    pub change_id: String,
    /// Why the chain stopped.
    pub cause: String,
    /// Runbook id.
    pub runbook: String,
    /// Region.
    pub region: String,
    /// Step id.
    pub step: String,
    /// The resource put back.
    pub resource: ResourceRef,
    /// The calls made, in order.
    pub calls: Vec<ApiCall>,
    /// State read before undoing.
    pub before: Value,
    /// State read back afterwards.
    pub after: Value,
    /// `succeeded` when read back as it was before the chain; otherwise failed with
    /// code `CompensationFailed`: a person must look.
    pub outcome: Outcome,
    /// AWS request ids.
    pub request_ids: Vec<String>,
}

/// Summary of a plan, dry-run or apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// SHA-256 of the plan as harden writes it (`sha256sum` of a file saved with
    /// `plan --out` gives the same), so an apply names the exact plan it executed.
    pub plan_digest: String,
    /// Runbook ids with their digests.
    pub runbooks: Vec<(String, String)>,
    /// Regions.
    pub regions: Vec<String>,
    /// The accounts the plan covers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    /// Changes pending (plan, dry-run) or attempted (apply).
    pub changes: usize,
    /// Blocked changes.
    pub blocked: usize,
    /// Apply only: succeeded.
    #[serde(default)]
    pub succeeded: usize,
    /// Apply only: failed.
    #[serde(default)]
    pub failed: usize,
    /// Apply only: not attempted.
    #[serde(default)]
    pub skipped: usize,
    /// Dry-run only: probes that said the caller may not make the call.
    #[serde(default)]
    pub unauthorized: usize,
    /// Runbooks the plan could not plan in a region, with why (a partial plan).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_planned: Vec<crate::plan::NotPlanned>,
}

/// What a record is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    /// A plan was computed.
    Plan(Summary),
    /// A dry-run was computed and probed.
    DryRun(Summary),
    /// A change was attempted (or skipped).
    Change(Box<ChangeRecord>),
    /// A resource was put back after its chain of changes stopped part-way.
    Compensation(Box<CompensationRecord>),
    /// An apply ended.
    Apply(Summary),
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// [`AUDIT_FORMAT_VERSION`].
    pub v: u32,
    /// 1-based position in the log.
    pub seq: u64,
    /// When it was written.
    pub time: jiff::Timestamp,
    /// Run id.
    pub run_id: String,
    /// Account.
    pub account_id: String,
    /// Caller principal ARN.
    pub principal: String,
    /// What happened.
    #[serde(flatten)]
    pub entry: Entry,
    /// Hash of the previous record ([`GENESIS`] for the first).
    pub prev: String,
    /// SHA-256 of `prev` and this record without `hash`.
    pub hash: String,
}

/// The log's head: how many records and the last hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Head {
    records: u64,
    hash: String,
}

fn hash_of(prev: &str, record_without_hash: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev.as_bytes());
    hasher.update(b"\n");
    hasher.update(record_without_hash.as_bytes());
    hex::encode(hasher.finalize())
}

/// Appends records to `STATE_DIR/audit.jsonl`, each synced to disk before returning.
#[derive(Debug)]
pub struct AuditLog {
    log: JsonLines,
    head_path: PathBuf,
    last_hash: String,
    seq: u64,
    /// Held while the log is open: two writers would fork the chain.
    _lock: File,
}

/// The log file in a state directory.
pub fn log_path(state_dir: &Path) -> PathBuf {
    state_dir.join("audit.jsonl")
}

fn head_path(state_dir: &Path) -> PathBuf {
    state_dir.join("audit.head")
}

impl AuditLog {
    /// Opens (creating) the log and finds the chain's end.
    pub fn open(state_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(state_dir).map_err(|e| Error::io(state_dir, e))?;
        let lock = lock_state_dir(state_dir)?;
        let path = log_path(state_dir);
        let (seq, last_hash) = match File::open(&path) {
            Ok(file) => {
                let mut last = None;
                for line in BufReader::new(file).lines() {
                    let line = line.map_err(|e| Error::io(&path, e))?;
                    if !line.trim().is_empty() {
                        last = Some(line);
                    }
                }
                match last {
                    Some(line) => {
                        let record: Record =
                            serde_json::from_str(&line).map_err(|e| Error::AuditBroken {
                                path: path.clone(),
                                line: 0,
                                detail: format!(
                                    "last record does not parse ({e}); run `harden audit verify`"
                                ),
                            })?;
                        (record.seq, record.hash)
                    }
                    None => (0, GENESIS.to_string()),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, GENESIS.to_string()),
            Err(e) => return Err(Error::io(&path, e)),
        };
        Ok(Self {
            log: JsonLines::open(&path)?,
            head_path: head_path(state_dir),
            last_hash,
            seq,
            _lock: lock,
        })
    }

    /// Appends one record and syncs it.
    pub fn append(
        &mut self,
        run_id: &str,
        account_id: &str,
        principal: &str,
        entry: Entry,
    ) -> Result<Record> {
        let mut record = Record {
            v: AUDIT_FORMAT_VERSION,
            seq: self.seq + 1,
            time: jiff::Timestamp::now(),
            run_id: run_id.to_string(),
            account_id: account_id.to_string(),
            principal: principal.to_string(),
            entry,
            prev: self.last_hash.clone(),
            hash: String::new(),
        };
        let without_hash = unhashed_json(&record)?;
        record.hash = hash_of(&record.prev, &without_hash);
        self.log.append(&record)?;
        self.seq = record.seq;
        self.last_hash = record.hash.clone();
        let head = serde_json::to_string(&Head {
            records: self.seq,
            hash: self.last_hash.clone(),
        })
        .map_err(|e| Error::Internal(e.to_string()))?;
        write_synced(&self.head_path, head.as_bytes())?;
        Ok(record)
    }
}

/// Takes the state directory's lock, refusing (not waiting) when another harden holds it.
fn lock_state_dir(state_dir: &Path) -> Result<File> {
    let path = state_dir.join("lock");
    let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Usage(format!(
            "{}: another harden is writing to this state directory; wait for it to finish (two writers would fork the audit chain)",
            state_dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// The record serialized without its `hash` field, as hashed.
fn unhashed_json(record: &Record) -> Result<String> {
    let mut value = serde_json::to_value(record)
        .map_err(|e| Error::Internal(format!("audit record does not serialize: {e}")))?;
    if let Some(map) = value.as_object_mut() {
        map.remove("hash");
    }
    Ok(value.to_string())
}

/// Reads every record of the log, in order.
pub fn read(state_dir: &Path) -> Result<Vec<Record>> {
    let path = log_path(state_dir);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let mut records = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::io(&path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(&line).map_err(|e| Error::AuditBroken {
            path: path.clone(),
            line: index + 1,
            detail: format!("not an audit record: {e}"),
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Checks the whole chain; returns the number of records, or the first bad line.
pub fn verify(state_dir: &Path) -> Result<u64> {
    let path = log_path(state_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let broken = |line: usize, detail: String| Error::AuditBroken {
        path: path.clone(),
        line,
        detail,
    };
    let mut prev = GENESIS.to_string();
    let mut count = 0u64;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            return Err(broken(number, "empty line inside the log".into()));
        }
        let mut value: Value =
            serde_json::from_str(line).map_err(|e| broken(number, format!("not JSON: {e}")))?;
        let map = value
            .as_object_mut()
            .ok_or_else(|| broken(number, "not a JSON object".into()))?;
        let stated = map
            .remove("hash")
            .and_then(|h| h.as_str().map(str::to_string))
            .ok_or_else(|| broken(number, "no hash field".into()))?;
        let stated_prev = map.get("prev").and_then(Value::as_str).unwrap_or_default();
        if stated_prev != prev {
            return Err(broken(
                number,
                "its prev hash is not the hash of the record before it: a record was removed, reordered or inserted here".into(),
            ));
        }
        let seq = map.get("seq").and_then(Value::as_u64).unwrap_or_default();
        if seq != count + 1 {
            return Err(broken(
                number,
                format!("sequence number {seq}, expected {}", count + 1),
            ));
        }
        let computed = hash_of(&prev, &value.to_string());
        if computed != stated {
            return Err(broken(
                number,
                "its content does not match its hash: the record was edited".into(),
            ));
        }
        prev = stated;
        count += 1;
    }
    match std::fs::read_to_string(head_path(state_dir)) {
        Ok(head) => {
            let head: Head = serde_json::from_str(&head)
                .map_err(|e| broken(count as usize, format!("audit.head does not parse: {e}")))?;
            if head.records != count || head.hash != prev {
                return Err(broken(
                    count as usize + 1,
                    format!(
                        "the log ends after {count} records but audit.head records {}: records were removed from the end",
                        head.records
                    ),
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && count == 0 => {}
        Err(e) => return Err(Error::io(head_path(state_dir), e)),
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Entry {
        Entry::Plan(Summary {
            plan_digest: "p".into(),
            runbooks: vec![("r".into(), "d".into())],
            regions: vec!["us-east-1".into()],
            accounts: Vec::new(),
            changes: 1,
            blocked: 0,
            succeeded: 0,
            failed: 0,
            skipped: 0,
            unauthorized: 0,
            not_planned: Vec::new(),
        })
    }

    fn log_with(n: usize) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = AuditLog::open(dir.path()).expect("opens");
        for i in 0..n {
            log.append(
                &format!("run-{i}"),
                "123456789012",
                "arn:aws:iam::123456789012:user/a",
                summary(),
            )
            .expect("appends");
        }
        dir
    }

    #[test]
    fn a_second_writer_is_refused_while_the_first_holds_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = AuditLog::open(dir.path()).expect("opens");
        let second = AuditLog::open(dir.path()).expect_err("locked");
        assert!(
            second.to_string().contains("another harden is writing"),
            "{second}"
        );
        drop(first);
        AuditLog::open(dir.path()).expect("free again");
    }

    #[test]
    fn an_intact_chain_verifies_and_reopening_continues_it() {
        let dir = log_with(3);
        let mut log = AuditLog::open(dir.path()).expect("reopens");
        log.append("run-x", "1", "p", summary()).expect("appends");
        assert_eq!(verify(dir.path()).expect("verifies"), 4);
    }

    fn rewrite(dir: &Path, edit: impl Fn(&mut Vec<String>)) {
        let path = log_path(dir);
        let mut lines: Vec<String> = std::fs::read_to_string(&path)
            .expect("reads")
            .lines()
            .map(str::to_string)
            .collect();
        edit(&mut lines);
        std::fs::write(&path, lines.join("\n") + "\n").expect("writes");
    }

    fn bad_line(dir: &Path) -> usize {
        match verify(dir) {
            Err(Error::AuditBroken { line, .. }) => line,
            other => panic!("expected a broken chain, got {other:?}"),
        }
    }

    #[test]
    fn an_edited_record_is_named() {
        let dir = log_with(3);
        rewrite(dir.path(), |l| l[1] = l[1].replace("run-1", "run-9"));
        assert_eq!(bad_line(dir.path()), 2);
    }

    #[test]
    fn an_edited_last_record_is_named() {
        let dir = log_with(3);
        rewrite(dir.path(), |l| l[2] = l[2].replace("run-2", "run-9"));
        assert_eq!(bad_line(dir.path()), 3);
    }

    #[test]
    fn a_removed_record_is_named() {
        let dir = log_with(3);
        rewrite(dir.path(), |l| {
            l.remove(1);
        });
        assert_eq!(bad_line(dir.path()), 2);
    }

    #[test]
    fn reordered_records_are_named() {
        let dir = log_with(3);
        rewrite(dir.path(), |l| l.swap(0, 1));
        assert_eq!(bad_line(dir.path()), 1);
    }

    #[test]
    fn a_record_cut_from_the_end_is_seen() {
        let dir = log_with(3);
        rewrite(dir.path(), |l| {
            l.pop();
        });
        assert_eq!(bad_line(dir.path()), 3);
    }
}
