//! The announcement schedule after a bind (`[announce]`, `[masters.NAME.announce]`).

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::bounded::{Bounded, Setting};
use super::error::{ConfigError, Lines};

/// Default number of announcement rounds after a bind.
pub const DEFAULT_ROUNDS: u32 = 3;
/// Default spacing of announcement rounds: three rounds finish in 200 ms, far from Sentinel's 60 s kill.
pub const DEFAULT_INTERVAL_MS: u64 = 100;

/// Announcement schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announce {
    /// Rounds of gratuitous ARP / unsolicited NA; 0 disables announcing.
    pub rounds: u32,
    /// Time between rounds.
    pub interval: Duration,
}

/// The schedule when the file says nothing.
pub(super) const DEFAULT_ANNOUNCE: Announce =
    Announce { rounds: DEFAULT_ROUNDS, interval: Duration::from_millis(DEFAULT_INTERVAL_MS) };

/// The schedule a routed master gets: its VIPs reach the clients through BGP, not through the link.
pub(super) const SILENT: Announce = Announce { rounds: 0, interval: Duration::ZERO };

/// `rounds`.
pub(super) enum Rounds {}
impl Setting for Rounds {
    const KEY: &'static str = "announce rounds";
    const MIN: u64 = 0;
    const MAX: u64 = 50;
    const DEFAULT: u64 = DEFAULT_ROUNDS as u64;
    const NOTE: &'static str = "0 disables announcing; ";
}

/// `interval_ms`.
pub(super) enum IntervalMs {}
impl Setting for IntervalMs {
    const KEY: &'static str = "announce interval_ms";
    const MIN: u64 = 0;
    const MAX: u64 = 10_000;
    const DEFAULT: u64 = DEFAULT_INTERVAL_MS;
}

/// An announce table as written: a key left out is inherited (from `[announce]`, or the default).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnnounce {
    rounds: Option<Spanned<Bounded<Rounds>>>,
    interval_ms: Option<Spanned<Bounded<IntervalMs>>>,
}

/// The schedule `raw` writes over `inherited`, refused if it would run longer than 20 s.
pub(super) fn resolve(
    lines: &Lines<'_>,
    raw: Option<RawAnnounce>,
    inherited: Announce,
) -> Result<Announce, ConfigError> {
    let Some(raw) = raw else { return Ok(inherited) };
    let rounds =
        raw.rounds.as_ref().map_or(inherited.rounds, |r| u32::try_from(r.get_ref().get()).expect("Rounds::MAX is 50"));
    let interval = raw.interval_ms.as_ref().map_or(inherited.interval, |i| i.get_ref().millis());
    // Keep the hook far from Sentinel's 60 s kill whatever the settings say.
    if interval.saturating_mul(rounds.saturating_sub(1)) > Duration::from_secs(20) {
        let span = raw.interval_ms.as_ref().map(|i| i.span()).or(raw.rounds.as_ref().map(|r| r.span())).unwrap_or(0..0);
        return Err(lines.err(
            span,
            "announce rounds × interval_ms exceeds 20 s; the hook must finish well before Sentinel kills it at 60 s",
        ));
    }
    Ok(Announce { rounds, interval })
}
