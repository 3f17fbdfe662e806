//! Stripe's API shape (EXTERNAL_APIS.md "Payment provider"): form-encoded POSTs with
//! `Authorization: Bearer sk_…` and an `Idempotency-Key`; amounts in the currency's smallest unit
//! (JPY is zero-decimal); errors as `{"error": {"type", "code", "message"}}`.

use super::{Authorization, ProviderRefund};
use crate::CallError;
use rescind_domain::{Currency, Money};
use serde::Deserialize;

/// The metadata key under which rescind stores its idempotency key on a refund, so an attempt whose
/// answer was lost can be found again.
const IDEMPOTENCY_METADATA_KEY: &str = "rescind_idempotency_key";
/// Refunds of one payment read when looking one up; a payment is refunded a handful of times at most.
const REFUND_LOOKUP_LIMIT: u32 = 100;

/// A Stripe account reached at `base_url`.
#[derive(Clone, Debug)]
pub struct StripeClient {
    http: reqwest::Client,
    base_url: String,
    secret_key: String,
}

#[derive(Debug, Deserialize)]
struct RefundBody {
    id: String,
    amount: i64,
    status: String,
    #[serde(default)]
    metadata: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct RefundList {
    data: Vec<RefundBody>,
}

#[derive(Debug, Deserialize)]
struct PaymentIntentBody {
    id: String,
    status: String,
    payment_method: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

impl StripeClient {
    pub fn new(http: reqwest::Client, base_url: &str, secret_key: &str) -> Self {
        StripeClient {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            secret_key: secret_key.to_owned(),
        }
    }

    /// From the stored credentials `{"secret_key": "sk_…"}`.
    pub fn from_credentials(
        http: reqwest::Client,
        base_url: &str,
        credentials: Option<&str>,
    ) -> Result<Self, CallError> {
        let secret_key = credentials
            .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
            .and_then(|value| value.get("secret_key").and_then(|key| key.as_str()).map(str::to_owned))
            .ok_or_else(|| CallError::Misconfigured {
                message: "the Stripe integration has no secret_key".to_owned(),
            })?;
        Ok(StripeClient::new(http, base_url, &secret_key))
    }

    fn minor_units(amount: Money, currency: Currency) -> Result<i64, CallError> {
        amount.to_minor_units(currency).ok_or_else(|| CallError::Refused {
            message: format!(
                "{} is not a whole number of {currency}'s smallest unit",
                amount.format(currency)
            ),
        })
    }

    /// Sends a request and classifies the answer: 2xx parsed as `T`; 409, 429 and 5xx transient;
    /// other 4xx refused with Stripe's message; no answer unknown.
    async fn send<T: for<'de> Deserialize<'de>>(&self, request: reqwest::RequestBuilder) -> Result<T, CallError> {
        let response = request
            .bearer_auth(&self.secret_key)
            .send()
            .await
            .map_err(|error| CallError::from_transport(&error))?;
        let status = response.status();
        let body = response.text().await.map_err(|error| CallError::Unknown {
            message: error.to_string(),
        })?;
        if status.is_success() {
            return serde_json::from_str(&body).map_err(|error| CallError::Unknown {
                message: format!("unexpected answer from Stripe: {error}"),
            });
        }
        let detail = serde_json::from_str::<ErrorEnvelope>(&body)
            .ok()
            .map(|envelope| envelope.error);
        let message = match &detail {
            Some(ErrorBody { kind, code, message }) => format!(
                "{} ({}{})",
                message.as_deref().unwrap_or("no message"),
                kind.as_deref().unwrap_or("error"),
                code.as_deref().map(|code| format!(", {code}")).unwrap_or_default()
            ),
            None => format!("HTTP {status}"),
        };
        let message = format!("Stripe answered {}: {message}", status.as_u16());
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 409 {
            Err(CallError::Transient { message })
        } else {
            Err(CallError::Refused { message })
        }
    }

    /// `POST /v1/refunds`.
    pub async fn refund(
        &self,
        payment_intent: &str,
        amount: Money,
        currency: Currency,
        idempotency_key: &str,
    ) -> Result<ProviderRefund, CallError> {
        let minor = Self::minor_units(amount, currency)?.to_string();
        let form = [
            ("payment_intent", payment_intent),
            ("amount", minor.as_str()),
            ("reason", "requested_by_customer"),
            ("metadata[rescind_idempotency_key]", idempotency_key),
        ];
        let request = self
            .http
            .post(format!("{}/v1/refunds", self.base_url))
            .header("Idempotency-Key", idempotency_key)
            .form(&form);
        let refund: RefundBody = self.send(request).await?;
        refund_outcome(refund, currency)
    }

    /// Finds the refund an earlier attempt with `idempotency_key` made, if it exists.
    pub async fn find_refund(
        &self,
        payment_intent: &str,
        idempotency_key: &str,
        currency: Currency,
    ) -> Result<Option<ProviderRefund>, CallError> {
        let request = self.http.get(format!("{}/v1/refunds", self.base_url)).query(&[
            ("payment_intent", payment_intent),
            ("limit", &REFUND_LOOKUP_LIMIT.to_string()),
        ]);
        // A failed look-up is not a refusal: the refund may well exist.
        let list: RefundList = self.send(request).await.map_err(|error| match error {
            CallError::Refused { message } => CallError::Transient { message },
            other => other,
        })?;
        list.data
            .into_iter()
            .find(|refund| {
                refund
                    .metadata
                    .get(IDEMPOTENCY_METADATA_KEY)
                    .and_then(|value| value.as_str())
                    == Some(idempotency_key)
            })
            .map(|refund| refund_outcome(refund, currency))
            .transpose()
    }

    /// `POST /v1/payment_intents/{id}/cancel`; a payment already cancelled counts as done.
    pub async fn cancel_payment_intent(&self, payment_intent: &str, idempotency_key: &str) -> Result<(), CallError> {
        let request = self
            .http
            .post(format!("{}/v1/payment_intents/{payment_intent}/cancel", self.base_url))
            .header("Idempotency-Key", idempotency_key)
            .form(&[("cancellation_reason", "requested_by_customer")]);
        match self.send::<PaymentIntentBody>(request).await {
            Ok(intent) if intent.status == "canceled" => Ok(()),
            Ok(intent) => Err(CallError::Refused {
                message: format!("the payment is {} after the cancel", intent.status),
            }),
            Err(CallError::Refused { message }) => match self.payment_intent(payment_intent).await {
                Ok(intent) if intent.status == "canceled" => Ok(()),
                _ => Err(CallError::Refused { message }),
            },
            Err(other) => Err(other),
        }
    }

    async fn payment_intent(&self, payment_intent: &str) -> Result<PaymentIntentBody, CallError> {
        self.send(
            self.http
                .get(format!("{}/v1/payment_intents/{payment_intent}", self.base_url)),
        )
        .await
    }

    /// A new PaymentIntent charging the saved payment method of `payment_intent` again, confirmed off
    /// session and captured later (`capture_method=manual`): an authorization.
    pub async fn reauthorize(
        &self,
        payment_intent: &str,
        amount: Money,
        currency: Currency,
        idempotency_key: &str,
    ) -> Result<Authorization, CallError> {
        let original = self.payment_intent(payment_intent).await?;
        let payment_method = original.payment_method.ok_or_else(|| CallError::Refused {
            message: format!("payment {payment_intent} has no saved payment method to charge again"),
        })?;
        let minor = Self::minor_units(amount, currency)?.to_string();
        let currency_code = currency.code().to_ascii_lowercase();
        let form = [
            ("amount", minor.as_str()),
            ("currency", currency_code.as_str()),
            ("payment_method", payment_method.as_str()),
            ("confirm", "true"),
            ("off_session", "true"),
            ("capture_method", "manual"),
        ];
        let request = self
            .http
            .post(format!("{}/v1/payment_intents", self.base_url))
            .header("Idempotency-Key", idempotency_key)
            .form(&form);
        let intent: PaymentIntentBody = self.send(request).await?;
        match intent.status.as_str() {
            "requires_capture" | "succeeded" => Ok(Authorization { reference: intent.id }),
            other => Err(CallError::Refused {
                message: format!("the new authorization is {other}"),
            }),
        }
    }
}

fn refund_outcome(refund: RefundBody, currency: Currency) -> Result<ProviderRefund, CallError> {
    match refund.status.as_str() {
        "succeeded" | "pending" => Ok(ProviderRefund {
            id: refund.id,
            amount: Money::from_minor_units(refund.amount, currency),
        }),
        other => Err(CallError::Refused {
            message: format!("Stripe reports refund {} as {other}", refund.id),
        }),
    }
}
