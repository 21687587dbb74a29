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
    use crate::validate::validate;

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

    /// The problems a parse reports, as `file:line:column: message`.
    fn parse_problems(text: &str) -> Vec<String> {
        match parse_runbook(Path::new("r.yaml"), text) {
            Err(Error::Invalid(problems)) => problems.0.iter().map(ToString::to_string).collect(),
            Err(other) => vec![format!("unexpected error: {other}")],
            Ok(_) => Vec::new(),
        }
    }

    const VALID: &str = "version: 1\nid: r\ntitle: t\ndiscover:\n  setting:\n    resource: ec2:ebs-encryption-default\nsteps:\n  - id: enable\n    action: ec2:enable-ebs-encryption-by-default\n    for_each: setting\n";

    #[test]
    fn a_runbook_parses_with_the_digest_of_its_text() {
        let loaded = parse_runbook(Path::new("r.yaml"), VALID).expect("parses");
        assert_eq!(loaded.id(), "r");
        assert_eq!(loaded.path, Path::new("r.yaml"));
        // sha256 of the exact text, so an edit of a byte is a different runbook.
        assert_eq!(loaded.digest.len(), 64);
        let edited = parse_runbook(Path::new("r.yaml"), &VALID.replace("title: t", "title: u"))
            .expect("parses");
        assert_ne!(loaded.digest, edited.digest);
    }

    #[test]
    fn an_unknown_field_is_located_with_the_line_shown() {
        let problems = parse_problems(&VALID.replace("title: t", "title: t\ncolour: red"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("r.yaml:4:1: invalid runbook: unknown field `colour`"),
            "{}",
            problems[0]
        );
        assert!(
            problems[0].contains("\n 4 | colour: red\n   | ^"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn a_duplicate_key_and_an_unclosed_quote_are_located() {
        let problems = parse_problems(&VALID.replace("title: t", "title: t\ntitle: u"));
        assert!(
            problems.len() == 1
                && problems[0].starts_with("r.yaml:4:1: invalid runbook:")
                && problems[0].contains("title"),
            "{problems:?}"
        );
        let problems = parse_problems(&VALID.replace("title: t", "title: \"t"));
        assert!(
            problems.len() == 1 && problems[0].starts_with("r.yaml:3:"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_names_what_was_expected() {
        let problems = parse_problems(&VALID.replace("version: 1", "version: one"));
        assert!(
            problems.len() == 1 && problems[0].starts_with("r.yaml:1:10: invalid runbook:"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_folder_without_runbooks_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("notes.txt"), "not a runbook").expect("write");
        let err = super::load_paths(&[dir.path().to_path_buf()]).expect_err("refused");
        assert!(
            err.to_string()
                .contains("folder holds no runbook (*.yaml or *.yml)")
                && err.to_string().contains(&dir.path().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn the_problems_of_every_file_are_reported_together() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(
            dir.path().join("a.yaml"),
            VALID.replace("version: 1", "version: x"),
        )
        .expect("write");
        std::fs::write(
            dir.path().join("b.yaml"),
            VALID.replace("title: t", "title: t\nextra: 1"),
        )
        .expect("write");
        std::fs::write(dir.path().join("c.yaml"), VALID).expect("write");
        let Err(Error::Invalid(problems)) = super::load_paths(&[dir.path().to_path_buf()]) else {
            panic!("refused as invalid");
        };
        let files: Vec<String> = problems
            .0
            .iter()
            .map(|p| {
                p.to_string()
                    .split(':')
                    .next()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(
            files[0].ends_with("a.yaml") && files[1].ends_with("b.yaml"),
            "{files:?}"
        );
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
