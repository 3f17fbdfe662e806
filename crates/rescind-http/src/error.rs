//! The one HTTP error type: every failure becomes a status and the error body of API.md
//! (`{"error", "code", "errors"?}`). Unexpected errors are logged with their cause chain and reach the
//! client as an opaque 500.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rescind_domain::{CancelError, RefundError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The error body of every failed request.
#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
pub struct ErrorBody {
    /// One human sentence.
    #[schema(example = "order #1001 has already shipped; it cannot be cancelled and must be handled as a return")]
    pub error: String,
    /// A stable snake_case code.
    #[schema(example = "return_required")]
    pub code: String,
    /// One entry per problem, for validation failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<String>>,
}

/// A failed request.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub errors: Option<Vec<String>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            errors: None,
        }
    }

    /// 400 with one entry per problem.
    pub fn invalid(errors: Vec<String>) -> Self {
        let message = if errors.len() == 1 {
            format!("The request is invalid: {}", errors[0])
        } else {
            format!("The request has {} problems.", errors.len())
        };
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
            message,
            errors: Some(errors),
        }
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "A valid bearer token is required.",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("No such {what}."))
    }

    /// A bug or an outage: logged in full, shown as an opaque sentence.
    pub fn internal(error: &anyhow::Error) -> Self {
        tracing::error!(error = format!("{error:#}"), "request failed unexpectedly");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Something went wrong on our side; nothing was lost. Try again.",
        )
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.message.clone(),
            code: self.code.to_owned(),
            errors: self.errors.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> Self {
        ApiError::internal(&error)
    }
}

/// Capitalizes a domain error sentence and ends it with a full stop.
pub(crate) fn sentence(text: String) -> String {
    let mut characters = text.chars();
    match characters.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), characters.as_str()),
        None => text,
    }
}

impl From<CancelError> for ApiError {
    fn from(error: CancelError) -> Self {
        let code = cancel_error_code(&error);
        match error {
            CancelError::InvalidReason { problems, .. } | CancelError::InvalidLines { problems } => {
                ApiError::invalid(problems)
            }
            CancelError::RefundMethodNotApplicable { .. } => ApiError::invalid(vec![format!("refund_method: {error}")]),
            _ => ApiError::new(StatusCode::CONFLICT, code, sentence(error.to_string())),
        }
    }
}

/// The stable code of a cancel refusal (API.md).
pub fn cancel_error_code(error: &CancelError) -> &'static str {
    match error {
        CancelError::AlreadyCancelled { .. } => "already_cancelled",
        CancelError::ReturnRequired { .. } => "return_required",
        CancelError::NotCancellable { .. } => "order_not_cancellable",
        CancelError::InvalidReason { .. } => "invalid_request",
        CancelError::PaymentProviderRequired { .. } => "payment_provider_required",
        CancelError::RefundMethodNotApplicable { .. } => "invalid_request",
        CancelError::InvalidLines { .. } => "invalid_request",
        CancelError::PartialCancelUnsupported { .. } => "partial_cancel_unsupported",
    }
}

impl From<RefundError> for ApiError {
    fn from(error: RefundError) -> Self {
        match error {
            RefundError::ExceedsRefundable { .. } => ApiError::invalid(vec![format!("amount: {error}")]),
            RefundError::ChannelRefundNotApplicable { .. } => ApiError::invalid(vec![format!("method: {error}")]),
            RefundError::PaymentProviderRequired => ApiError::new(
                StatusCode::CONFLICT,
                "payment_provider_required",
                sentence(error.to_string()),
            ),
        }
    }
}
