//! `Idempotency-Key` on every POST (B3, Stripe-style): the first response (status and body) is stored
//! and replayed for a retry with the same key and the same request; the same key with a different
//! request is refused with 422. Keys are scoped to the caller's shop.

use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rescind_store::IdempotencyClaim;
use sha2::{Digest, Sha256};

/// The longest accepted key; Stripe's limit too.
pub const IDEMPOTENCY_KEY_LENGTH_MAX: usize = 255;
/// The largest response that is stored for replay (a bulk answer of 1000 orders fits).
const STORED_RESPONSE_BYTES_MAX: usize = 8 * 1024 * 1024;

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Set on a replayed response.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The `Idempotency-Key` layer on its own (the console's in-process API, whose caller is already
/// known); `/api/v1` runs `keyed` from [`crate::auth::authenticate`], one layer fewer per request.
pub async fn idempotency(State(state): State<AppState>, request: Request, next: Next) -> Result<Response, ApiError> {
    keyed(&state, request, next).await
}

/// Answers a POST carrying an `Idempotency-Key` once (B3): claims the key, runs `next`, stores its
/// answer; replays a stored answer for the same request, refuses the key for another. Requests
/// without a key go straight to `next`.
pub(crate) async fn keyed(state: &AppState, request: Request, next: Next) -> Result<Response, ApiError> {
    if request.method() != Method::POST {
        return Ok(next.run(request).await);
    }
    let Some(key) = request.headers().get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(next.run(request).await);
    };
    let key = key
        .to_str()
        .ok()
        .filter(|key| !key.is_empty() && key.len() <= IDEMPOTENCY_KEY_LENGTH_MAX)
        .ok_or_else(|| {
            ApiError::invalid(vec![format!(
                "Idempotency-Key: must be 1 to {IDEMPOTENCY_KEY_LENGTH_MAX} visible ASCII characters"
            )])
        })?
        .to_owned();
    let scope = request
        .extensions()
        .get::<Principal>()
        .map(Principal::idempotency_scope)
        .ok_or_else(ApiError::unauthorized)?;

    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|error| ApiError::internal(&error.into()))?;
    let mut hasher = Sha256::new();
    hasher.update(parts.method.as_str().as_bytes());
    hasher.update(b" ");
    hasher.update(parts.uri.to_string().as_bytes());
    hasher.update(b"\n");
    hasher.update(&bytes);
    let fingerprint = rescind_connectors::encoding::hex(&hasher.finalize());

    match state.store.claim_idempotency_key(&scope, &key, &fingerprint).await? {
        IdempotencyClaim::New => {}
        IdempotencyClaim::Replay { status_code, body } => {
            let status = StatusCode::from_u16(status_code).unwrap_or(StatusCode::OK);
            let mut response = (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response();
            response
                .headers_mut()
                .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
            return Ok(response);
        }
        IdempotencyClaim::Mismatch => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "This Idempotency-Key was already used with a different request; use a new key for a new request.",
            ))
        }
        IdempotencyClaim::InProgress => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_use",
                "A request with this Idempotency-Key is still being answered; retry in a moment.",
            ))
        }
    }

    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, STORED_RESPONSE_BYTES_MAX).await {
        Ok(bytes) => bytes,
        Err(error) => {
            state.store.release_idempotency_key(&scope, &key).await?;
            return Err(ApiError::internal(&anyhow::anyhow!(
                "response too large to store for replay: {error}"
            )));
        }
    };
    if parts.status.is_server_error() {
        // Nothing was decided; a retry with the same key should run again.
        state.store.release_idempotency_key(&scope, &key).await?;
    } else {
        let body = String::from_utf8_lossy(&bytes);
        state
            .store
            .complete_idempotency_key(&scope, &key, parts.status.as_u16(), &body)
            .await?;
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}
