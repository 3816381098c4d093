//! Diagnostics: one problem found in a configuration file, printed like a compiler message.
//!
//! `rgsd.toml:42:11: error: queue[0].timeout.after: 5s is below the minimum 10s`
//!
//! Keys are written as TOML paths with array indexes counted from 0 in file order
//! (`workflow[1].question.answers[0].dtmf`), so every key is unambiguous even when a name is
//! missing or duplicated. A `SourceMap` turns the byte offsets the TOML parser reports into
//! lines and columns.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The configuration is refused.
    Error,
    /// The configuration loads, but something in it is probably not what the admin meant.
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Error => "error",
            Self::Warning => "warning",
        })
    }
}

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The configuration file, as it was given to `config::load`.
    pub file: PathBuf,
    /// 1-based line; 0 when the problem concerns the file as a whole (it cannot be read).
    pub line: usize,
    /// 1-based column in characters; 0 together with `line == 0`.
    pub column: usize,
    /// The TOML path of the key at fault (`queue[0].timeout.after`); empty for whole-file problems.
    pub key: String,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl Diagnostic {
    /// True for [`Severity::Error`].
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": {}: ", self.severity)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Sorts diagnostics by line, then column, then key, so output reads top to bottom.
pub(super) fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| {
        (a.line, a.column, &a.key, &a.message).cmp(&(b.line, b.column, &b.key, &b.message))
    });
}

/// Turns byte offsets into the text of one file into `Diagnostic`s with lines and columns.
#[derive(Debug)]
pub(crate) struct SourceMap<'a> {
    file: &'a Path,
    text: &'a str,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            file,
            text,
            line_starts,
        }
    }

    /// The configuration file the offsets refer to.
    pub(crate) fn file(&self) -> &Path {
        self.file
    }

    /// 1-based (line, column) of a byte offset; the column counts characters.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self
            .line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line.max(1), column + 1)
    }

    /// A diagnostic located at the start of `span`.
    pub(crate) fn at(
        &self,
        severity: Severity,
        span: &Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (line, column) = self.position(span.start);
        Diagnostic {
            severity,
            file: self.file.to_path_buf(),
            line,
            column,
            key: key.into(),
            message: message.into(),
        }
    }

    /// An error located at the start of `span`.
    pub(crate) fn error(
        &self,
        span: &Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Diagnostic {
        self.at(Severity::Error, span, key, message)
    }
}

/// An error about the file as a whole (it cannot be read).
pub(crate) fn file_error(file: &Path, message: impl Into<String>) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: file.to_path_buf(),
        line: 0,
        column: 0,
        key: String::new(),
        message: message.into(),
    }
}

/// Exit status for a configuration error (`EX_CONFIG` from sysexits.h), for every command that
/// loads the configuration.
pub const EXIT_CONFIG: u8 = 78;

/// Prints every diagnostic on stderr, then a count: what `rgsd check`, `serve` and the other
/// commands show for a configuration they refuse.
pub fn print_diagnostics(diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        eprintln!("{d}");
    }
    eprintln!("rgsd: configuration has {} problem(s)", diagnostics.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = 2\n\nc";
        let map = SourceMap::new(Path::new("x.toml"), text);
        assert_eq!(map.position(0), (1, 1));
        assert_eq!(map.position(4), (1, 5));
        assert_eq!(map.position(6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(map.position(10), (2, 4));
        assert_eq!(map.position(14), (3, 1));
        assert_eq!(map.position(15), (4, 1));
        assert_eq!(map.position(999), (4, 2));
    }

    #[test]
    fn display_reads_like_a_compiler_message() {
        let map = SourceMap::new(Path::new("rgsd.toml"), "\n\nx = 1\n");
        let d = map.error(
            &(4..5),
            "queue[0].timeout.after",
            "5s is below the minimum 10s",
        );
        assert_eq!(
            d.to_string(),
            "rgsd.toml:3:3: error: queue[0].timeout.after: 5s is below the minimum 10s"
        );
        let whole = file_error(Path::new("gone.toml"), "cannot read the file");
        assert_eq!(whole.to_string(), "gone.toml: error: cannot read the file");
    }

    #[test]
    fn sort_orders_by_line_then_column() {
        let map = SourceMap::new(Path::new("a"), "1\n2\n3\n");
        let mut v = vec![
            map.error(&(4..5), "c", "m"),
            map.error(&(0..1), "a", "m"),
            map.error(&(2..3), "b", "m"),
        ];
        sort(&mut v);
        let keys: Vec<_> = v.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
    }
}
