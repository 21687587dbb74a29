//! Reading the files people hand harden (runbooks, plans, policies, accounts files,
//! events) within bounds: a file over its limit is refused before it is read whole
//! (`/dev/zero` as a runbook costs one buffer, not the machine's memory), and text that
//! is not UTF-8 is refused naming the line and column of the first bad byte.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Problems, Result, SourceLocation};

/// The largest runbook, policy or accounts file accepted.
pub const MAX_DOCUMENT_BYTES: u64 = 4 * 1024 * 1024;
/// The largest saved plan accepted (an organization's plan runs to tens of megabytes).
pub const MAX_PLAN_BYTES: u64 = 256 * 1024 * 1024;

/// Reads `path` as UTF-8 text of at most `limit` bytes; `what` names the kind of file in
/// the error ("runbook", "plan").
pub fn read_text(path: &Path, limit: u64, what: &str) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // A regular file says its size: refuse it without reading anything, and read it
    // into a buffer of that size (a plan of megabytes read into a growing one costs
    // half as much again while it is parsed).
    let size = match file.metadata() {
        Ok(meta) if meta.is_file() && meta.len() > limit => {
            return Err(too_big(path, limit, what));
        }
        Ok(meta) if meta.is_file() => usize::try_from(meta.len()).unwrap_or(0),
        _ => 0,
    };
    text(
        path,
        read_into(Vec::with_capacity(size), file, path, limit, what)?,
    )
}

/// Reads `reader` (a device, a pipe, standard input: what cannot say its size) to its
/// end, but never more than one byte past `limit`; `path` names it in errors.
pub fn read_limited(reader: impl Read, path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    read_into(Vec::new(), reader, path, limit, what)
}

fn read_into(
    mut bytes: Vec<u8>,
    reader: impl Read,
    path: &Path,
    limit: u64,
    what: &str,
) -> Result<Vec<u8>> {
    reader
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(too_big(path, limit, what));
    }
    Ok(bytes)
}

fn too_big(path: &Path, limit: u64, what: &str) -> Error {
    invalid(
        path,
        0,
        0,
        format!("{what} is over {limit} bytes: harden reads a {what} of at most that size"),
    )
}

/// `bytes` as UTF-8, or an error naming the line and column (in characters) of the first
/// byte that is not.
pub fn text(path: &Path, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        // Everything before the bad byte is valid UTF-8.
        let before = std::str::from_utf8(valid).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before
            .rsplit('\n')
            .next()
            .map_or(0, |last| last.chars().count())
            + 1;
        invalid(
            path,
            line as u64,
            column as u64,
            "not UTF-8 text: the byte here is not part of a UTF-8 character".into(),
        )
    })
}

fn invalid(path: &Path, line: u64, column: u64, message: String) -> Error {
    let mut problems = Problems::default();
    problems.push(
        Some(SourceLocation {
            file: PathBuf::from(path),
            line,
            column,
        }),
        message,
    );
    Error::Invalid(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_is_refused_at_the_limit_without_reading_it_whole() {
        let message = read_text(Path::new("/dev/zero"), 1024, "runbook")
            .expect_err("endless")
            .to_string();
        assert_eq!(
            message,
            "/dev/zero: runbook is over 1024 bytes: harden reads a runbook of at most that size"
        );
    }

    #[test]
    fn a_large_file_is_refused_by_its_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.yaml");
        std::fs::write(&path, vec![b'a'; 2048]).expect("write");
        let message = read_text(&path, 1024, "runbook")
            .expect_err("too big")
            .to_string();
        assert!(
            message.ends_with(
                "runbook is over 1024 bytes: harden reads a runbook of at most that size"
            ),
            "{message}"
        );
    }

    #[test]
    fn invalid_utf8_is_located() {
        let message = text(
            Path::new("t.yaml"),
            b"version: 1\nid: \xc3\xa9\xff".to_vec(),
        )
        .expect_err("not UTF-8")
        .to_string();
        assert_eq!(
            message,
            "t.yaml:2:6: not UTF-8 text: the byte here is not part of a UTF-8 character"
        );
    }
}
