//! Places in files and the problems found there, printed as `file:line:column: message`.

use std::fmt;
use std::sync::Arc;

use crate::yaml::{Pos, Problem};

/// Where something is written: a file and a position in it. Routes, rules, diagnostics,
/// metrics labels and audit lines all name places with this one type.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    /// The file, as the user named it (shared by every origin of that file).
    pub file: Arc<str>,
    /// Line and column.
    pub pos: Pos,
}

impl Origin {
    /// `file:line`, without the column: how routes are labelled in metrics and audit lines.
    pub fn file_line(&self) -> String {
        format!("{}:{}", self.file, self.pos.line)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.pos.line, self.pos.column)
    }
}

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// The file is rejected.
    Error,
    /// The file loads, but something is probably not what was meant.
    Warning,
    /// Something the user should know (an ignored field).
    Note,
}

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    /// The file, as the user named it.
    pub file: String,
    /// Where in the file; `None` for the file as a whole.
    pub pos: Option<Pos>,
    /// Error, warning or note.
    pub level: Level,
    /// What is wrong.
    pub message: String,
}

impl Diagnostic {
    /// An error at a position.
    pub fn error(file: &str, problem: Problem) -> Self {
        Self {
            file: file.to_string(),
            pos: Some(problem.pos),
            level: Level::Error,
            message: problem.message,
        }
    }

    /// An error about the file as a whole (it cannot be read, say).
    pub fn file_error(file: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            pos: None,
            level: Level::Error,
            message: message.into(),
        }
    }

    /// A warning at a place.
    pub fn warning(at: &Origin, message: impl Into<String>) -> Self {
        Self {
            file: at.file.to_string(),
            pos: Some(at.pos),
            level: Level::Warning,
            message: message.into(),
        }
    }

    /// A warning about a file as a whole.
    pub fn file_warning(file: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            pos: None,
            level: Level::Warning,
            message: message.into(),
        }
    }

    /// A note about the file.
    pub fn note(file: &str, pos: Option<Pos>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            pos,
            level: Level::Note,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(p) = self.pos {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        match self.level {
            Level::Error => write!(f, ": {}", self.message),
            Level::Warning => write!(f, ": warning: {}", self.message),
            Level::Note => write!(f, ": note: {}", self.message),
        }
    }
}

/// Whether any diagnostic is an error.
pub(crate) fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(|d| d.level == Level::Error)
}
