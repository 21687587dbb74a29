//! Append-only JSON-lines files, each line synced to disk before `append` returns: the
//! durability the audit log and run journals promise.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};

/// An open JSON-lines file, appended to only.
#[derive(Debug)]
pub struct JsonLines {
    path: PathBuf,
    file: File,
}

impl JsonLines {
    /// Opens `path` for appending, creating it if needed.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Writes `value` as one line and syncs it.
    pub fn append<T: Serialize>(&mut self, value: &T) -> Result<()> {
        let line = serde_json::to_string(value).map_err(|e| {
            Error::Internal(format!(
                "{}: line does not serialize: {e}",
                self.path.display()
            ))
        })?;
        self.append_lines([line])
    }

    /// Writes already serialized lines (each one JSON value, without its newline) in
    /// one write and syncs them once: a batch costs one disk sync, not one per line.
    pub fn append_lines<I>(&mut self, lines: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut bytes = String::new();
        for line in lines {
            bytes.push_str(line.as_ref());
            bytes.push('\n');
        }
        self.append_text(&bytes)
    }

    /// Writes `text`, whole lines each ending in a newline, in one write and syncs it.
    pub fn append_text(&mut self, text: &str) -> Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(text.as_bytes())
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::io(&self.path, e))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
