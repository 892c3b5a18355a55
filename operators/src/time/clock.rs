//! One monotonic clock for the whole process, so ingest and decision instants taken on
//! different worker threads can be subtracted, and its mapping to and from Kafka's timestamps
//! (Unix milliseconds).

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the first call in this process.
pub fn now_ns() -> u64 {
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Unix time now, microseconds (0 for a clock set before 1970).
pub fn unix_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// Unix time now, milliseconds: Kafka timestamps, epochs, checkpoint stamps.
pub fn unix_ms() -> u64 {
    unix_us() / 1000
}

/// The wall clock and [`now_ns`] read together, once per batch of conversions: the wall clock
/// may be stepped, so the two are never related once for the whole run.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    /// Unix time, milliseconds.
    pub unix_ms: i64,
    /// [`now_ns`] at the same moment.
    pub now_ns: u64,
}

impl WallClock {
    pub fn now() -> Self {
        WallClock { unix_ms: unix_ms() as i64, now_ns: now_ns() }
    }

    /// The instant of Unix time `unix_ms` on [`now_ns`]'s clock (now for a time in the future).
    pub fn instant_of(&self, unix_ms: i64) -> u64 {
        let age_ms = self.unix_ms.saturating_sub(unix_ms).max(0) as u64;
        self.now_ns.saturating_sub(age_ms * 1_000_000)
    }

    /// The Unix time, milliseconds, of instant `ns` of [`now_ns`]'s clock.
    pub fn unix_ms_of(&self, ns: u64) -> i64 {
        self.unix_ms - (self.now_ns.saturating_sub(ns) / 1_000_000) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_times_and_instants_convert_both_ways_at_millisecond_precision() {
        let clock = WallClock { unix_ms: 1_764_072_000_123, now_ns: 50_000_000_000 };
        assert_eq!(clock.instant_of(1_764_072_000_123), 50_000_000_000);
        assert_eq!(clock.instant_of(1_764_072_000_100), 49_977_000_000);
        assert_eq!(clock.instant_of(1_764_072_009_999), 50_000_000_000, "a future time is now");
        assert_eq!(clock.unix_ms_of(49_977_000_000), 1_764_072_000_100);
        assert_eq!(clock.unix_ms_of(49_976_500_000), 1_764_072_000_100, "whole milliseconds of age");
        assert_eq!(clock.unix_ms_of(60_000_000_000), 1_764_072_000_123, "a later instant is now");
    }
}
