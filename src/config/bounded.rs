//! Numbers with a range and a default (milliseconds, announcement rounds), checked as serde reads
//! them: a value out of range is refused at its own line, with the range and the default.
//!
//! Each setting is a type implementing [`Setting`], declared next to the table it belongs to.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::error::refuse;

/// A numeric key of the file: how messages name it, the values it may take, and its default.
pub(super) trait Setting {
    /// The key as messages name it, with its table where that helps (`[watch] reconcile_interval_ms`).
    const KEY: &'static str;
    /// The smallest value allowed.
    const MIN: u64;
    /// The largest value allowed.
    const MAX: u64;
    /// The value when the key is absent.
    const DEFAULT: u64;
    /// Said before the default in the message, e.g. what 0 means; ends with "; " when not empty.
    const NOTE: &'static str = "";
}

/// A value of the setting `S`, within its range: the default when the key is absent.
pub(super) struct Bounded<S>(u64, PhantomData<S>);

impl<S: Setting> Bounded<S> {
    /// The value as written (or the default).
    pub(super) fn get(&self) -> u64 {
        self.0
    }

    /// The value as milliseconds.
    pub(super) fn millis(&self) -> Duration {
        Duration::from_millis(self.0)
    }
}

impl<S: Setting> Default for Bounded<S> {
    fn default() -> Self {
        Bounded(S::DEFAULT, PhantomData)
    }
}

// By hand: a derive would want `S: Debug`, and the settings are bare marker types.
impl<S> fmt::Debug for Bounded<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de, S: Setting> Deserialize<'de> for Bounded<S> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A non-integer or a negative one keeps serde's own message ("expected u64").
        let v = u64::deserialize(d)?;
        if !(S::MIN..=S::MAX).contains(&v) {
            return Err(refuse(format_args!(
                "{} must be {}–{} ({}default {})",
                S::KEY,
                S::MIN,
                S::MAX,
                S::NOTE,
                S::DEFAULT
            )));
        }
        Ok(Bounded(v, PhantomData))
    }
}
