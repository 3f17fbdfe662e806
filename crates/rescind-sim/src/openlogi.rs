//! A simulated OpenLogi (API v1.5) under `/api`: shipments with OpenLogi's full status list, DELETE
//! refused once picking has begun, cancel requests accepted only while picking, picked or packed
//! (with a fee), modification requests, a rate limit answered with 429, and callbacks of status
//! changes and cancel-request answers to rescind, signed with the warehouse secret.
//!
//! Control API: `PUT /_sim/openlogi/config {"rate_limit", "window_ms", "fee", "callback_url",
//! "callback_secret"}`; `POST /_sim/openlogi/shipments/{id}/status {"status"}`;
//! `POST /_sim/openlogi/shipments/{id}/cancel_request {"answer": "accepted"|"rejected"}`.

use crate::faults::Decision;
use crate::Sim;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use rescind_connectors::encoding::{hex, hmac_sha256};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Statuses in which a shipment may still be deleted (before confirmation).
const DELETABLE: [&str; 3] = ["backordered", "allocating", "waiting"];
/// Statuses in which a cancel request is accepted.
const CANCEL_REQUESTABLE: [&str; 3] = ["picking", "picked", "packed"];
/// Statuses in which a modification request is accepted.
const MODIFIABLE: [&str; 3] = ["working", "picking", "picked"];

#[derive(Clone, Debug)]
pub struct Shipment {
    pub id: String,
    pub identifier: String,
    pub status: String,
    /// The status before a cancel request, restored when the warehouse rejects it.
    pub status_before_request: Option<String>,
    pub recipient: Value,
    pub items: Value,
    pub fee: Option<i64>,
}

impl Shipment {
    fn json(&self) -> Value {
        json!({"id": self.id, "identifier": self.identifier, "status": self.status, "recipient": self.recipient, "items": self.items, "fee": self.fee})
    }
}

/// The simulated warehouse.
#[derive(Debug)]
pub struct Warehouse {
    pub shipments: BTreeMap<String, Shipment>,
    /// Shipments created, deleted, cancel-requested, updated and modification-requested, by id.
    pub creates: Vec<String>,
    pub deletes: Vec<String>,
    pub cancel_requests: Vec<Value>,
    pub updates: Vec<Value>,
    pub modifications: Vec<Value>,
    /// Requests answered 429.
    pub throttled: u64,
    calls: BTreeMap<String, u64>,
    rate_limit: u32,
    window: Duration,
    window_started: Instant,
    window_count: u32,
    fee: i64,
    callback_url: Option<String>,
    callback_secret: Option<String>,
    next_id: u64,
}

impl Default for Warehouse {
    fn default() -> Self {
        Warehouse {
            shipments: BTreeMap::new(),
            creates: Vec::new(),
            deletes: Vec::new(),
            cancel_requests: Vec::new(),
            updates: Vec::new(),
            modifications: Vec::new(),
            throttled: 0,
            calls: BTreeMap::new(),
            rate_limit: 60,
            window: Duration::from_secs(60),
            window_started: Instant::now(),
            window_count: 0,
            fee: 300,
            callback_url: None,
            callback_secret: None,
            next_id: 0,
        }
    }
}

impl Warehouse {
    pub fn ledger(&self) -> Value {
        json!({
            "shipments": self.shipments.values().map(Shipment::json).collect::<Vec<_>>(),
            "creates": self.creates, "deletes": self.deletes, "cancel_requests": self.cancel_requests,
            "updates": self.updates, "modifications": self.modifications, "throttled": self.throttled, "calls": self.calls,
        })
    }

    /// Counts a request against the rate limit; `Some(seconds to wait)` when it is over.
    fn over_limit(&mut self) -> Option<f64> {
        let now = Instant::now();
        if now.duration_since(self.window_started) >= self.window {
            self.window_started = now;
            self.window_count = 0;
        }
        if self.window_count >= self.rate_limit {
            self.throttled += 1;
            return Some((self.window - now.duration_since(self.window_started)).as_secs_f64());
        }
        self.window_count += 1;
        None
    }
}

pub fn router() -> Router<Sim> {
    Router::new()
        .route("/api/shipments", post(create))
        .route("/api/shipments/{id}", get(read).put(update).delete(delete))
        .route("/api/shipments/{id}/cancel", post(request_cancel))
        .route("/api/shipments/{id}/modify", post(request_modification))
        .route("/api/shipments/{account}/{identifier}", get(find))
        .route("/_sim/openlogi/config", put(configure))
        .route("/_sim/openlogi/shipments/{id}/status", post(control_status))
        .route("/_sim/openlogi/shipments/{id}/cancel_request", post(control_answer))
}

fn error(status: StatusCode, error: &str, description: &str) -> (StatusCode, Value, Vec<(&'static str, String)>) {
    (
        status,
        json!({"error": error, "error_description": description}),
        Vec::new(),
    )
}

type Answer = (StatusCode, Value, Vec<(&'static str, String)>);

/// One API call: authentication, the rate limit, faults, then `effect`.
async fn run(
    sim: &Sim,
    endpoint: &str,
    headers: &HeaderMap,
    effect: impl FnOnce(&mut Warehouse) -> Answer,
) -> Response {
    let authorized = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("Bearer "));
    let versioned = headers.get("x-api-version").and_then(|value| value.to_str().ok()) == Some("1.5");
    let (decision, latency) = {
        let mut world = sim.world();
        *world.openlogi.calls.entry(endpoint.to_owned()).or_default() += 1;
        world.faults.decide(&format!("openlogi.{endpoint}"))
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (status, body, extra_headers) = if !authorized {
        error(StatusCode::UNAUTHORIZED, "unauthorized", "認証に失敗しました。")
    } else if !versioned {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_version",
            "X-Api-Version: 1.5 が必要です。",
        )
    } else {
        let mut world = sim.world();
        let warehouse = &mut world.openlogi;
        match warehouse.over_limit() {
            Some(wait) => {
                let limit = warehouse.rate_limit.to_string();
                let mut answer = error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    "リクエスト数の上限を超えました。",
                );
                answer.2 = vec![
                    ("retry-after", format!("{wait:.3}")),
                    ("x-ratelimit-limit", limit),
                    ("x-ratelimit-remaining", "0".to_owned()),
                ];
                answer
            }
            None => match decision {
                Decision::Error(status) => error(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                    "server_error",
                    "the simulator injected an error; nothing was done",
                ),
                Decision::Refuse => error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    "the simulator refused the request",
                ),
                Decision::Proceed | Decision::ApplyThenHang(_) => effect(warehouse),
            },
        }
    };
    if let Decision::ApplyThenHang(hang) = decision {
        tokio::time::sleep(hang).await;
    }
    let mut response = (status, Json(body)).into_response();
    for (name, value) in extra_headers {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

async fn create(State(sim): State<Sim>, headers: HeaderMap, Json(request): Json<Value>) -> Response {
    run(&sim, "create", &headers, |warehouse| {
        let Some(identifier) = request["identifier"].as_str().filter(|id| !id.is_empty()) else {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_error",
                "identifier は必須です。",
            );
        };
        if warehouse
            .shipments
            .values()
            .any(|shipment| shipment.identifier == identifier)
        {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_error",
                "identifier は既に使用されています。",
            );
        }
        warehouse.next_id += 1;
        let shipment = Shipment {
            id: format!("TS001-S{:06}", warehouse.next_id),
            identifier: identifier.to_owned(),
            status: "waiting".to_owned(),
            status_before_request: None,
            recipient: request["recipient"].clone(),
            items: request["items"].clone(),
            fee: None,
        };
        warehouse.creates.push(shipment.id.clone());
        let body = shipment.json();
        warehouse.shipments.insert(shipment.id.clone(), shipment);
        (StatusCode::CREATED, body, Vec::new())
    })
    .await
}

async fn read(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    run(&sim, "get", &headers, |warehouse| match warehouse.shipments.get(&id) {
        Some(shipment) => (StatusCode::OK, shipment.json(), Vec::new()),
        None => error(StatusCode::NOT_FOUND, "not_found", "出荷依頼が見つかりません。"),
    })
    .await
}

async fn find(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path((_account, identifier)): Path<(String, String)>,
) -> Response {
    run(&sim, "get", &headers, |warehouse| {
        match warehouse
            .shipments
            .values()
            .find(|shipment| shipment.identifier == identifier)
        {
            Some(shipment) => (StatusCode::OK, shipment.json(), Vec::new()),
            None => error(StatusCode::NOT_FOUND, "not_found", "出荷依頼が見つかりません。"),
        }
    })
    .await
}

async fn delete(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    run(&sim, "delete", &headers, |warehouse| {
        let Some(shipment) = warehouse.shipments.get(&id) else {
            return error(StatusCode::NOT_FOUND, "not_found", "出荷依頼が見つかりません。");
        };
        if !DELETABLE.contains(&shipment.status.as_str()) {
            return error(StatusCode::BAD_REQUEST, "invalid_status", "キャンセルできませんでした");
        }
        warehouse.shipments.remove(&id);
        warehouse.deletes.push(id.clone());
        (StatusCode::OK, json!({"id": id, "status": "deleted"}), Vec::new())
    })
    .await
}

async fn request_cancel(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    run(&sim, "cancel", &headers, |warehouse| {
        let fee = warehouse.fee;
        let Some(shipment) = warehouse.shipments.get_mut(&id) else {
            return error(StatusCode::NOT_FOUND, "not_found", "出荷依頼が見つかりません。");
        };
        if shipment.status == "cancel_request" {
            return (StatusCode::OK, shipment.json(), Vec::new());
        }
        if !CANCEL_REQUESTABLE.contains(&shipment.status.as_str()) {
            return error(StatusCode::BAD_REQUEST, "invalid_status", "キャンセルできませんでした");
        }
        shipment.status_before_request = Some(shipment.status.clone());
        shipment.status = "cancel_request".to_owned();
        shipment.fee = Some(fee);
        let body = shipment.json();
        warehouse.cancel_requests.push(json!({"id": id, "fee": fee}));
        (StatusCode::OK, body, Vec::new())
    })
    .await
}

async fn update(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(request): Json<Value>,
) -> Response {
    run(&sim, "update", &headers, |warehouse| {
        let Some(shipment) = warehouse.shipments.get_mut(&id) else {
            return error(StatusCode::NOT_FOUND, "not_found", "出荷依頼が見つかりません。");
        };
        if !["backordered", "waiting"].contains(&shipment.status.as_str()) {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_status",
                "この状態の出荷依頼は更新できません。",
            );
        }
        if let Some(recipient) = request.get("recipient") {
            shipment.recipient = recipient.clone();
        }
        let fields: Vec<&String> = request
            .as_object()
            .map(|object| object.keys().collect())
            .unwrap_or_default();
        let body = shipment.json();
        warehouse.updates.push(json!({"id": id, "fields": fields}));
        (StatusCode::OK, body, Vec::new())
    })
    .await
}

async fn request_modification(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(request): Json<Value>,
) -> Response {
    run(&sim, "modify", &headers, |warehouse| {
        let fee = warehouse.fee;
        let Some(shipment) = warehouse.shipments.get_mut(&id) else {
            return error(StatusCode::NOT_FOUND, "not_found", "出荷依頼が見つかりません。");
        };
        if !MODIFIABLE.contains(&shipment.status.as_str()) {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_status",
                "修正リクエストできませんでした",
            );
        }
        shipment.status_before_request = Some(shipment.status.clone());
        shipment.status = "modify_request".to_owned();
        shipment.fee = Some(fee);
        let body = shipment.json();
        let fields: Vec<&String> = request
            .as_object()
            .map(|object| object.keys().collect())
            .unwrap_or_default();
        warehouse
            .modifications
            .push(json!({"id": id, "fee": fee, "fields": fields}));
        (StatusCode::OK, body, Vec::new())
    })
    .await
}

#[derive(Debug, Deserialize)]
struct Config {
    rate_limit: Option<u32>,
    window_ms: Option<u64>,
    fee: Option<i64>,
    callback_url: Option<String>,
    callback_secret: Option<String>,
}

async fn configure(State(sim): State<Sim>, Json(config): Json<Config>) -> Json<Value> {
    let mut world = sim.world();
    let warehouse = &mut world.openlogi;
    if let Some(limit) = config.rate_limit {
        warehouse.rate_limit = limit;
    }
    if let Some(window) = config.window_ms {
        warehouse.window = Duration::from_millis(window);
    }
    if let Some(fee) = config.fee {
        warehouse.fee = fee;
    }
    if config.callback_url.is_some() {
        warehouse.callback_url = config.callback_url;
    }
    if config.callback_secret.is_some() {
        warehouse.callback_secret = config.callback_secret;
    }
    warehouse.window_started = Instant::now();
    warehouse.window_count = 0;
    Json(json!({"configured": true}))
}

/// Sends a signed callback to rescind when one is configured; answers whether it was delivered.
async fn call_back(sim: &Sim, body: Value) -> Option<u16> {
    let (url, secret) = {
        let world = sim.world();
        (
            world.openlogi.callback_url.clone()?,
            world.openlogi.callback_secret.clone().unwrap_or_default(),
        )
    };
    let text = body.to_string();
    let signature = format!("sha256={}", hex(&hmac_sha256(secret.as_bytes(), text.as_bytes())));
    let response = reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/json")
        .header("X-Rescind-Signature", signature)
        .body(text)
        .send()
        .await
        .ok()?;
    Some(response.status().as_u16())
}

#[derive(Debug, Deserialize)]
struct NewStatus {
    status: String,
}

async fn control_status(State(sim): State<Sim>, Path(id): Path<String>, Json(request): Json<NewStatus>) -> Response {
    let moved = match sim.world().openlogi.shipments.get_mut(&id) {
        Some(shipment) => {
            shipment.status = request.status.clone();
            true
        }
        None => false,
    };
    if !moved {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "no such shipment"}))).into_response();
    }
    let delivered = call_back(&sim, json!({"external_id": id, "status": request.status})).await;
    Json(json!({"id": id, "status": request.status, "callback_status": delivered})).into_response()
}

#[derive(Debug, Deserialize)]
struct CancelRequestAnswer {
    answer: String,
    message: Option<String>,
}

async fn control_answer(
    State(sim): State<Sim>,
    Path(id): Path<String>,
    Json(request): Json<CancelRequestAnswer>,
) -> Response {
    let accepted = match request.answer.as_str() {
        "accepted" => true,
        "rejected" => false,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "answer is accepted or rejected"})),
            )
                .into_response()
        }
    };
    let known = {
        let mut world = sim.world();
        let warehouse = &mut world.openlogi;
        match warehouse
            .shipments
            .get(&id)
            .map(|shipment| shipment.status == "cancel_request")
        {
            Some(true) if accepted => {
                warehouse.shipments.remove(&id);
                true
            }
            Some(true) => {
                if let Some(shipment) = warehouse.shipments.get_mut(&id) {
                    shipment.status = shipment
                        .status_before_request
                        .take()
                        .unwrap_or_else(|| "picking".to_owned());
                }
                true
            }
            _ => false,
        }
    };
    if !known {
        return (
            StatusCode::CONFLICT,
            Json(json!({"error": "no cancel request is open for this shipment"})),
        )
            .into_response();
    }
    let delivered = call_back(
        &sim,
        json!({"external_id": id, "cancel_request": request.answer, "message": request.message}),
    )
    .await;
    Json(json!({"id": id, "cancel_request": request.answer, "callback_status": delivered})).into_response()
}
