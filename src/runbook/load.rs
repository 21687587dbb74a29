//! Reading runbook files. A path is a file or a folder of `*.yaml`/`*.yml` files
//! (not recursive, sorted by name). Parse errors carry the file, line and column.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::model::Runbook;
use crate::error::{Error, Problems, Result, SourceLocation};

/// A parsed runbook with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedRunbook {
    /// The parsed document.
    pub runbook: Runbook,
    /// The file, as found from the user's path.
    pub path: PathBuf,
    /// SHA-256 of the file's bytes, hex; recorded in plans and audit records.
    pub digest: String,
}

impl LoadedRunbook {
    /// The runbook's id.
    pub fn id(&self) -> &str {
        &self.runbook.id.value
    }

    /// A location inside this runbook's file.
    pub fn at(&self, location: &serde_saphyr::Location) -> SourceLocation {
        source_location(&self.path, location)
    }
}

/// Converts a parser location into ours.
pub fn source_location(path: &Path, location: &serde_saphyr::Location) -> SourceLocation {
    SourceLocation {
        file: path.to_path_buf(),
        line: location.line(),
        column: location.column(),
    }
}

/// Expands files and folders into the runbook files they name, in a stable order.
pub fn runbook_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| Error::io(path, e))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                })
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(Error::Usage(format!(
                    "{}: folder holds no runbook (*.yaml or *.yml)",
                    path.display()
                )));
            }
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Parses one runbook from text; `path` is only used for messages.
pub fn parse_runbook(path: &Path, text: &str) -> Result<LoadedRunbook> {
    let runbook: Runbook = serde_saphyr::from_str(text).map_err(|error| {
        let location = error
            .location()
            .map(|l| source_location(path, &l))
            .or_else(|| {
                Some(SourceLocation {
                    file: path.to_path_buf(),
                    line: 0,
                    column: 0,
                })
            });
        let mut problems = Problems::default();
        problems.push(location, parse_message(&error, text));
        Error::Invalid(problems)
    })?;
    Ok(LoadedRunbook {
        runbook,
        path: path.to_path_buf(),
        digest: hex::encode(Sha256::digest(text.as_bytes())),
    })
}

/// The parser's message, without the location it also prints (ours leads) or advice
/// about its own options, followed by the offending line with a caret.
fn parse_message(error: &serde_saphyr::Error, text: &str) -> String {
    let full = error.to_string();
    let first = full.lines().next().unwrap_or_default();
    let mut message = first.trim_start_matches("error: ");
    if let Some(rest) = message.strip_prefix("line ")
        && let Some((_, tail)) = rest.split_once(": ")
    {
        message = tail;
    }
    let message = message
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or(message);
    // The parser's budget names its counters; say which limit in the runbook's terms.
    let limit = if message.starts_with("budget breached") {
        Some(
            "the document expands to too many YAML nodes (aliases expanding, as in a billion-laughs file, or a runbook far larger than any real one)",
        )
    } else if message.starts_with("recursion limit exceeded") {
        Some("values are nested too deeply")
    } else {
        None
    };
    let mut out = match limit {
        Some(limit) => format!("invalid runbook: refused, {limit} ({message})"),
        None => format!("invalid runbook: {message}"),
    };
    if let Some(location) = error.location()
        && location.line() > 0
        && let Some(line) = text.lines().nth((location.line() - 1) as usize)
    {
        let number = location.line().to_string();
        let pad = " ".repeat(number.len());
        let caret = " ".repeat(location.column().saturating_sub(1) as usize);
        out.push_str(&format!(
            "\n {pad} |\n {number} | {line}\n {pad} | {caret}^"
        ));
    }
    out
}

/// Loads every runbook the paths name, reporting the problems of all files together.
pub fn load_paths(paths: &[PathBuf]) -> Result<Vec<LoadedRunbook>> {
    let files = runbook_files(paths)?;
    let mut loaded = Vec::new();
    let mut problems = Problems::default();
    for file in files {
        let text = crate::input::read_text(&file, crate::input::MAX_DOCUMENT_BYTES, "runbook")?;
        match parse_runbook(&file, &text) {
            Ok(runbook) => loaded.push(runbook),
            Err(Error::Invalid(found)) => problems.0.extend(found.0),
            Err(other) => return Err(other),
        }
    }
    problems.into_result()?;
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use proptest::prelude::*;

    use super::parse_runbook;
    use crate::error::Error;
    use crate::runbook::validate::validate;

    fn shipped() -> Vec<(PathBuf, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .expect("runbooks/")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).expect("a shipped runbook");
                (p, text)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A shipped runbook cut short, with a line dropped or a character changed, is
        /// loaded and validated without a panic; what is refused is refused with a
        /// message, and every problem the parser can place names the file.
        #[test]
        fn mutated_shipped_runbooks_never_panic(
            pick in 0usize..16,
            cut in 0usize..20_000,
            drop_line in 0usize..200,
            at in 0usize..20_000,
            replacement in prop_oneof![
                Just(":"), Just("- "), Just("{{"), Just("\""), Just("\t"), Just("&a *a"),
                Just("[{"), Just("\u{0}"), Just("9999999999999999999999"),
            ],
        ) {
            let files = shipped();
            let (path, text) = &files[pick % files.len()];
            let mut lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let n = drop_line % lines.len();
                lines.remove(n);
            }
            let mut mutated = lines.join("\n");
            if !mutated.is_empty() {
                let mut at = at % mutated.len();
                while !mutated.is_char_boundary(at) {
                    at -= 1;
                }
                mutated.insert_str(at, replacement);
            }
            let mut end = cut.min(mutated.len());
            while !mutated.is_char_boundary(end) {
                end -= 1;
            }
            mutated.truncate(end);
            match parse_runbook(path, &mutated).and_then(|loaded| validate(vec![loaded])) {
                Ok(_) => {}
                Err(Error::Invalid(problems)) => {
                    prop_assert!(!problems.0.is_empty());
                    for problem in &problems.0 {
                        prop_assert!(!problem.message.is_empty());
                        if let Some(location) = &problem.location {
                            prop_assert_eq!(&location.file, path);
                        }
                    }
                }
                Err(other) => prop_assert!(false, "an unexpected error: {other}"),
            }
        }
    }
}
