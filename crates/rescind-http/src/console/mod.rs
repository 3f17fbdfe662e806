//! The operator console (PRODUCT.md B5) at `/console`: server-rendered pages (askama templates
//! compiled into the binary, a little JavaScript for "select all" and the reason detail), in Japanese
//! and English. Every screen reads and acts through rescind's own API in process ([`api::Api`]), as
//! the signed-in shop token, so the console can do nothing the API would not.

pub mod api;
pub mod i18n;
mod pages;
pub mod session;

use crate::AppState;
use axum::http::{header, HeaderValue};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

/// What the console's handlers share: the application and the API they call in process.
#[derive(Clone)]
pub struct ConsoleState {
    pub app: AppState,
    /// `/api/v1`'s routes, without authentication (see [`api::Api`]).
    pub api: Router,
}

const STYLESHEET: &str = include_str!("../../templates/console/console.css");
const SCRIPT: &str = include_str!("../../templates/console/console.js");

/// The console's routes, to be nested at `/console`.
pub fn router(state: ConsoleState) -> Router<()> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/orders") }))
        .route("/sign_in", get(pages::sign_in_form).post(pages::sign_in))
        .route("/sign_out", post(pages::sign_out))
        .route("/language", get(pages::choose_language))
        .route(
            "/assets/console.css",
            get(|| async { asset("text/css; charset=utf-8", STYLESHEET) }),
        )
        .route(
            "/assets/console.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route("/orders", get(pages::orders))
        .route("/cancel", post(pages::cancel_dialog))
        .route("/cancel/preview", post(pages::cancel_preview))
        .route("/cancel/run", post(pages::cancel_run))
        .route("/orders/{order_id}", get(pages::order_detail))
        .route("/orders/{order_id}/cancel_lines", post(pages::cancel_lines))
        .route("/orders/{order_id}/uncancel", post(pages::undo))
        .route("/orders/{order_id}/refunds", post(pages::record_refund))
        .route("/requests", get(pages::requests))
        .route("/requests/{request_id}/accept", post(pages::accept_request))
        .route("/requests/{request_id}/reject", post(pages::reject_request))
        .route("/attention", get(pages::attention))
        .route("/cancellations/{cancellation_id}/retry", post(pages::retry))
        .route("/sync_history", get(pages::sync_history))
        .route("/inventory", get(pages::inventory))
        .route("/inventory/adjust", post(pages::adjust_stock))
        .fallback(pages::not_found)
        .layer(map_response(protect))
        .with_state(state)
}

fn asset(content_type: &'static str, text: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        text,
    )
        .into_response()
}

/// Headers every console answer carries: no caching of pages that show orders, no framing (clickjacking),
/// scripts, styles and forms from this origin only.
async fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    response
}
