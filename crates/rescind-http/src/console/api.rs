//! The console is a client of rescind's own API, called in process: every action a screen offers is
//! the API's operation with the operator's token, so scopes, validation, idempotency, the history and
//! the workflow are the same whether a person clicks or a program calls.

use crate::auth::Principal;
use crate::error::ErrorBody;
use axum::body::{to_bytes, Body};
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower::ServiceExt;

/// The largest API answer the console reads: a page of 500 orders is far below it.
const ANSWER_BYTES_MAX: usize = 32 * 1024 * 1024;

/// The API as the signed-in operator sees it.
#[derive(Clone)]
pub struct Api {
    /// `/api/v1`'s routes behind idempotency but not authentication: the console authenticated the
    /// operator itself and hands the [`Principal`] over.
    pub(crate) routes: Router,
    pub(crate) principal: Principal,
}

/// An API call that did not succeed, with the API's error body.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiFailure {
    /// A failure the console finds itself before calling the API (a form it can check).
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiFailure {
            status: StatusCode::BAD_REQUEST,
            body: ErrorBody {
                error: message.into(),
                code: "invalid_request".to_owned(),
                errors: None,
            },
        }
    }
}

impl Api {
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiFailure> {
        self.call(Method::GET, path, None, None).await.map(|(_, answer)| answer)
    }

    /// A POST with the form's idempotency key, so a form sent twice acts once (B3).
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Value,
        idempotency_key: &str,
    ) -> Result<(StatusCode, T), ApiFailure> {
        self.call(Method::POST, path, Some(body), Some(idempotency_key)).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> Result<(StatusCode, T), ApiFailure> {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(key) = idempotency_key.filter(|key| !key.is_empty()) {
            request = request.header("idempotency-key", key);
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let mut request = request.body(body).map_err(|error| internal(&error))?;
        request.extensions_mut().insert(self.principal.clone());
        let answer = match self.routes.clone().oneshot(request).await {
            Ok(answer) => answer,
            Err(never) => match never {},
        };
        let status = answer.status();
        let bytes = to_bytes(answer.into_body(), ANSWER_BYTES_MAX)
            .await
            .map_err(|error| internal(&error))?;
        if status.is_success() {
            serde_json::from_slice(&bytes)
                .map(|answer| (status, answer))
                .map_err(|error| internal(&error))
        } else {
            let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
                error: String::from_utf8_lossy(&bytes).into_owned(),
                code: "internal".to_owned(),
                errors: None,
            });
            Err(ApiFailure { status, body })
        }
    }
}

fn internal(error: &dyn std::fmt::Display) -> ApiFailure {
    tracing::error!(error = %error, "the console could not read an API answer");
    ApiFailure {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        body: ErrorBody {
            error: "Something went wrong on our side.".to_owned(),
            code: "internal".to_owned(),
            errors: None,
        },
    }
}

/// One path segment, percent-encoded (a SKU or an id in a path).
pub fn segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// A query string from the pairs whose value is not empty, with its `?`; empty when none is.
pub fn query_string<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (name, value) in pairs {
        if !value.is_empty() {
            serializer.append_pair(name, value);
            any = true;
        }
    }
    if any {
        format!("?{}", serializer.finish())
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_segment_keeps_only_unreserved_characters() {
        assert_eq!(segment("TEA-001"), "TEA-001");
        assert_eq!(segment("a/b c?é"), "a%2Fb%20c%3F%C3%A9");
    }

    #[test]
    fn a_query_string_leaves_out_empty_values() {
        assert_eq!(
            query_string([("status", "open"), ("q", ""), ("q2", "a&b")]),
            "?status=open&q2=a%26b"
        );
        assert_eq!(query_string([("status", "")]), "");
    }
}
