//! Stock per SKU (API.md "Inventory"): read, set and adjust by hand (I4).

use crate::auth::Principal;
use crate::body::parse_json;
use crate::error::{ApiError, ErrorBody};
use crate::input::{Problems, CODE_LENGTH_MAX, TEXT_LENGTH_MAX};
use crate::routes::orders::page_size;
use crate::routes::query;
use crate::wire::{
    rfc3339, AdjustStockRequest, ListingBody, ListingsBody, SetListingsRequest, SetStockRequest, StockBody, StockList,
};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use rescind_domain::{ChannelKind, Scope};
use rescind_store::Listing;
use serde::Deserialize;

/// The most channels one SKU may be listed on.
pub const LISTINGS_MAX: usize = 50;

/// The largest stock level or adjustment accepted: far above any shelf, far below overflow.
pub const STOCK_QUANTITY_MAX: i64 = 1_000_000_000;

fn stock_body(level: &rescind_store::StockLevel) -> StockBody {
    StockBody {
        sku: level.sku.clone(),
        available: level.available,
        updated_at: rfc3339(level.updated_at),
    }
}

fn listings_body(sku: &str, listings: &[Listing]) -> ListingsBody {
    ListingsBody {
        sku: sku.to_owned(),
        listings: listings
            .iter()
            .map(|listing| ListingBody {
                channel_id: listing.channel_id.clone(),
                external_id: listing.external_id.clone(),
                location_id: listing.location_id.clone(),
            })
            .collect(),
    }
}

fn check_sku(problems: &mut Problems, sku: &str) {
    if sku.is_empty() || sku.chars().count() > CODE_LENGTH_MAX {
        problems.push("sku", format_args!("must be 1 to {CODE_LENGTH_MAX} characters"));
    }
}

/// The filter and page of `GET /inventory`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListStockQuery {
    /// Matches SKUs containing it.
    pub q: Option<String>,
    /// 1 to 500, default 50.
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// The shop's stock levels, by SKU.
#[utoipa::path(get, path = "/api/v1/inventory", tag = "inventory", params(ListStockQuery), security(("bearer" = [])),
    responses((status = 200, body = StockList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list_stock(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    list_query: Result<Query<ListStockQuery>, QueryRejection>,
) -> Result<Json<StockList>, ApiError> {
    let shop = principal.shop_with_any(&[Scope::ReadInventory, Scope::WriteInventory])?;
    let list_query = query(list_query)?;
    let mut problems = Problems::default();
    let q = problems.text("q", &list_query.q, CODE_LENGTH_MAX);
    let limit = page_size(&mut problems, list_query.limit.as_deref());
    problems.into_result(()).map_err(ApiError::invalid)?;
    let cursor = list_query.cursor.as_deref().filter(|cursor| !cursor.is_empty());
    let page = state
        .store
        .stock_levels(&shop.shop_id, q.as_deref(), cursor, limit)
        .await?;
    Ok(Json(StockList {
        items: page.items.iter().map(stock_body).collect(),
        next_cursor: page.next_cursor,
    }))
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
        Some(delta) if !(-STOCK_QUANTITY_MAX..=STOCK_QUANTITY_MAX).contains(&delta) => {
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

/// The channels that sell a SKU (I5).
#[utoipa::path(get, path = "/api/v1/inventory/{sku}/listings", tag = "inventory", params(("sku" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = ListingsBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_listings(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(sku): Path<String>,
) -> Result<Json<ListingsBody>, ApiError> {
    let shop = principal.shop_with_any(&[Scope::ReadInventory, Scope::WriteInventory])?;
    if state.store.stock(&shop.shop_id, &sku).await?.is_none() {
        return Err(ApiError::not_found("SKU"));
    }
    let listings = state.store.listings(&shop.shop_id, &sku).await?;
    Ok(Json(listings_body(&sku, &listings)))
}

/// Sets the channels that sell a SKU; each hears the SKU's level at once, and after every stock move
/// once per `inventory_push_interval_s` (I5).
#[utoipa::path(put, path = "/api/v1/inventory/{sku}/listings", tag = "inventory", params(("sku" = String, Path)),
    request_body = SetListingsRequest, security(("bearer" = [])),
    responses((status = 200, body = ListingsBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_listings(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(sku): Path<String>,
    body: Bytes,
) -> Result<Json<ListingsBody>, ApiError> {
    let shop = principal.shop(Scope::WriteInventory)?;
    let request: SetListingsRequest = parse_json(&body)?;
    if state.store.stock(&shop.shop_id, &sku).await?.is_none() {
        return Err(ApiError::not_found("SKU"));
    }
    let mut problems = Problems::default();
    // Required, even when empty: a body that forgot it must not silently unlist the SKU everywhere.
    let inputs = request.listings.unwrap_or_else(|| {
        problems.push("listings", "is required (an empty list unlists the SKU everywhere)");
        Vec::new()
    });
    if inputs.len() > LISTINGS_MAX {
        problems.push("listings", format_args!("at most {LISTINGS_MAX}"));
    }
    let mut listings: Vec<Listing> = Vec::new();
    for (index, input) in inputs.iter().enumerate() {
        let field = |name: &str| format!("listings[{index}].{name}");
        let channel_id = problems.required_text(&field("channel_id"), &input.channel_id, CODE_LENGTH_MAX);
        if channel_id.is_empty() {
            continue;
        }
        let Some(channel) = state.store.channel(&shop.shop_id, &channel_id).await? else {
            problems.push(
                &field("channel_id"),
                format_args!("no channel {channel_id} in this shop"),
            );
            continue;
        };
        if listings.iter().any(|listing| listing.channel_id == channel_id) {
            problems.push(&field("channel_id"), "is listed twice");
            continue;
        }
        let external_id = problems.text(&field("external_id"), &input.external_id, CODE_LENGTH_MAX);
        let location_id = problems.text(&field("location_id"), &input.location_id, CODE_LENGTH_MAX);
        let external_id = match channel.kind {
            ChannelKind::OwnStore => {
                problems.push(
                    &field("channel_id"),
                    "the own store's stock is rescind's own; nothing is pushed to it",
                );
                continue;
            }
            ChannelKind::Shopify | ChannelKind::Shoplazza => match external_id {
                Some(id) => id,
                None => {
                    let what = if channel.kind == ChannelKind::Shopify {
                        "inventory item"
                    } else {
                        "variant"
                    };
                    problems.push(
                        &field("external_id"),
                        format_args!("is required: the {} {what} id", channel.kind),
                    );
                    continue;
                }
            },
            ChannelKind::Rakuten | ChannelKind::Yahoo | ChannelKind::Amazon => {
                external_id.unwrap_or_else(|| sku.clone())
            }
        };
        if channel.kind == ChannelKind::Shopify && location_id.is_none() {
            problems.push(
                &field("location_id"),
                "is required: the Shopify location whose stock this is",
            );
            continue;
        }
        listings.push(Listing {
            channel_id,
            external_id,
            location_id,
        });
    }
    problems.into_result(()).map_err(ApiError::invalid)?;
    state.store.set_listings(&shop.shop_id, &sku, &listings).await?;
    Ok(Json(listings_body(&sku, &listings)))
}
