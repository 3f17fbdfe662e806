//! Stock per SKU (API.md "Inventory"): read, set and adjust by hand (I4).

use crate::auth::Principal;
use crate::body::parse_json;
use crate::error::{ApiError, ErrorBody};
use crate::input::{Problems, CODE_LENGTH_MAX, TEXT_LENGTH_MAX};
use crate::wire::{rfc3339, AdjustStockRequest, SetStockRequest, StockBody};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::{Extension, Json};
use rescind_domain::Scope;

/// The largest stock level or adjustment accepted: far above any shelf, far below overflow.
pub const STOCK_QUANTITY_MAX: i64 = 1_000_000_000;

fn stock_body(level: &rescind_store::StockLevel) -> StockBody {
    StockBody {
        sku: level.sku.clone(),
        available: level.available,
        updated_at: rfc3339(level.updated_at),
    }
}

fn check_sku(problems: &mut Problems, sku: &str) {
    if sku.is_empty() || sku.chars().count() > CODE_LENGTH_MAX {
        problems.push("sku", format_args!("must be 1 to {CODE_LENGTH_MAX} characters"));
    }
}

#[utoipa::path(get, path = "/api/v1/inventory/{sku}", tag = "inventory", params(("sku" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = StockBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_stock(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(sku): Path<String>,
) -> Result<Json<StockBody>, ApiError> {
    let shop = principal.shop_with_any(&[Scope::ReadInventory, Scope::WriteInventory])?;
    let level = state
        .store
        .stock(&shop.shop_id, &sku)
        .await?
        .ok_or_else(|| ApiError::not_found("SKU"))?;
    Ok(Json(stock_body(&level)))
}

/// Sets a SKU's stock, creating the SKU when it is new.
#[utoipa::path(put, path = "/api/v1/inventory/{sku}", tag = "inventory", params(("sku" = String, Path)),
    request_body = SetStockRequest, security(("bearer" = [])),
    responses((status = 200, body = StockBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn set_stock(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(sku): Path<String>,
    body: Bytes,
) -> Result<Json<StockBody>, ApiError> {
    let shop = principal.shop(Scope::WriteInventory)?;
    let request: SetStockRequest = parse_json(&body)?;
    let mut problems = Problems::default();
    check_sku(&mut problems, &sku);
    match request.available {
        None => problems.push("available", "is required"),
        Some(available) if !(0..=STOCK_QUANTITY_MAX).contains(&available) => {
            problems.push("available", format_args!("must be between 0 and {STOCK_QUANTITY_MAX}"))
        }
        Some(_) => {}
    }
    problems.into_result(()).map_err(ApiError::invalid)?;
    let level = state
        .store
        .set_stock(&shop.shop_id, &sku, request.available.unwrap_or_default())
        .await?;
    Ok(Json(stock_body(&level)))
}

/// Adjusts a SKU's stock by hand, with a reason kept in the stock ledger (I4).
#[utoipa::path(post, path = "/api/v1/inventory/{sku}/adjust", tag = "inventory", params(("sku" = String, Path)),
    request_body = AdjustStockRequest, security(("bearer" = [])),
    responses((status = 200, body = StockBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn adjust_stock(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(sku): Path<String>,
    body: Bytes,
) -> Result<Json<StockBody>, ApiError> {
    let shop = principal.shop(Scope::WriteInventory)?;
    let request: AdjustStockRequest = parse_json(&body)?;
    let mut problems = Problems::default();
    check_sku(&mut problems, &sku);
    match request.delta {
        None => problems.push("delta", "is required"),
        Some(0) => problems.push("delta", "must not be zero"),
        Some(delta) if delta.abs() > STOCK_QUANTITY_MAX => {
            problems.push("delta", format_args!("must be at most {STOCK_QUANTITY_MAX} either way"))
        }
        Some(_) => {}
    }
    let reason = problems.required_text("reason", &request.reason, TEXT_LENGTH_MAX);
    problems.into_result(()).map_err(ApiError::invalid)?;
    let level = state
        .store
        .adjust_stock(&shop.shop_id, &sku, request.delta.unwrap_or_default(), &reason)
        .await?
        .ok_or_else(|| ApiError::not_found("SKU"))?;
    Ok(Json(stock_body(&level)))
}
