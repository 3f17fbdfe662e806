//! rescind's connectors: one module per external system, each the only place that knows that
//! system's wire format. Every call carries the idempotency key of the step it serves (W7), and every
//! failure is classified as the workflow needs it ([`CallError`]).

pub mod channels;
pub mod encoding;
pub mod payments;
pub mod warehouses;

use std::time::Duration;

/// How a failed external call is to be treated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The partner said no for a business reason; nothing happened there. Not retried.
    #[error("refused: {message}")]
    Refused { message: String },
    /// The call did not take effect (it was not sent, or the partner answered with an error that
    /// means it did nothing). Safe to retry.
    #[error("temporary failure: {message}")]
    Transient { message: String },
    /// The request was sent but no answer came: it may have taken effect. Look it up before trying
    /// again (retrying with the same idempotency key is also safe).
    #[error("outcome unknown: {message}")]
    Unknown { message: String },
    /// The integration is set up wrongly (missing credentials, bad URL).
    #[error("misconfigured: {message}")]
    Misconfigured { message: String },
}

impl CallError {
    /// Classifies a transport error: not connected means not sent; anything later may have landed.
    pub fn from_transport(error: &reqwest::Error) -> CallError {
        let message = error.to_string();
        if error.is_connect() || error.is_builder() {
            CallError::Transient { message }
        } else {
            CallError::Unknown { message }
        }
    }
}

/// The HTTP client all connectors share: bounded connect and request time.
pub fn http_client(request_timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(request_timeout.min(Duration::from_secs(5)))
        .timeout(request_timeout)
        .pool_max_idle_per_host(64)
        .build()
        .expect("the HTTP client builds")
}

/// Sends a request and reads the whole answer; transport failures are classified, statuses are left
/// to the connector (each partner says "no" its own way).
pub(crate) async fn send(request: reqwest::RequestBuilder) -> Result<(reqwest::StatusCode, String), CallError> {
    let response = request
        .send()
        .await
        .map_err(|error| CallError::from_transport(&error))?;
    let status = response.status();
    let body = response.text().await.map_err(|error| CallError::Unknown {
        message: error.to_string(),
    })?;
    Ok((status, body))
}

/// 5xx and 429 mean "try again later"; with `detail` the partner's words.
pub(crate) fn transient_if_server_error(status: reqwest::StatusCode, partner: &str, detail: &str) -> Option<CallError> {
    (status.is_server_error() || status.as_u16() == 429).then(|| CallError::Transient {
        message: format!("{partner} answered {}: {detail}", status.as_u16()),
    })
}

/// A value of an integration's write-only credentials (a JSON object).
pub(crate) fn credential(credentials: Option<&str>, key: &str, partner: &str) -> Result<String, CallError> {
    credentials
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .and_then(|value| value.get(key).and_then(|value| value.as_str()).map(str::to_owned))
        .filter(|value| !value.is_empty())
        .ok_or_else(|| CallError::Misconfigured {
            message: format!("the {partner} integration has no {key} in its credentials"),
        })
}
