//! A simulated Stripe account (EXTERNAL_APIS.md "Payment provider"): PaymentIntents, refunds,
//! idempotent replay of the first answer for a key, Stripe's error shape, and a ledger.

use crate::faults::Decision;
use crate::Sim;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

type Params = Vec<(String, String)>;

#[derive(Clone, Debug)]
pub struct PaymentIntent {
    pub id: String,
    pub amount: i64,
    pub amount_received: i64,
    pub amount_refunded: i64,
    pub currency: String,
    pub status: String,
    pub payment_method: String,
    pub capture_method: String,
}

impl PaymentIntent {
    fn json(&self) -> Value {
        json!({
            "id": self.id, "object": "payment_intent", "amount": self.amount,
            "amount_received": self.amount_received, "currency": self.currency, "status": self.status,
            "payment_method": self.payment_method, "capture_method": self.capture_method,
        })
    }
}

#[derive(Clone, Debug)]
pub struct Refund {
    pub id: String,
    pub payment_intent: String,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub metadata: BTreeMap<String, String>,
    /// The Idempotency-Key the request that made it carried.
    pub idempotency_key: Option<String>,
}

impl Refund {
    fn json(&self) -> Value {
        json!({
            "id": self.id, "object": "refund", "amount": self.amount, "currency": self.currency,
            "payment_intent": self.payment_intent, "status": self.status, "metadata": self.metadata,
        })
    }
}

#[derive(Clone, Debug)]
struct StoredAnswer {
    fingerprint: String,
    status: u16,
    body: Value,
}

/// The simulated account: its payments, refunds, stored idempotent answers and call counts.
#[derive(Debug, Default)]
pub struct Account {
    pub payment_intents: BTreeMap<String, PaymentIntent>,
    pub refunds: Vec<Refund>,
    idempotency: HashMap<String, StoredAnswer>,
    calls: BTreeMap<String, u64>,
    next_id: u64,
}

impl Account {
    fn new_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}_sim{:08}", self.next_id)
    }

    /// Creates a payment directly (control API): `succeeded` is captured, `requires_capture` authorized.
    pub fn create_payment_intent(
        &mut self,
        amount: i64,
        currency: &str,
        status: &str,
        payment_method: &str,
    ) -> PaymentIntent {
        let intent = PaymentIntent {
            id: self.new_id("pi"),
            amount,
            amount_received: if status == "succeeded" { amount } else { 0 },
            amount_refunded: 0,
            currency: currency.to_ascii_lowercase(),
            status: status.to_owned(),
            payment_method: payment_method.to_owned(),
            capture_method: if status == "succeeded" { "automatic" } else { "manual" }.to_owned(),
        };
        self.payment_intents.insert(intent.id.clone(), intent.clone());
        intent
    }

    pub fn ledger(&self) -> Value {
        json!({
            "payment_intents": self.payment_intents.values().map(PaymentIntent::json).collect::<Vec<_>>(),
            "refunds": self.refunds.iter().map(|refund| {
                let mut body = refund.json();
                body["idempotency_key"] = json!(refund.idempotency_key);
                body
            }).collect::<Vec<_>>(),
            "calls": self.calls,
        })
    }
}

fn error(status: StatusCode, kind: &str, code: &str, message: &str) -> (StatusCode, Value) {
    (
        status,
        json!({"error": {"type": kind, "code": code, "message": message}}),
    )
}

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

pub fn router() -> Router<Sim> {
    Router::new()
        .route("/v1/refunds", post(create_refund).get(list_refunds))
        .route("/v1/payment_intents", post(create_payment_intent))
        .route("/v1/payment_intents/{id}", get(retrieve_payment_intent))
        .route("/v1/payment_intents/{id}/cancel", post(cancel_payment_intent))
        .route("/_sim/payment_intents", post(control_create_payment_intent))
}

/// Runs one API call: authentication, faults, idempotent replay, then `effect` on the account.
async fn call(
    sim: &Sim,
    headers: &HeaderMap,
    endpoint: &str,
    fingerprint: String,
    effect: impl FnOnce(&mut Account) -> (StatusCode, Value),
) -> Response {
    let authorized = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        == Some(sim.secret_key.as_str());
    if !authorized {
        let (status, body) = error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "api_key_invalid",
            "Invalid API Key provided.",
        );
        return (status, Json(body)).into_response();
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let (decision, latency) = {
        let mut world = sim.world();
        *world.stripe.calls.entry(endpoint.to_owned()).or_default() += 1;
        world.faults.decide(endpoint)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Decision::Error(status) = decision {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let (status, body) = error(
            status,
            "api_error",
            "simulated_outage",
            "The simulator injected an error; nothing was done.",
        );
        return (status, Json(body)).into_response();
    }
    let (status, body) = {
        let mut world = sim.world();
        let account = &mut world.stripe;
        match key.as_ref().and_then(|key| account.idempotency.get(key)) {
            Some(stored) if stored.fingerprint != fingerprint => error(
                StatusCode::BAD_REQUEST,
                "idempotency_error",
                "idempotency_key_in_use",
                "Keys for idempotent requests can only be used with the same parameters they were first used with.",
            ),
            Some(stored) => (
                StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK),
                stored.body.clone(),
            ),
            None => {
                let (status, body) = if decision == Decision::Refuse {
                    error(
                        StatusCode::PAYMENT_REQUIRED,
                        "card_error",
                        "card_declined",
                        "Your card was declined.",
                    )
                } else {
                    effect(account)
                };
                if let Some(key) = key {
                    account.idempotency.insert(
                        key,
                        StoredAnswer {
                            fingerprint,
                            status: status.as_u16(),
                            body: body.clone(),
                        },
                    );
                }
                (status, body)
            }
        }
    };
    if let Decision::ApplyThenHang(hang) = decision {
        tokio::time::sleep(hang).await;
    }
    (status, Json(body)).into_response()
}

fn fingerprint(path: &str, params: &Params) -> String {
    let mut sorted = params.clone();
    sorted.sort();
    format!("{path}?{sorted:?}")
}

async fn create_refund(State(sim): State<Sim>, headers: HeaderMap, Form(params): Form<Params>) -> Response {
    let fingerprint = fingerprint("/v1/refunds", &params);
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    call(&sim, &headers, "refunds.create", fingerprint, |account| {
        let Some(intent_id) = param(&params, "payment_intent") else {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "parameter_missing",
                "Missing payment_intent.",
            );
        };
        let new_id = account.new_id("re");
        let Some(intent) = account.payment_intents.get_mut(intent_id) else {
            return error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "resource_missing",
                "No such payment_intent.",
            );
        };
        if intent.status != "succeeded" {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "payment_intent_unexpected_state",
                &format!(
                    "This PaymentIntent has a status of {} and cannot be refunded.",
                    intent.status
                ),
            );
        }
        let remaining = intent.amount_received - intent.amount_refunded;
        let amount = match param(&params, "amount").map(str::parse::<i64>) {
            None => remaining,
            Some(Ok(amount)) if amount > 0 => amount,
            Some(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "parameter_invalid_integer",
                    "Invalid amount.",
                )
            }
        };
        if amount > remaining {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "amount_too_large",
                &format!("Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})."),
            );
        }
        intent.amount_refunded += amount;
        let metadata = params
            .iter()
            .filter_map(|(key, value)| {
                key.strip_prefix("metadata[")
                    .and_then(|rest| rest.strip_suffix(']'))
                    .map(|name| (name.to_owned(), value.clone()))
            })
            .collect();
        let refund = Refund {
            id: new_id,
            payment_intent: intent.id.clone(),
            amount,
            currency: intent.currency.clone(),
            status: "succeeded".to_owned(),
            metadata,
            idempotency_key,
        };
        let body = refund.json();
        account.refunds.push(refund);
        (StatusCode::OK, body)
    })
    .await
}

#[derive(Debug, Deserialize)]
struct RefundListQuery {
    payment_intent: Option<String>,
    limit: Option<usize>,
}

async fn list_refunds(State(sim): State<Sim>, headers: HeaderMap, Query(query): Query<RefundListQuery>) -> Response {
    call(&sim, &headers, "refunds.list", String::new(), |account| {
        let data: Vec<Value> = account
            .refunds
            .iter()
            .rev()
            .filter(|refund| {
                query
                    .payment_intent
                    .as_deref()
                    .is_none_or(|intent| refund.payment_intent == intent)
            })
            .take(query.limit.unwrap_or(10).min(100))
            .map(Refund::json)
            .collect();
        (
            StatusCode::OK,
            json!({"object": "list", "data": data, "has_more": false}),
        )
    })
    .await
}

async fn create_payment_intent(State(sim): State<Sim>, headers: HeaderMap, Form(params): Form<Params>) -> Response {
    let fingerprint = fingerprint("/v1/payment_intents", &params);
    call(&sim, &headers, "payment_intents.create", fingerprint, |account| {
        let amount = param(&params, "amount")
            .and_then(|amount| amount.parse::<i64>().ok())
            .filter(|amount| *amount > 0);
        let (Some(amount), Some(currency)) = (amount, param(&params, "currency")) else {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "parameter_missing",
                "amount and currency are required.",
            );
        };
        let payment_method = param(&params, "payment_method").unwrap_or("pm_card_visa");
        if payment_method.contains("declined") {
            return error(
                StatusCode::PAYMENT_REQUIRED,
                "card_error",
                "card_declined",
                "Your card was declined.",
            );
        }
        let status = if param(&params, "capture_method") == Some("manual") {
            "requires_capture"
        } else {
            "succeeded"
        };
        let intent = account.create_payment_intent(amount, currency, status, payment_method);
        (StatusCode::OK, intent.json())
    })
    .await
}

async fn retrieve_payment_intent(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    call(
        &sim,
        &headers,
        "payment_intents.retrieve",
        String::new(),
        |account| match account.payment_intents.get(&id) {
            Some(intent) => (StatusCode::OK, intent.json()),
            None => error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "resource_missing",
                "No such payment_intent.",
            ),
        },
    )
    .await
}

async fn cancel_payment_intent(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(params): Form<Params>,
) -> Response {
    let fingerprint = fingerprint(&format!("/v1/payment_intents/{id}/cancel"), &params);
    call(&sim, &headers, "payment_intents.cancel", fingerprint, |account| {
        let Some(intent) = account.payment_intents.get_mut(&id) else {
            return error(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "resource_missing",
                "No such payment_intent.",
            );
        };
        match intent.status.as_str() {
            "requires_capture" | "requires_payment_method" | "requires_confirmation" | "requires_action" => {
                intent.status = "canceled".to_owned();
                (StatusCode::OK, intent.json())
            }
            other => error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "payment_intent_unexpected_state",
                &format!("You cannot cancel this PaymentIntent because it has a status of {other}."),
            ),
        }
    })
    .await
}

#[derive(Debug, Deserialize)]
struct NewPaymentIntent {
    amount: i64,
    currency: String,
    /// `succeeded` (captured, the default) or `requires_capture` (authorized).
    status: Option<String>,
    payment_method: Option<String>,
}

async fn control_create_payment_intent(State(sim): State<Sim>, Json(request): Json<NewPaymentIntent>) -> Json<Value> {
    let intent = sim.world().stripe.create_payment_intent(
        request.amount,
        &request.currency,
        request.status.as_deref().unwrap_or("succeeded"),
        request.payment_method.as_deref().unwrap_or("pm_card_visa"),
    );
    Json(intent.json())
}
