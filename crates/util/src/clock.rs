//! The wall clock as the suite stores it: Unix milliseconds in an `i64` (SQLite's integer).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now: 0 for a clock set before 1970, `i64::MAX` past
/// the year 292 million, so a stored time is never negative and never wraps.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_2020_and_not_going_backwards_between_two_reads() {
        let a = now_ms();
        let b = now_ms();
        assert!(a > 1_577_836_800_000, "{a}");
        assert!(b >= a);
    }
}
