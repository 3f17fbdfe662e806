//! Pacing requests under a partner's rate limit (OpenLogi: 60 a minute). Requests queue for their
//! turn instead of being dropped; every connector of the same account shares one pacer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// Hands out evenly spaced turns: at most `limit` requests per `window`.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next_turn: tokio::sync::Mutex<Instant>,
}

impl Pacer {
    pub fn new(limit: u32, window: Duration) -> Self {
        Pacer {
            interval: window / limit.max(1),
            next_turn: tokio::sync::Mutex::new(Instant::now()),
        }
    }

    /// Waits for this request's turn.
    pub async fn wait_turn(&self) {
        let turn = {
            let mut next = self.next_turn.lock().await;
            let turn = (*next).max(Instant::now());
            *next = turn + self.interval;
            turn
        };
        tokio::time::sleep_until(turn).await;
    }

    /// Pushes every later turn back: the partner said to wait `pause` (a 429).
    pub async fn back_off(&self, pause: Duration) {
        let mut next = self.next_turn.lock().await;
        *next = (*next).max(Instant::now() + pause);
    }
}

/// The pacer of an account, shared by every connector built for it.
pub fn pacer_for(account: &str, limit: u32, window: Duration) -> Arc<Pacer> {
    static PACERS: OnceLock<Mutex<HashMap<String, Arc<Pacer>>>> = OnceLock::new();
    let mut pacers = PACERS
        .get_or_init(Default::default)
        .lock()
        .expect("the pacer registry is not poisoned");
    pacers
        .entry(format!("{account}|{limit}|{}", window.as_millis()))
        .or_insert_with(|| Arc::new(Pacer::new(limit, window)))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn turns_are_spaced_by_the_window_over_the_limit() {
        let pacer = Pacer::new(4, Duration::from_secs(1));
        let started = Instant::now();
        for _ in 0..5 {
            pacer.wait_turn().await;
        }
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(1),
            "the fifth request waits a full window"
        );
    }
}
