//! The wall clock, read at the edge.

use rescind_domain::Timestamp;
use std::time::{SystemTime, UNIX_EPOCH};

/// The current time.
pub fn now() -> Timestamp {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as i64);
    Timestamp::from_unix_micros(micros)
}
