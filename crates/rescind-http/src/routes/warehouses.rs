//! Warehouse integrations (API.md `POST /warehouses`) and the warehouse's reports
//! (`POST /warehouses/{id}/events`): outbound status changes and answers to cancellation requests.

use crate::auth::{equal_in_constant_time, hash_secret, Principal};
use crate::body::parse_json;
use crate::error::{ApiError, ErrorBody};
use crate::input::{self, Problems, TEXT_LENGTH_MAX};
use crate::wire::{
    warehouse_body, CreateWarehouseRequest, WarehouseBody, WarehouseEventBody, WarehouseEventReceipt, WarehouseList,
};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use rescind_connectors::encoding::{hex, hmac_sha256};
use rescind_connectors::warehouses::openlogi::RATE_LIMIT_PER_MINUTE;
use rescind_domain::{
    warehouse_event, OutboundStatus, Scope, WarehouseEvent, WarehouseKind, WarehouseSettings, WorkflowSchedule,
};
use rescind_store::{new_id, now, ChangeError, RandomIds, Warehouse};
use serde_json::Value;

/// The most requests per window a warehouse may be given: far above any real 3PL's limit.
const RATE_LIMIT_MAX: u32 = 10_000;

#[utoipa::path(post, path = "/api/v1/warehouses", tag = "integrations", request_body = CreateWarehouseRequest,
    security(("bearer" = [])),
    responses((status = 201, body = WarehouseBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn create_warehouse(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<(StatusCode, Json<WarehouseBody>), ApiError> {
    let shop = principal.shop(Scope::WriteSettings)?;
    let request: CreateWarehouseRequest = parse_json(&body)?;
    let mut problems = Problems::default();
    let kind = problems.named("kind", &request.kind, WarehouseKind::parse, WarehouseKind::names());
    if request.kind.is_none() {
        problems.push("kind", "is required");
    }
    let name = problems.required_text("name", &request.name, TEXT_LENGTH_MAX);
    let (base_url, credentials) = input::integration_endpoint(&mut problems, &request.base_url, &request.credentials);
    if base_url.is_none() {
        problems.push("base_url", "is required");
    }
    let token = request
        .credentials
        .as_ref()
        .and_then(|credentials| credentials.get("access_token"))
        .and_then(Value::as_str);
    if token.is_none_or(str::is_empty) {
        problems.push("credentials.access_token", "is required");
    }
    let settings = request.settings.unwrap_or_default();
    let defaults = WarehouseSettings::default();
    let rate_limit = settings.rate_limit.unwrap_or(RATE_LIMIT_PER_MINUTE);
    let rate_limit_window_ms = settings.rate_limit_window_ms.unwrap_or(60_000);
    if !(1..=RATE_LIMIT_MAX).contains(&rate_limit) {
        problems.push(
            "settings.rate_limit",
            format_args!("must be between 1 and {RATE_LIMIT_MAX}"),
        );
    }
    if !(1..=3_600_000).contains(&rate_limit_window_ms) {
        problems.push("settings.rate_limit_window_ms", "must be between 1 and 3600000");
    }
    let (Some(kind), Some(base_url)) = problems.into_result((kind, base_url)).map_err(ApiError::invalid)? else {
        return Err(ApiError::invalid(vec!["the warehouse is incomplete".to_owned()]));
    };
    let warehouse = Warehouse {
        id: new_id("wh"),
        shop_id: shop.shop_id.clone(),
        kind,
        name,
        base_url,
        credentials,
        settings: WarehouseSettings {
            cancel_after_confirmation: settings
                .cancel_after_confirmation
                .unwrap_or(defaults.cancel_after_confirmation),
            sync_modifications: settings.sync_modifications.unwrap_or(defaults.sync_modifications),
            modify_after_confirmation: settings
                .modify_after_confirmation
                .unwrap_or(defaults.modify_after_confirmation),
        },
        rate_limit,
        rate_limit_window_ms,
        created_at: now(),
    };
    state.store.create_warehouse(&warehouse).await?;
    Ok((StatusCode::CREATED, Json(warehouse_body(&warehouse))))
}

#[utoipa::path(get, path = "/api/v1/warehouses", tag = "integrations", security(("bearer" = [])),
    responses((status = 200, body = WarehouseList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_warehouses(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<WarehouseList>, ApiError> {
    let shop = principal.shop_with_any(&[Scope::WriteSettings, Scope::ReadOrder])?;
    let warehouses = state.store.warehouses(&shop.shop_id).await?;
    Ok(Json(WarehouseList {
        items: warehouses.iter().map(warehouse_body).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/warehouses/{warehouse_id}", tag = "integrations",
    params(("warehouse_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = WarehouseBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_warehouse(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(warehouse_id): Path<String>,
) -> Result<Json<WarehouseBody>, ApiError> {
    let shop = principal.shop_with_any(&[Scope::WriteSettings, Scope::ReadOrder])?;
    let warehouse = state
        .store
        .warehouse(&shop.shop_id, &warehouse_id)
        .await?
        .ok_or_else(|| ApiError::not_found("warehouse"))?;
    Ok(Json(warehouse_body(&warehouse)))
}

/// Whether the report is the warehouse's (signed with its `webhook_secret`) or the shop's (token).
async fn authentic(
    state: &AppState,
    warehouse: &Warehouse,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<bool, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(token) = header("authorization").and_then(|value| value.strip_prefix("Bearer ")) {
        let token = state.store.token_by_hash(&hash_secret(token.trim())).await?;
        return Ok(
            token.is_some_and(|token| token.shop_id == warehouse.shop_id && token.scopes.contains(&Scope::WriteOrder))
        );
    }
    let secret = warehouse
        .credentials
        .as_deref()
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .and_then(|credentials| credentials["webhook_secret"].as_str().map(str::to_owned))
        .filter(|secret| !secret.is_empty());
    let (Some(secret), Some(signature)) = (secret, header("x-rescind-signature")) else {
        return Ok(false);
    };
    let expected = hex(&hmac_sha256(secret.as_bytes(), body));
    let given = signature.trim().strip_prefix("sha256=").unwrap_or(signature.trim());
    Ok(equal_in_constant_time(given.as_bytes(), expected.as_bytes()))
}

/// The warehouse reports an outbound status change, or answers a cancellation request (F3).
#[utoipa::path(post, path = "/api/v1/warehouses/{warehouse_id}/events", tag = "integrations",
    params(("warehouse_id" = String, Path)), request_body = WarehouseEventBody,
    responses((status = 200, body = WarehouseEventReceipt), (status = 400, body = ErrorBody),
        (status = 401, description = "no valid signature or token", body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "no cancellation request is waiting", body = ErrorBody)))]
pub async fn receive_event(
    State(state): State<AppState>,
    Path(warehouse_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WarehouseEventReceipt>, ApiError> {
    let warehouse = state
        .store
        .warehouse_by_id(&warehouse_id)
        .await?
        .ok_or_else(|| ApiError::not_found("warehouse"))?;
    if !authentic(&state, &warehouse, &headers, &body).await? {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "The event's signature does not match the warehouse's secret.",
        ));
    }
    let report: WarehouseEventBody = parse_json(&body)?;
    let mut problems = Problems::default();
    let external_id = problems.required_text("external_id", &report.external_id, TEXT_LENGTH_MAX);
    let status = problems.named("status", &report.status, OutboundStatus::parse, OutboundStatus::names());
    let event = match (status, report.cancel_request.as_deref()) {
        (Some(status), None) => Some(WarehouseEvent::StatusChanged {
            status,
            message: report.message.clone(),
        }),
        (None, Some("accepted")) => Some(WarehouseEvent::CancelRequestAnswered {
            accepted: true,
            message: report.message.clone(),
        }),
        (None, Some("rejected")) => Some(WarehouseEvent::CancelRequestAnswered {
            accepted: false,
            message: report.message.clone(),
        }),
        (None, Some(other)) => {
            problems.push(
                "cancel_request",
                format_args!("`{other}` is not one of accepted, rejected"),
            );
            None
        }
        _ => {
            problems.push("status", "give either a status or a cancel_request answer");
            None
        }
    };
    let event = problems
        .into_result(event)
        .map_err(ApiError::invalid)?
        .expect("checked above");
    let Some((order_id, shop_id)) = state.store.order_id_by_outbound(&warehouse.id, &external_id).await? else {
        return Ok(Json(WarehouseEventReceipt {
            status: "ignored".to_owned(),
            order_id: None,
        }));
    };
    let changed = state
        .store
        .change_order(&shop_id, &order_id, |order| {
            warehouse_event(order, &event, &mut RandomIds, now())
        })
        .await;
    match changed {
        Ok(change) => {
            if matches!(change.workflow, WorkflowSchedule::DueAt(_)) {
                state.workflow.wake();
            }
            Ok(Json(WarehouseEventReceipt {
                status: "applied".to_owned(),
                order_id: Some(order_id),
            }))
        }
        Err(ChangeError::Refused(refusal)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_cancel_request",
            format!("{refusal}."),
        )),
        Err(ChangeError::NotFound) => Ok(Json(WarehouseEventReceipt {
            status: "ignored".to_owned(),
            order_id: None,
        })),
        Err(ChangeError::Store(error)) => Err(ApiError::internal(&error)),
    }
}
