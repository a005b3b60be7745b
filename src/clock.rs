//! [`Timestamp`]: a reading of the system's monotonic clock, which every
//! process on the machine shares.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sys;

/// A reading of the system's monotonic clock (`CLOCK_MONOTONIC` on Unix).
///
/// Unlike [`std::time::Instant`], a `Timestamp` means the same in every
/// process of the machine, so children can return one and the parent can
/// compare it with its own readings and with an outcome's
/// [`Timings`](crate::Timings), whose durations are measured from
/// [`Timings::origin`](crate::Timings::origin).
///
/// ```
/// let before = stampede::Timestamp::now();
/// let after = stampede::Timestamp::now();
/// assert!(after >= before);
/// assert!(after.duration_since(before) < std::time::Duration::from_secs(60));
/// ```
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The clock now.
    ///
    /// ```
    /// let t = stampede::Timestamp::now();
    /// assert!(t.as_nanos() > 0);
    /// ```
    pub fn now() -> Timestamp {
        Timestamp(sys::monotonic_ns())
    }

    /// Nanoseconds since the clock's (arbitrary, machine-wide) origin.
    ///
    /// ```
    /// let ns: u64 = stampede::Timestamp::now().as_nanos();
    /// ```
    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// The time from `earlier` to this reading; zero if `earlier` is later.
    ///
    /// ```
    /// use std::time::Duration;
    /// let start = stampede::Timestamp::now();
    /// let later = start.later_by(Duration::from_millis(3));
    /// assert_eq!(later.duration_since(start), Duration::from_millis(3));
    /// assert_eq!(start.duration_since(later), Duration::ZERO);
    /// ```
    pub fn duration_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// This reading moved later by `by`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let now = stampede::Timestamp::now();
    /// let deadline = now.later_by(Duration::from_secs(1));
    /// assert!(deadline > now);
    /// ```
    pub fn later_by(self, by: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(u64::try_from(by.as_nanos()).unwrap_or(u64::MAX)),
        )
    }

    pub(crate) fn from_nanos(ns: u64) -> Timestamp {
        Timestamp(ns)
    }
}
