//! The engine's clock: an opaque microsecond counter supplied by whoever drives the engine.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time on the engine's clock, in microseconds since an epoch chosen by the driver.
///
/// The engine never reads a clock itself: the tokio driver maps wall-clock `Instant`s onto this
/// type and the simulator advances it virtually.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(u64);

impl Time {
    /// The epoch.
    pub const ZERO: Time = Time(0);

    /// A time `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Time {
        Time(micros)
    }

    /// A time `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Time {
        Time(millis.saturating_mul(1000))
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Tenths of a second since the epoch, in 4 bytes (wraps after 13 years): what the
    /// routing table and the peer book keep of when an address was last seen or heard.
    pub const fn as_deciseconds(self) -> u32 {
        (self.0 / 100_000) as u32
    }

    /// The time `ds` tenths of a second after the epoch (see [`Time::as_deciseconds`]).
    pub const fn from_deciseconds(ds: u32) -> Time {
        Time(ds as u64 * 100_000)
    }

    /// The time elapsed since `earlier`, or zero if `earlier` is later.
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(micros(d)))
    }
}

impl Sub<Duration> for Time {
    type Output = Time;
    fn sub(self, d: Duration) -> Time {
        Time(self.0.saturating_sub(micros(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Time::from_millis(5);
        assert_eq!((t + Duration::from_millis(1)).as_micros(), 6000);
        assert_eq!(t - Duration::from_secs(1), Time::ZERO);
        assert_eq!(Time::ZERO.since(t), Duration::ZERO);
        assert_eq!(t.since(Time::ZERO), Duration::from_millis(5));
        assert_eq!(
            Time::from_micros(u64::MAX) + Duration::from_secs(1),
            Time::from_micros(u64::MAX)
        );
    }
}
