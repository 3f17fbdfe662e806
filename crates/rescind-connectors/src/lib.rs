//! rescind's connectors: one module per external system, each the only place that knows that
//! system's wire format. Every call carries the idempotency key of the step it serves (W7), and every
//! failure is classified as the workflow needs it ([`CallError`]).

pub mod payments;

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
