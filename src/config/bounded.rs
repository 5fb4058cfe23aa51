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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use toml::Spanned;

    use super::*;
    use crate::config::error::Lines;

    enum Pause {}
    impl Setting for Pause {
        const KEY: &'static str = "[t] pause_ms";
        const MIN: u64 = 10;
        const MAX: u64 = 1000;
        const DEFAULT: u64 = 250;
        const NOTE: &'static str = "0 would spin; ";
    }

    #[derive(Debug, Deserialize)]
    struct File {
        #[serde(default)]
        pause_ms: Bounded<Pause>,
        inherited_ms: Option<Spanned<Bounded<Pause>>>,
    }

    fn read(text: &str) -> Result<File, String> {
        toml::from_str(text).map_err(|e| Lines { path: Path::new("t.toml"), text }.toml(&e).to_string())
    }

    #[test]
    fn in_range_values_are_kept() {
        let f = read("pause_ms = 10\ninherited_ms = 1000\n").unwrap();
        assert_eq!(f.pause_ms.millis(), Duration::from_millis(10));
        assert_eq!(f.inherited_ms.map(|s| s.into_inner().get()), Some(1000));
    }

    #[test]
    fn an_absent_key_takes_the_default() {
        let f = read("").unwrap();
        assert_eq!(f.pause_ms.get(), 250);
        assert!(f.inherited_ms.is_none());
    }

    #[test]
    fn out_of_range_is_refused_at_its_line_with_range_and_default() {
        let want = "config t.toml line 3: [t] pause_ms must be 10–1000 (0 would spin; default 250)";
        assert_eq!(read("# pause\n\npause_ms = 9\n").unwrap_err(), want);
        assert_eq!(read("\n\ninherited_ms = 1001\n").unwrap_err(), want);
    }

    #[test]
    fn a_non_integer_keeps_serdes_message() {
        let e = read("pause_ms = \"100\"\n").unwrap_err();
        assert!(e.starts_with("config t.toml line 1: invalid type: string \"100\", expected u64; see README"), "{e}");
    }

    #[test]
    fn real_settings_name_their_table() {
        let e = crate::config::Config::parse(
            Path::new("t.toml"),
            "[masters.a]\nvips = [\"198.51.100.100/24\"]\n[watch]\n\nreconcile_interval_ms = 60001\n",
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "config t.toml line 5: [watch] reconcile_interval_ms must be 50–60000 (default 500)");
    }
}
