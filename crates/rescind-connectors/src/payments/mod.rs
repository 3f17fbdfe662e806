//! Payment providers.

pub mod stripe;

use crate::CallError;
use rescind_domain::{Currency, Money, PaymentProviderKind};

/// A refund the provider made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderRefund {
    /// The provider's id, e.g. `re_…`.
    pub id: String,
    pub amount: Money,
}

/// A payment authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorization {
    /// The provider's id, e.g. `pi_…`.
    pub reference: String,
}

/// A payment provider integration, ready to call.
#[derive(Clone, Debug)]
pub enum PaymentConnector {
    Stripe(stripe::StripeClient),
}

impl PaymentConnector {
    /// Builds the connector of a provider from its stored settings.
    pub fn new(
        kind: PaymentProviderKind,
        base_url: &str,
        credentials: Option<&str>,
        http: reqwest::Client,
    ) -> Result<PaymentConnector, CallError> {
        match kind {
            PaymentProviderKind::Stripe => Ok(PaymentConnector::Stripe(stripe::StripeClient::from_credentials(
                http,
                base_url,
                credentials,
            )?)),
        }
    }

    /// Refunds `amount` of the payment `reference`. `earlier_attempts`: a previous attempt may have
    /// reached the provider, so it is looked up first.
    pub async fn refund(
        &self,
        reference: &str,
        amount: Money,
        currency: Currency,
        idempotency_key: &str,
        earlier_attempts: bool,
    ) -> Result<ProviderRefund, CallError> {
        match self {
            PaymentConnector::Stripe(client) => {
                if earlier_attempts {
                    if let Some(refund) = client.find_refund(reference, idempotency_key, currency).await? {
                        return Ok(refund);
                    }
                }
                client.refund(reference, amount, currency, idempotency_key).await
            }
        }
    }

    /// Cancels an authorization that was never captured. Already cancelled counts as done.
    pub async fn void(&self, reference: &str, idempotency_key: &str) -> Result<(), CallError> {
        match self {
            PaymentConnector::Stripe(client) => client.cancel_payment_intent(reference, idempotency_key).await,
        }
    }

    /// Authorizes `amount` again with the payment method of the payment `reference` (U3).
    pub async fn reauthorize(
        &self,
        reference: &str,
        amount: Money,
        currency: Currency,
        idempotency_key: &str,
    ) -> Result<Authorization, CallError> {
        match self {
            PaymentConnector::Stripe(client) => client.reauthorize(reference, amount, currency, idempotency_key).await,
        }
    }
}
