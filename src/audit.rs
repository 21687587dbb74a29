//! The audit log: one JSON line per change apply attempted (and one per plan, dry-run
//! and apply summary), each carrying the SHA-256 of the record before it and its own,
//! so an edited, removed or reordered record breaks the chain at that line. A head file
//! beside the log holds the count and last hash, so a record cut from the end is seen
//! too. Records never hold credentials: only the caller's ARN. Format:
//! `docs/audit-format.md`.

use std::fs::{File, OpenOptions};
use std::io::Write;
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
    /// Set when the call answered an error yet the read-back showed the change made
    /// (its first answer lost and the retry refused as already done): what it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<String>,
}

impl ChangeRecord {
    /// The record of `change` (of `plan`, whose runbook digest it names) ending in
    /// `outcome`, with nothing read, requested or timed yet: the caller fills those in.
    pub fn of(plan: &crate::plan::Plan, change: &crate::plan::Change, outcome: Outcome) -> Self {
        Self {
            change_id: change.id.clone(),
            runbook: change.runbook.clone(),
            runbook_digest: plan
                .runbooks
                .iter()
                .find(|r| r.id == change.runbook)
                .map(|r| r.digest.clone())
                .unwrap_or_default(),
            region: change.region.clone(),
            step: change.step.clone(),
            action: change.action.clone(),
            resource: change.resource.clone(),
            call: change.call.clone(),
            before: Value::Null,
            after: Value::Null,
            outcome,
            request_ids: Vec::new(),
            duration_ms: 0,
            cause: None,
            recovered: None,
        }
    }
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
    /// A plan was saved for apply (`plan --out`, changes held for approval): what
    /// `apply --plan` checks the file against.
    PlanSaved(Box<crate::plan::seal::Seal>),
    /// A plan file matching no saved plan was applied as it is, by the operator's
    /// choice (`--accept-edited-plan`).
    EditedPlanAccepted {
        /// The plan file.
        path: String,
        /// [`crate::plan::Plan::digest`] of what was applied.
        plan_digest: String,
        /// What differed from the plan as saved.
        detail: String,
    },
    /// The log was found cut short by a process that stopped mid-write, and mended.
    Repair {
        /// What was found and what was done.
        detail: String,
    },
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

impl Head {
    /// The head of an empty log: what a missing `audit.head` stands for.
    fn none() -> Self {
        Head {
            records: 0,
            hash: GENESIS.to_string(),
        }
    }
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
    /// Opens (creating) the log, checks the whole chain, and finds its end. A chain
    /// that does not verify is refused before anything else happens: harden never
    /// appends to a broken chain. What a process killed mid-write leaves (a last line
    /// cut short, or `audit.head` one write behind a record that verifies) is mended,
    /// and the first record appended says so.
    pub fn open(state_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(state_dir).map_err(|e| Error::io(state_dir, e))?;
        let lock = lock_state_dir(state_dir)?;
        let path = log_path(state_dir);
        let chain = check_chain(&path)?;
        let repairs = assess(&path, &chain, read_head(state_dir)?)?;
        if let Some(cut) = &chain.cut_short {
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            file.set_len(cut.offset)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io(&path, e))?;
        }
        let mut log = Self {
            log: JsonLines::open(&path)?,
            head_path: head_path(state_dir),
            last_hash: chain.last_hash,
            seq: chain.count,
            _lock: lock,
        };
        if !repairs.is_empty() {
            log.append(
                "repair",
                "",
                "harden",
                Entry::Repair {
                    detail: repairs.join("; "),
                },
            )?;
        }
        Ok(log)
    }

    /// Appends one record and syncs it.
    pub fn append(
        &mut self,
        run_id: &str,
        account_id: &str,
        principal: &str,
        entry: Entry,
    ) -> Result<Record> {
        let appended = Appended::new(account_id.to_string(), principal.to_string(), &entry)?;
        let (seq, time) = (self.seq + 1, jiff::Timestamp::now());
        let mut text = String::new();
        let hash = seal_into(&mut text, run_id, seq, time, &appended, &self.last_hash)?;
        let prev = self.last_hash.clone();
        self.write(&text, seq, &hash)?;
        Ok(Record {
            v: AUDIT_FORMAT_VERSION,
            seq,
            time,
            run_id: run_id.to_string(),
            account_id: appended.account_id,
            principal: appended.principal,
            entry,
            prev,
            hash,
        })
    }

    /// Appends records of one run in order, chained as if appended one by one, in one
    /// write with one disk sync and one head update: what a page of changes concluded
    /// together costs. Each is sealed into the write's text as it comes: a page's
    /// records are never held twice. On an error nothing after the log's last synced
    /// record counts (the next open mends a line cut short). Answers how many were
    /// appended.
    pub fn append_all(&mut self, run_id: &str, batch: Vec<Appended>) -> Result<usize> {
        let (mut seq, mut last_hash) = (self.seq, self.last_hash.clone());
        let count = batch.len();
        let mut text = String::new();
        for appended in batch {
            seq += 1;
            last_hash = seal_into(
                &mut text,
                run_id,
                seq,
                jiff::Timestamp::now(),
                &appended,
                &last_hash,
            )?;
        }
        if count > 0 {
            self.write(&text, seq, &last_hash)?;
        }
        Ok(count)
    }

    /// Writes sealed lines (each ending in a newline) with one sync, then the head:
    /// `seq` and `hash` are the last line's.
    fn write(&mut self, text: &str, seq: u64, hash: &str) -> Result<()> {
        self.log.append_text(text)?;
        self.seq = seq;
        self.last_hash = hash.to_string();
        let head = serde_json::to_string(&Head {
            records: self.seq,
            hash: self.last_hash.clone(),
        })
        .map_err(|e| Error::Internal(e.to_string()))?;
        write_synced(&self.head_path, head.as_bytes())
    }
}

/// One record to append: about which account, acting as whom, and what, serialized.
/// A page's records are held so until written: the text takes a fraction of the
/// memory of the values it was made from.
#[derive(Debug)]
pub struct Appended {
    /// The account the record is about.
    pub account_id: String,
    /// Who harden acted as there.
    pub principal: String,
    /// The entry's fields as the record's line holds them: its JSON object without
    /// the braces (a record's line is its header, these, and its chain fields).
    entry_fields: String,
}

impl Appended {
    /// `entry` about `account_id`, acting as `principal`, to append.
    pub fn new(account_id: String, principal: String, entry: &Entry) -> Result<Self> {
        let object = serde_json::to_string(entry)
            .map_err(|e| Error::Internal(format!("audit record does not serialize: {e}")))?;
        let entry_fields = object
            .strip_prefix('{')
            .and_then(|o| o.strip_suffix('}'))
            .ok_or_else(|| Error::Internal("an audit entry is not a JSON object".into()))?
            .to_string();
        Ok(Self {
            account_id,
            principal,
            entry_fields,
        })
    }
}

/// The fields of a record before its entry's, in the order [`Record`] has them.
#[derive(Serialize)]
struct Header<'a> {
    v: u32,
    seq: u64,
    time: jiff::Timestamp,
    run_id: &'a str,
    account_id: &'a str,
    principal: &'a str,
}

/// Appends `appended`'s record line (and a newline) to `text`, chained to `prev`, and
/// answers its hash. The line is what serializing its [`Record`] gives, `hash` last;
/// the record as hashed is the line with that field cut off (the verifier rebuilds the
/// hashed form its own way, so the two must agree, which the chain tests check).
fn seal_into(
    text: &mut String,
    run_id: &str,
    seq: u64,
    time: jiff::Timestamp,
    appended: &Appended,
    prev: &str,
) -> Result<String> {
    let header = serde_json::to_string(&Header {
        v: AUDIT_FORMAT_VERSION,
        seq,
        time,
        run_id,
        account_id: &appended.account_id,
        principal: &appended.principal,
    })
    .map_err(|e| Error::Internal(format!("audit record does not serialize: {e}")))?;
    let start = text.len();
    text.push_str(header.strip_suffix('}').unwrap_or(&header));
    if !appended.entry_fields.is_empty() {
        text.push(',');
        text.push_str(&appended.entry_fields);
    }
    text.push_str(",\"prev\":");
    text.push_str(&Value::from(prev).to_string());
    text.push('}');
    let hash = hash_of(prev, &text[start..]);
    text.pop();
    text.push_str(",\"hash\":\"");
    text.push_str(&hash);
    text.push_str("\"}\n");
    Ok(hash)
}

/// The log shared by the tasks of one run (concurrent changes, watch's events).
pub fn lock(log: &std::sync::Mutex<AuditLog>) -> Result<std::sync::MutexGuard<'_, AuditLog>> {
    log.lock()
        .map_err(|_| Error::Internal("audit lock poisoned".into()))
}

/// Takes the state directory's lock, refusing (not waiting) when another harden holds it.
fn lock_state_dir(state_dir: &Path) -> Result<File> {
    let path = state_dir.join("lock");
    let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::StateDirBusy {
            state_dir: state_dir.to_path_buf(),
        }),
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

/// Reads every record of the log, in order, leaving out a last line cut short (no
/// newline, not JSON): what a process killed while writing it leaves, and what the next
/// [`AuditLog::open`] mends.
pub fn read(state_dir: &Path) -> Result<Vec<Record>> {
    read_lines_where(state_dir, |_| true)
}

/// The records of the lines `keep` accepts, as [`read`] reads them: a caller after a
/// few records does not hold the whole log parsed (it grows by a record a change).
fn read_lines_where(state_dir: &Path, keep: impl Fn(&str) -> bool) -> Result<Vec<Record>> {
    let path = log_path(state_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let cut = !text.is_empty() && !text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut records = Vec::with_capacity(lines.len());
    for (index, line) in lines.iter().enumerate() {
        if line.trim().is_empty() || !keep(line) {
            continue;
        }
        match serde_json::from_str::<Record>(line) {
            Ok(record) => records.push(record),
            Err(_) if cut && index + 1 == lines.len() => {}
            Err(e) => {
                return Err(Error::AuditBroken {
                    path: path.clone(),
                    line: index + 1,
                    detail: format!("not an audit record: {e}"),
                });
            }
        }
    }
    Ok(records)
}

/// The seals of every plan saved for apply with this state directory, oldest first.
pub fn seals(state_dir: &Path) -> Result<Vec<crate::plan::seal::Seal>> {
    // harden writes compact JSON, so a seal's line names its type so; a line that only
    // mentions it elsewhere is parsed and left out below.
    let saved = read_lines_where(state_dir, |line| line.contains(r#""type":"plan_saved""#))?;
    Ok(saved
        .into_iter()
        .filter_map(|record| match record.entry {
            Entry::PlanSaved(seal) => Some(*seal),
            _ => None,
        })
        .collect())
}

/// Checks, without writing, that the log in `state_dir` can be appended to: its chain
/// verifies, or shows only what a process killed mid-write leaves (mended when the log
/// is next opened). Commands check this before they contact anything, so a broken
/// chain stops them before discovery.
pub fn check_appendable(state_dir: &Path) -> Result<()> {
    let path = log_path(state_dir);
    let chain = check_chain(&path)?;
    assess(&path, &chain, read_head(state_dir)?).map(drop)
}

/// Compares the chain with `audit.head`: an error for what only tampering or loss
/// explains, otherwise what opening the log must mend (said in its repair record).
fn assess(path: &Path, chain: &Chain, head: Option<Head>) -> Result<Vec<String>> {
    let mut repairs = Vec::new();
    if let Some(cut) = &chain.cut_short {
        repairs.push(format!(
            "line {} was cut short (a process stopped while writing it) and was removed: {} bytes",
            cut.line, cut.bytes
        ));
    }
    let broken = |line: u64, detail: String| Error::AuditBroken {
        path: path.to_path_buf(),
        line: line as usize,
        detail: format!(
            "{detail}; restore audit.jsonl from a copy (harden will not append to a broken chain)"
        ),
    };
    match head.or_else(|| (chain.count > 0).then(Head::none)) {
        Some(head) if head.records > chain.count => {
            return Err(broken(
                chain.count + 1,
                format!(
                    "the log ends after {} records but audit.head records {}: records were removed from the end",
                    chain.count, head.records
                ),
            ));
        }
        Some(head) if head.records == chain.count && head.hash != chain.last_hash => {
            return Err(broken(
                chain.count,
                "the last record is not the one audit.head names: it was replaced".into(),
            ));
        }
        Some(head) if head.records < chain.count => {
            if chain.hash_at.get(head.records as usize) != Some(&head.hash) {
                return Err(broken(
                    head.records,
                    "audit.head names a record the log does not hold".into(),
                ));
            }
            repairs.push(format!(
                "audit.head was {} record(s) behind the log (a process stopped between writing a record and the head); it now names record {}",
                chain.count - head.records,
                chain.count
            ));
        }
        _ => {}
    }
    Ok(repairs)
}

/// A line cut short at the end of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CutShort {
    /// Its 1-based line number.
    line: usize,
    /// Where it starts: the length the log has without it.
    offset: u64,
    /// How long it is.
    bytes: usize,
}

/// What reading the chain found.
#[derive(Debug)]
struct Chain {
    count: u64,
    last_hash: String,
    /// `hash_at[n]` is the hash after `n` records (`GENESIS` for none).
    hash_at: Vec<String>,
    cut_short: Option<CutShort>,
}

/// Checks every record's link and hash. A last line without its newline that does not
/// parse is what a process killed mid-write leaves: reported as `cut_short`, not as
/// an error.
fn check_chain(path: &Path) -> Result<Chain> {
    let text = match std::fs::read(path) {
        Ok(bytes) => crate::input::text(path, bytes)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(path, e)),
    };
    let broken = |line: usize, detail: String| Error::AuditBroken {
        path: path.to_path_buf(),
        line,
        detail: format!(
            "{detail}; restore audit.jsonl from a copy (harden will not append to a broken chain)"
        ),
    };
    let mut prev = GENESIS.to_string();
    let mut hash_at = vec![prev.clone()];
    let mut count = 0u64;
    let mut offset = 0u64;
    let mut cut_short = None;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    for (index, raw) in lines.iter().enumerate() {
        let number = index + 1;
        let line = raw.trim_end_matches('\n');
        let last_and_unfinished = index + 1 == lines.len() && !raw.ends_with('\n');
        let parsed = serde_json::from_str::<Value>(line);
        let mut value = match parsed {
            Ok(value) => value,
            Err(_) if last_and_unfinished => {
                cut_short = Some(CutShort {
                    line: number,
                    offset,
                    bytes: raw.len(),
                });
                break;
            }
            Err(e) if line.trim().is_empty() => {
                return Err(broken(number, format!("empty line inside the log ({e})")));
            }
            Err(e) => return Err(broken(number, format!("not JSON: {e}"))),
        };
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
        hash_at.push(prev.clone());
        count += 1;
        offset += raw.len() as u64;
    }
    Ok(Chain {
        count,
        last_hash: prev,
        hash_at,
        cut_short,
    })
}

fn read_head(state_dir: &Path) -> Result<Option<Head>> {
    let path = head_path(state_dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::AuditBroken {
                path: path.clone(),
                line: 0,
                detail: format!("audit.head does not parse: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Checks the whole chain; returns the number of records, or the first bad line. What a
/// process killed mid-write leaves (a last line cut short, `audit.head` one write
/// behind) is reported as such: the next harden run mends it and records that it did.
pub fn verify(state_dir: &Path) -> Result<u64> {
    let path = log_path(state_dir);
    let chain = check_chain(&path)?;
    if let Some(cut) = chain.cut_short {
        return Err(Error::AuditBroken {
            path,
            line: cut.line,
            detail: format!(
                "the last record was cut short ({} bytes; a process stopped while writing it): the {} records before it verify, and the next harden run removes it and records the repair",
                cut.bytes, chain.count
            ),
        });
    }
    // audit.head behind records that verify (or not written yet) means a process
    // stopped between the two writes: nothing is missing, and the next run mends it.
    assess(&path, &chain, read_head(state_dir)?)?;
    Ok(chain.count)
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
    fn records_appended_together_chain_as_if_appended_one_by_one() {
        let dir = log_with(2);
        let mut log = AuditLog::open(dir.path()).expect("reopens");
        let batch = (0..3)
            .map(|i| {
                Appended::new(format!("12345678901{i}"), "p".into(), &summary())
                    .expect("serializes")
            })
            .collect();
        assert_eq!(log.append_all("run-b", batch).expect("appends"), 3);
        assert_eq!(log.append_all("run-b", Vec::new()).expect("nothing"), 0);
        drop(log);
        assert_eq!(verify(dir.path()).expect("verifies"), 5);
        let read = read(dir.path()).expect("reads");
        assert_eq!(
            read.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert_eq!(read[3].prev, read[2].hash);
        assert_eq!(read[3].account_id, "123456789011");
        assert_eq!(read[4].run_id, "run-b");
        let head = read_head(dir.path()).expect("head").expect("written");
        assert_eq!((head.records, head.hash), (5, read[4].hash.clone()));
    }

    #[test]
    fn a_sealed_line_is_its_record_serialized_and_verifies() {
        let change = Entry::Change(Box::new(ChangeRecord {
            change_id: "123456789012/r/us-east-1/s/sg-1#1".into(),
            runbook: "r".into(),
            runbook_digest: "d".into(),
            region: "us-east-1".into(),
            step: "s".into(),
            action: "ec2:restrict-egress".into(),
            resource: ResourceRef {
                kind: crate::actions::ResourceKind::SecurityGroup,
                id: "sg-1".into(),
                tags: [("team".to_string(), "a".to_string())].into(),
            },
            call: ApiCall {
                service: "ec2".into(),
                operation: "ModifySecurityGroupRules".into(),
                input: serde_json::json!({"GroupId": "sg-1", "Note": "quote \" and \u{e9}"}),
            },
            before: serde_json::json!({"egress": [{"cidr": "0.0.0.0/0"}]}),
            after: Value::Null,
            outcome: Outcome::Failed {
                code: "X".into(),
                message: "line\nbreak".into(),
            },
            request_ids: vec!["req-1".into()],
            duration_ms: 12,
            cause: None,
            recovered: Some("already there".into()),
        }));
        let entries = [
            summary(),
            change,
            Entry::Repair {
                detail: "mended".into(),
            },
        ];
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = AuditLog::open(dir.path()).expect("opens");
        for entry in entries {
            let record = log
                .append(
                    "run-s",
                    "123456789012",
                    "arn:aws:iam::123456789012:user/a",
                    entry,
                )
                .expect("appends");
            let line = serde_json::to_string(&record).expect("serializes");
            let logged = std::fs::read_to_string(log_path(dir.path())).expect("reads");
            assert_eq!(logged.lines().last(), Some(line.as_str()));
        }
        drop(log);
        assert_eq!(verify(dir.path()).expect("verifies"), 3);
    }

    #[test]
    fn a_last_line_cut_short_is_left_out_of_what_is_read() {
        let dir = log_with(2);
        let mut file = OpenOptions::new()
            .append(true)
            .open(log_path(dir.path()))
            .expect("opens");
        file.write_all(b"{\"v\":1,\"seq\":3").expect("writes");
        assert_eq!(read(dir.path()).expect("reads").len(), 2);
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

    #[test]
    fn a_head_one_write_behind_verifies_and_the_next_open_mends_it_saying_so() {
        let dir = log_with(3);
        // As a process killed after writing record 3 and before the head leaves it.
        let records = read(dir.path()).expect("reads");
        let behind = serde_json::to_string(&Head {
            records: 2,
            hash: records[1].hash.clone(),
        })
        .expect("head");
        std::fs::write(head_path(dir.path()), behind).expect("writes");
        assert_eq!(verify(dir.path()).expect("nothing is missing"), 3);
        drop(AuditLog::open(dir.path()).expect("mends"));
        assert_eq!(verify(dir.path()).expect("verifies"), 4);
        let records = read(dir.path()).expect("reads");
        let Entry::Repair { detail } = &records[3].entry else {
            panic!("a repair record: {:?}", records[3].entry);
        };
        assert!(
            detail.contains("audit.head was 1 record(s) behind"),
            "{detail}"
        );
    }

    #[test]
    fn a_last_line_cut_short_is_reported_as_such_then_removed_with_a_record() {
        let dir = log_with(3);
        let path = log_path(dir.path());
        let mut file = OpenOptions::new().append(true).open(&path).expect("opens");
        file.write_all(br#"{"v":1,"seq":4,"time":"2026-"#)
            .expect("writes");
        drop(file);
        let message = verify(dir.path()).expect_err("cut short").to_string();
        assert!(
            message.contains("line 4: the last record was cut short")
                && message.contains("the 3 records before it verify"),
            "{message}"
        );
        drop(AuditLog::open(dir.path()).expect("mends"));
        assert_eq!(verify(dir.path()).expect("verifies"), 4);
        let records = read(dir.path()).expect("reads");
        let Entry::Repair { detail } = &records[3].entry else {
            panic!("a repair record");
        };
        assert!(detail.contains("line 4 was cut short"), "{detail}");
    }

    #[test]
    fn a_broken_chain_is_never_appended_to() {
        let dir = log_with(3);
        rewrite(dir.path(), |l| l[1] = l[1].replace("run-1", "run-9"));
        let before = std::fs::read(log_path(dir.path())).expect("reads");
        let refused = AuditLog::open(dir.path()).expect_err("refused");
        assert!(
            matches!(refused, Error::AuditBroken { line: 2, .. }),
            "{refused}"
        );
        assert!(
            refused
                .to_string()
                .contains("restore audit.jsonl from a copy")
        );
        assert_eq!(std::fs::read(log_path(dir.path())).expect("reads"), before);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Any one edit, deletion, insertion, reordering or truncation of a verified log
        /// is caught.
        #[test]
        fn every_single_tampering_is_caught(op in 0usize..5, at in 0usize..5, other in 0usize..5) {
            let dir = log_with(5);
            match op {
                0 => rewrite(dir.path(), |l| l[at] = l[at].replacen("run-", "run-x", 1)),
                1 => rewrite(dir.path(), |l| { l.remove(at); }),
                2 => rewrite(dir.path(), |l| { let copy = l[at].clone(); l.insert(other, copy); }),
                3 => {
                    proptest::prop_assume!(at != other);
                    rewrite(dir.path(), |l| l.swap(at, other));
                }
                _ => rewrite(dir.path(), |l| l.truncate(at)),
            }
            proptest::prop_assert!(verify(dir.path()).is_err());
            proptest::prop_assert!(AuditLog::open(dir.path()).is_err());
        }
    }
}
