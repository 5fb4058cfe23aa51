//! Failures typed by what the caller should do about them.
//!
//! Sentinel reads the hook's exit status: 1 means "run me again with the same arguments", 2 or more
//! means "give up". Every command shares that convention, so the type of a failure decides its status.

use std::fmt;
use std::process::ExitCode;

/// Whether a retry with the same input can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A retry may succeed (a sentinel or netlink hiccup, a lock held too long): exit status 1.
    Transient,
    /// A retry cannot succeed (bad arguments, bad config, missing privilege): exit status 2.
    Permanent,
}

/// An error with the exit status it deserves.
#[derive(Debug)]
pub struct Failure {
    /// What the caller should do.
    pub kind: Kind,
    /// What went wrong, with context; printed on one line.
    pub error: anyhow::Error,
}

impl Failure {
    /// A failure that a retry may fix.
    pub fn transient(error: impl Into<anyhow::Error>) -> Self {
        Failure { kind: Kind::Transient, error: error.into() }
    }

    /// A failure that no retry will fix.
    pub fn permanent(error: impl Into<anyhow::Error>) -> Self {
        Failure { kind: Kind::Permanent, error: error.into() }
    }

    /// The process exit status for this failure.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.status())
    }

    /// The numeric exit status (1 transient, 2 permanent).
    pub fn status(&self) -> u8 {
        match self.kind {
            Kind::Transient => 1,
            Kind::Permanent => 2,
        }
    }
}

impl Clone for Failure {
    /// A copy with the same kind and message (the error chain is flattened to its text).
    fn clone(&self) -> Self {
        Failure { kind: self.kind, error: anyhow::anyhow!("{:#}", self.error) }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:#}` joins anyhow's context chain on one line: the hook must say why in one line.
        write!(f, "{:#}", self.error)
    }
}

/// Shorthand for command results.
pub type Outcome<T = ()> = Result<T, Failure>;
