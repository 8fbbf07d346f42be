//! Slots of scheduled jobs: which run of a job a call is. A job with a slot runs
//! at most once per slot across every process that shares the database.

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime};

/// Which slot a call of a scheduled job belongs to.
///
/// [`Slot::Every`] is computed by the server from its own clock (`date_bin` of the
/// statement's start time), so instances whose clocks or schedules disagree by
/// less than the slot's length still agree on the slot. [`Slot::Named`] is given
/// by the caller, for schedules whose ticks sit near a slot boundary (see
/// [`ToSlot`]).
///
/// ```
/// use std::time::Duration;
/// use pglock_runtime::{Slot, ToSlot};
///
/// assert_eq!(Slot::every(Duration::from_secs(3600)).to_string(), "every 1h");
/// assert_eq!("2026-12-02".to_slot().to_string(), "2026-12-02");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Slot {
    /// Slots of this length on the database's clock, counted from the Unix epoch
    /// (`once_per = "1h"`: 00:00, 01:00, …, in UTC).
    Every(Duration),
    /// A slot named by the caller. `start` is its time when it was given as one
    /// (a planned fire time), shown by `pglock runs`.
    Named {
        /// The slot's identity: two calls with the same label are the same slot.
        label: Cow<'static, str>,
        /// When the slot starts, if it was given as a time.
        start: Option<SystemTime>,
    },
}

impl Slot {
    /// Slots of `length` on the database's clock.
    ///
    /// ```
    /// let slot = pglock_runtime::Slot::every(std::time::Duration::from_secs(60));
    /// ```
    pub fn every(length: Duration) -> Slot {
        Slot::Every(length)
    }

    /// A slot named by `label`.
    ///
    /// ```
    /// let slot = pglock_runtime::Slot::named("2026-12-02");
    /// ```
    pub fn named(label: impl Into<Cow<'static, str>>) -> Slot {
        Slot::Named {
            label: label.into(),
            start: None,
        }
    }

    /// The slot starting at `start`; its label is `start` in RFC 3339 (UTC,
    /// microseconds), which is also how the server labels [`Slot::Every`] slots,
    /// so an explicit fire time and `once_per` name the same slot the same way.
    ///
    /// ```
    /// use std::time::{Duration, UNIX_EPOCH};
    /// let slot = pglock_runtime::Slot::at(UNIX_EPOCH + Duration::from_secs(86_400));
    /// assert_eq!(slot.to_string(), "1970-01-02T00:00:00.000000Z");
    /// ```
    pub fn at(start: SystemTime) -> Slot {
        Slot::Named {
            label: Cow::Owned(humantime::format_rfc3339_micros(start).to_string()),
            start: Some(start),
        }
    }

    /// The slot length of [`Slot::Every`] in whole microseconds (PostgreSQL's
    /// resolution), at least one.
    pub(crate) fn micros(length: Duration) -> i64 {
        i64::try_from(length.as_micros()).unwrap_or(i64::MAX).max(1)
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Slot::Every(d) => write!(f, "every {}", humantime::format_duration(*d)),
            Slot::Named { label, .. } => f.write_str(label),
        }
    }
}

/// Converts the value of `slot = <expr>` (and of
/// [`AdvisoryLock::slot`](crate::AdvisoryLock::slot)) to a [`Slot`].
///
/// Use an explicit slot when the schedule's ticks can fall on either side of a
/// `once_per` boundary. With `once_per = "1h"`, a job planned for 03:00:00 whose
/// instances fire between 02:59:59.8 and 03:00:00.3 (clock skew, start-up
/// offsets) computes two slots, 02:00 and 03:00, and runs twice. Passing the
/// scheduler's planned fire time (`slot = planned_at`) gives every instance the
/// same slot whatever its clock says.
///
/// Implemented for strings, integers, [`SystemTime`] and [`Slot`].
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use pglock_runtime::ToSlot;
///
/// assert_eq!(42_u64.to_slot().to_string(), "42");
/// let planned = UNIX_EPOCH + Duration::from_secs(3 * 3600);
/// assert_eq!(planned.to_slot().to_string(), "1970-01-01T03:00:00.000000Z");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot name a slot",
    label = "not convertible to a slot",
    note = "a slot is named by a `SystemTime` (the scheduler's planned fire time), a string (a date), \
            an integer or a `pglock_runtime::Slot`; or implement `pglock_runtime::ToSlot` for `{Self}`"
)]
pub trait ToSlot {
    /// The slot this value names.
    fn to_slot(&self) -> Slot;
}

impl ToSlot for Slot {
    fn to_slot(&self) -> Slot {
        self.clone()
    }
}

impl ToSlot for str {
    fn to_slot(&self) -> Slot {
        Slot::named(self.to_owned())
    }
}

impl ToSlot for String {
    fn to_slot(&self) -> Slot {
        Slot::named(self.clone())
    }
}

impl ToSlot for SystemTime {
    fn to_slot(&self) -> Slot {
        Slot::at(*self)
    }
}

macro_rules! int_slots {
    ($($t:ty),*) => {$(
        impl ToSlot for $t {
            fn to_slot(&self) -> Slot {
                Slot::named(self.to_string())
            }
        }
    )*};
}

int_slots!(i32, i64, u32, u64, usize);

impl<T: ToSlot + ?Sized> ToSlot for &T {
    fn to_slot(&self) -> Slot {
        (**self).to_slot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn labels() {
        let t = UNIX_EPOCH + Duration::from_micros(1_764_651_600_123_456);
        assert_eq!(t.to_slot().to_string(), "2025-12-02T05:00:00.123456Z");
        assert_eq!(
            Slot::every(Duration::from_secs(90)).to_string(),
            "every 1m 30s"
        );
        assert_eq!((&&"x").to_slot(), Slot::named("x"));
        assert_eq!(Slot::micros(Duration::from_nanos(10)), 1);
        assert_eq!(Slot::micros(Duration::from_secs(1)), 1_000_000);
    }
}
