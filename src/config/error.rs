//! How a config mistake is reported: [`ConfigError`], the line it is pinned to, and the messages
//! of vipctl's own serde checks (told apart from toml's own, which get a pointer to the README).

use std::fmt::Display;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, Visitor};

/// A config problem, pinned to a line of the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error(
        "cannot read config {path}: {error}; create it (see README, \"Configuration\") or point --config / VIPCTL_CONFIG at it"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (not a `source`: the message already says it, once).
        error: std::io::Error,
    },
    /// A mistake at a line.
    #[error("config {path} line {line}: {message}")]
    At {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A mistake about the file as a whole.
    #[error("config {path}: {message}")]
    Whole {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// Leads the message of a value vipctl's own serde types refused. Such a message is complete (it
/// names the key and the fix); toml's own ("unknown field", "invalid type") get a pointer to the
/// README instead. serde errors carry only text, hence a marker no toml message starts with.
const OWN: char = '\u{0}';

/// The error a vipctl serde type returns for a value it refuses. toml pins an error without a span
/// to the value it was reading, so the message ends up at that value's line.
pub(super) fn refuse<E: de::Error>(message: impl Display) -> E {
    E::custom(format_args!("{OWN}{message}"))
}

/// Reads a string and converts it with `parse`, refusing it with `parse`'s message. The check runs
/// inside toml's visit of the value, so the error names the value's own line, even in an array.
pub(super) fn from_text<'de, D, T>(d: D, parse: impl FnOnce(&str) -> Result<T, String>) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct Text<F>(F);
    impl<'de, T, F: FnOnce(&str) -> Result<T, String>> Visitor<'de> for Text<F> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<T, E> {
            (self.0)(s).map_err(refuse)
        }
    }
    d.deserialize_str(Text(parse))
}

/// Converts byte offsets to 1-based line numbers of one file, and makes its errors.
pub(super) struct Lines<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Lines<'_> {
    /// The line `span` starts on.
    pub(super) fn line(&self, span: Range<usize>) -> usize {
        let bytes = self.text.as_bytes();
        bytes[..span.start.min(bytes.len())].iter().filter(|b| **b == b'\n').count() + 1
    }

    /// A mistake at the line `span` starts on.
    pub(super) fn err(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        self.at(self.line(span), message)
    }

    /// A mistake at `line`.
    pub(super) fn at(&self, line: usize, message: impl Into<String>) -> ConfigError {
        ConfigError::At { path: self.path.to_path_buf(), line, message: message.into() }
    }

    /// A mistake about the file as a whole.
    pub(super) fn whole(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::Whole { path: self.path.to_path_buf(), message: message.into() }
    }

    /// A mistake toml or one of vipctl's serde types found, at its line when it has one.
    pub(super) fn toml(&self, e: &toml::de::Error) -> ConfigError {
        let message = match e.message().strip_prefix(OWN) {
            Some(own) => own.to_string(),
            None => format!("{}; see README, \"Configuration\", for the keys vipctl knows", e.message().trim_end()),
        };
        match e.span() {
            Some(span) => self.err(span, message),
            None => self.whole(message),
        }
    }

    /// The line of a `[masters.NAME]` header, for messages about a master as a whole.
    pub(super) fn master_line(&self, name: &str) -> Option<usize> {
        let quoted = format!("[masters.\"{name}\"]");
        let bare = format!("[masters.{name}]");
        self.text
            .lines()
            .position(|l| {
                let l = l.trim();
                l.starts_with(&bare) || l.starts_with(&quoted)
            })
            .map(|i| i + 1)
    }
}
