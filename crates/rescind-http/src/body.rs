//! Request bodies: read once, up to [`REQUEST_BODY_BYTES_MAX`] (413 beyond), and parsed as JSON with a
//! 400 that says what is wrong; headers up to [`REQUEST_HEADER_BYTES_MAX`] (431) and paths up to
//! [`REQUEST_URI_BYTES_MAX`] (414).

use crate::error::ApiError;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::CONTENT_LENGTH;
use axum::http::StatusCode;
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

/// The largest request body accepted: a bulk cancel of 1000 ids or an order of 500 lines fits with
/// room to spare; anything larger is a mistake or an attack.
pub const REQUEST_BODY_BYTES_MAX: usize = 1024 * 1024;

/// How much of an oversize body is still read (and thrown away) before answering 413, so that a
/// client still writing gets a clean answer instead of a reset connection. Beyond this the
/// connection is closed at once: reading more would only serve an attacker.
pub const OVERSIZE_BODY_DRAIN_BYTES_MAX: usize = 8 * 1024 * 1024;

/// The most bytes of header names and values one request may carry (a bearer token, an
/// idempotency key and a signature need far less).
pub const REQUEST_HEADER_BYTES_MAX: usize = 32 * 1024;

/// The longest path with its query string.
pub const REQUEST_URI_BYTES_MAX: usize = 8 * 1024;

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("The request body is larger than the limit of {REQUEST_BODY_BYTES_MAX} bytes."),
    )
}

/// Buffers the body (refusing oversize ones, and oversize headers and paths) so the idempotency layer
/// and the handlers see the same bytes. Run for every request by `metrics::tracked`.
pub async fn buffered(request: Request) -> Result<Request, ApiError> {
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > REQUEST_HEADER_BYTES_MAX {
        return Err(ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!("The request's headers are larger than the limit of {REQUEST_HEADER_BYTES_MAX} bytes."),
        ));
    }
    let uri_bytes = request.uri().path_and_query().map_or(0, |path| path.as_str().len());
    if uri_bytes > REQUEST_URI_BYTES_MAX {
        return Err(ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("The request's path and query are longer than the limit of {REQUEST_URI_BYTES_MAX} bytes."),
        ));
    }
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > OVERSIZE_BODY_DRAIN_BYTES_MAX) {
        return Err(too_large());
    }
    let (parts, mut body) = request.into_parts();
    let mut buffered = Vec::with_capacity(declared.unwrap_or(0).min(REQUEST_BODY_BYTES_MAX));
    let mut received = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| ApiError::invalid(vec!["the request body could not be read".to_owned()]))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        received += data.len();
        if received <= REQUEST_BODY_BYTES_MAX {
            buffered.extend_from_slice(&data);
        } else if received > OVERSIZE_BODY_DRAIN_BYTES_MAX {
            break;
        }
    }
    if received > REQUEST_BODY_BYTES_MAX {
        return Err(too_large());
    }
    Ok(Request::from_parts(parts, Body::from(buffered)))
}

/// Parses a JSON body into `T`: malformed JSON, wrong types and unknown fields are a 400 naming the
/// place; an empty body counts as `{}` so endpoints whose fields are all optional need none.
pub fn parse_json<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    // Every body of the API is an object; serde would otherwise fill a struct from an array by position.
    if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::invalid(vec!["the body must be a JSON object".to_owned()]));
    }
    serde_json::from_slice(bytes).map_err(|error| {
        let problem = match error.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("the body is not valid JSON ({error})")
            }
            serde_json::error::Category::Data | serde_json::error::Category::Io => error.to_string(),
        };
        ApiError::invalid(vec![problem])
    })
}
