//! Instants as the domain sees them: microseconds since the Unix epoch, UTC. The clock is read at the
//! edge and passed in, so every decision is repeatable in tests.

/// A point in time, microseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_unix_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    pub const fn unix_micros(self) -> i64 {
        self.0
    }

    /// This instant moved by `seconds` (negative goes back).
    pub const fn plus_seconds(self, seconds: i64) -> Self {
        Timestamp(self.0 + seconds * 1_000_000)
    }
}
