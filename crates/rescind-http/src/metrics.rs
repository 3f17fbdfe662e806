//! Prometheus metrics (`GET /metrics`): requests by route and status, their durations, and
//! cancellations by outcome. Counters are kept in memory; a restart starts them again, as Prometheus
//! expects.

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

/// A request's labels: method, route template, status.
type RequestLabels = (String, String, u16);

/// How many requests, and the seconds spent answering them.
#[derive(Clone, Copy, Debug, Default)]
struct RequestTotals {
    count: u64,
    seconds: f64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<RequestLabels, RequestTotals>>,
    /// outcome → count.
    cancellations: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Counts one cancel attempt by its outcome: a cancellation status (`completed`,
    /// `awaiting_refund`, `processing`) or a refusal code (`already_cancelled`, …).
    pub fn count_cancellation(&self, outcome: &'static str) {
        *self
            .cancellations
            .lock()
            .expect("metrics lock")
            .entry(outcome)
            .or_default() += 1;
    }

    fn count_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut requests = self.requests.lock().expect("metrics lock");
        let entry = requests
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        entry.count += 1;
        entry.seconds += seconds;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        text.push_str("# HELP rescind_http_requests_total HTTP requests by method, route and status.\n");
        text.push_str("# TYPE rescind_http_requests_total counter\n");
        let requests = self.requests.lock().expect("metrics lock").clone();
        for ((method, route, status), RequestTotals { count, .. }) in &requests {
            let _ = writeln!(
                text,
                "rescind_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        text.push_str(
            "# HELP rescind_http_request_duration_seconds_sum Time spent answering, by method, route and status.\n",
        );
        text.push_str("# TYPE rescind_http_request_duration_seconds_sum counter\n");
        for ((method, route, status), RequestTotals { seconds, .. }) in &requests {
            let _ = writeln!(
                text,
                "rescind_http_request_duration_seconds_sum{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {seconds:.6}"
            );
        }
        text.push_str("# HELP rescind_cancellations_total Cancel attempts by outcome.\n");
        text.push_str("# TYPE rescind_cancellations_total counter\n");
        for (outcome, count) in self.cancellations.lock().expect("metrics lock").iter() {
            let _ = writeln!(text, "rescind_cancellations_total{{outcome=\"{outcome}\"}} {count}");
        }
        text
    }
}

/// Times and counts every request, and logs it.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    state.metrics.count_request(&method, &route, status, seconds);
    tracing::info!(%method, %route, status, latency_ms = seconds * 1000.0, "request");
    response
}
