//! Prometheus metrics (`GET /metrics`): requests by route and status, their durations, and
//! cancellations by outcome. Counters are kept in memory; a restart starts them again, as Prometheus
//! expects.

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Mutex;
use std::time::Instant;

/// How many requests, and the seconds spent answering them.
#[derive(Clone, Copy, Debug, Default)]
struct RequestTotals {
    count: u64,
    seconds: f64,
}

/// One route's requests by method and status: a handful, looked up without allocating.
type RouteTotals = Vec<(Method, u16, RequestTotals)>;

#[derive(Debug, Default)]
pub struct Metrics {
    /// route template → its requests.
    requests: Mutex<HashMap<String, RouteTotals>>,
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

    fn count_request(&self, method: &Method, route: &str, status: u16, seconds: f64) {
        let mut requests = self.requests.lock().expect("metrics lock");
        let route = match requests.get_mut(route) {
            Some(route) => route,
            None => requests.entry(route.to_owned()).or_default(),
        };
        let totals = match route.iter().position(|(m, s, _)| m == method && *s == status) {
            Some(at) => &mut route[at].2,
            None => {
                route.push((method.clone(), status, RequestTotals::default()));
                &mut route.last_mut().expect("just pushed").2
            }
        };
        totals.count += 1;
        totals.seconds += seconds;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        text.push_str("# HELP rescind_http_requests_total HTTP requests by method, route and status.\n");
        text.push_str("# TYPE rescind_http_requests_total counter\n");
        let by_route = self.requests.lock().expect("metrics lock");
        let requests: BTreeMap<(&str, &str, u16), RequestTotals> = by_route
            .iter()
            .flat_map(|(route, totals)| {
                totals
                    .iter()
                    .map(|(method, status, totals)| ((method.as_str(), route.as_str(), *status), *totals))
            })
            .collect();
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

/// The layer of the routes outside the API's token (`/healthz`, `/metrics`, the console, the OpenAPI
/// document, the partners' webhooks, unknown paths): `tracked`. The API's own layer,
/// [`crate::auth::authenticate`], runs `tracked` itself.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    tracked(&state, request, |request| next.run(request)).await
}

/// `inner` timed, counted and logged, with the request's body buffered under the limits first: the
/// part of every route's one layer (`router()`) that every request goes through.
pub(crate) async fn tracked<F: Future<Output = Response>>(
    state: &AppState,
    request: Request,
    inner: impl FnOnce(Request) -> F,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let response = match crate::body::buffered(request).await {
        Ok(request) => inner(request).await,
        Err(refused) => refused.into_response(),
    };
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    state.metrics.count_request(&method, route, status, seconds);
    tracing::info!(%method, %route, status, latency_ms = seconds * 1000.0, "request");
    response
}
