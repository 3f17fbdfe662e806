//! Orders: import, read, list, history (API.md "Orders").

use crate::auth::Principal;
use crate::body::parse_json;
use crate::error::{ApiError, ErrorBody};
use crate::input::{self, Problems};
use crate::routes::query;
use crate::wire::{
    history_body, order_answer, order_body, HistoryList, ImportOrderRequest, ModificationSyncBody, ModifiedOrderBody,
    ModifyOrderRequest, OrderBody, OrderList,
};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Extension, Json};
use rescind_domain::{modify_order, plan_modification, ModificationRoute, ModificationSync};
use rescind_domain::{CancellationStatus, FulfillmentStatus, HistoryEntry, OrderStatus, Scope};
use rescind_store::ChangeError;
use rescind_store::{now, ImportError, OrderFilter, RandomIds};
use serde::Deserialize;

/// Page size when the client names none.
pub const PAGE_SIZE_DEFAULT: u32 = 50;
/// The largest page: bounds the memory and time of one list request.
pub const PAGE_SIZE_MAX: u32 = 500;

/// Imports an order. A second import of the same channel order is refused with its existing id.
#[utoipa::path(post, path = "/api/v1/orders", tag = "orders", request_body = ImportOrderRequest,
    security(("bearer" = [])),
    responses((status = 201, body = OrderBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, description = "duplicate_order", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn import_order(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let shop = principal.shop(Scope::WriteOrder)?;
    let request: ImportOrderRequest = parse_json(&body)?;
    let channel = match request.channel_id.as_deref() {
        Some(channel_id) => state.store.channel(&shop.shop_id, channel_id).await?,
        None => None,
    };
    let provider_id = request
        .payment
        .as_ref()
        .and_then(|payment| payment.provider_id.as_deref());
    let provider_known = match provider_id {
        Some(provider_id) => state
            .store
            .payment_provider(&shop.shop_id, provider_id)
            .await?
            .is_some(),
        None => false,
    };
    // The order ships from the warehouse it names, or from the shop's only one (API.md).
    let warehouses = state.store.warehouses(&shop.shop_id).await?;
    let warehouse_id = match request.warehouse_id.as_deref() {
        Some(id) => warehouses
            .iter()
            .find(|warehouse| warehouse.id == id)
            .map(|warehouse| warehouse.id.clone()),
        None if warehouses.len() == 1 => Some(warehouses[0].id.clone()),
        None => None,
    };
    let new_order = input::new_order(
        &request,
        channel.map(|channel| channel.kind),
        provider_known,
        warehouse_id,
    )
    .map_err(ApiError::invalid)?;
    let actor = principal.actor();
    let channel_id = new_order.channel_id.clone();
    let channel_order_id = new_order.channel_order_id.clone();
    let number = new_order.number.clone();
    let shop_id = shop.shop_id.clone();
    let imported = state
        .store
        .import_order(
            &shop.shop_id,
            channel_order_id.as_deref(),
            &channel_id,
            number.as_deref(),
            move |number| {
                let at = now();
                let order = new_order
                    .into_order(&shop_id, number, &mut RandomIds, at)
                    .map_err(|problems| problems.0)?;
                let entry = HistoryEntry::new(
                    at,
                    "order.imported",
                    &actor,
                    format!(
                        "Order {} imported from the {} channel.",
                        order.number, order.channel_kind
                    ),
                )
                .with("status", order.status.as_str())
                .with("financial_status", order.financial_status.as_str())
                .with("fulfillment_status", order.fulfillment_status.as_str());
                Ok((order, entry))
            },
        )
        .await;
    match imported {
        Ok(order) => Ok(order_answer(StatusCode::CREATED, &order)),
        Err(ImportError::Duplicate { existing_id }) => Err(ApiError {
            status: StatusCode::CONFLICT,
            code: "duplicate_order",
            message: format!("This channel order was already imported as order {existing_id}."),
            errors: Some(vec![format!("existing_order_id: {existing_id}")]),
        }),
        Err(ImportError::Invalid(problems)) => Err(ApiError::invalid(problems)),
        Err(ImportError::Store(error)) => Err(ApiError::internal(&error)),
    }
}

#[utoipa::path(get, path = "/api/v1/orders/{order_id}", tag = "orders", params(("order_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = OrderBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_order(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(order_id): Path<String>,
) -> Result<Response, ApiError> {
    let shop = principal.shop(Scope::ReadOrder)?;
    let order = state
        .store
        .order(&shop.shop_id, &order_id)
        .await?
        .ok_or_else(|| ApiError::not_found("order"))?;
    Ok(order_answer(StatusCode::OK, &order))
}

/// The filters and page of `GET /orders`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListOrdersQuery {
    pub status: Option<String>,
    pub fulfillment_status: Option<String>,
    pub channel_id: Option<String>,
    pub cancellation_status: Option<String>,
    /// Matches the order number, channel order id, customer name or email.
    pub q: Option<String>,
    /// 1 to 500, default 50.
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Orders of the shop, newest first.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", params(ListOrdersQuery), security(("bearer" = [])),
    responses((status = 200, body = OrderList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list_orders(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    list_query: Result<Query<ListOrdersQuery>, QueryRejection>,
) -> Result<Json<OrderList>, ApiError> {
    let shop = principal.shop(Scope::ReadOrder)?;
    let list_query = query(list_query)?;
    let mut problems = Problems::default();
    let filter = OrderFilter {
        status: problems.named("status", &list_query.status, OrderStatus::parse, OrderStatus::names()),
        fulfillment_status: problems.named(
            "fulfillment_status",
            &list_query.fulfillment_status,
            FulfillmentStatus::parse,
            FulfillmentStatus::names(),
        ),
        channel_id: list_query.channel_id.clone().filter(|id| !id.is_empty()),
        cancellation_status: problems.named(
            "cancellation_status",
            &list_query.cancellation_status,
            CancellationStatus::parse,
            CancellationStatus::names(),
        ),
        q: problems.text("q", &list_query.q, input::TEXT_LENGTH_MAX),
    };
    let limit = page_size(&mut problems, list_query.limit.as_deref());
    problems.into_result(()).map_err(ApiError::invalid)?;
    let cursor = list_query.cursor.as_deref().filter(|cursor| !cursor.is_empty());
    let page = state.store.orders(&shop.shop_id, &filter, cursor, limit).await?;
    Ok(Json(OrderList {
        items: page.items.iter().map(order_body).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Parses `limit`: 1 to [`PAGE_SIZE_MAX`], default [`PAGE_SIZE_DEFAULT`].
pub(crate) fn page_size(problems: &mut Problems, limit: Option<&str>) -> u32 {
    match limit.map(str::parse::<u32>) {
        None => PAGE_SIZE_DEFAULT,
        Some(Ok(limit)) if (1..=PAGE_SIZE_MAX).contains(&limit) => limit,
        Some(_) => {
            problems.push(
                "limit",
                format_args!("must be a whole number from 1 to {PAGE_SIZE_MAX}"),
            );
            PAGE_SIZE_DEFAULT
        }
    }
}

/// Every state change of the order, oldest first, with actor and time.
#[utoipa::path(get, path = "/api/v1/orders/{order_id}/history", tag = "orders", params(("order_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = HistoryList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn order_history(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(order_id): Path<String>,
) -> Result<Json<HistoryList>, ApiError> {
    let shop = principal.shop(Scope::ReadOrder)?;
    let entries = state
        .store
        .history(&shop.shop_id, &order_id)
        .await?
        .ok_or_else(|| ApiError::not_found("order"))?;
    Ok(Json(HistoryList {
        items: entries.iter().map(history_body).collect(),
    }))
}

/// Changes the order's customer and shipping address (F4); `modification_sync` says what reached
/// the warehouse. Items cannot be changed this way.
#[utoipa::path(patch, path = "/api/v1/orders/{order_id}", tag = "orders", params(("order_id" = String, Path)),
    request_body = ModifyOrderRequest, security(("bearer" = [])),
    responses((status = 200, body = ModifiedOrderBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "order_not_modifiable", body = ErrorBody)))]
pub async fn modify(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<Json<ModifiedOrderBody>, ApiError> {
    let shop = principal.shop(Scope::WriteOrder)?;
    let request: ModifyOrderRequest = parse_json(&body)?;
    let mut problems = Problems::default();
    let customer = request
        .customer
        .is_some()
        .then(|| input::customer(&mut problems, &request.customer));
    let address = request
        .shipping_address
        .is_some()
        .then(|| input::address(&mut problems, "shipping_address", &request.shipping_address));
    if customer.is_none() && address.is_none() {
        problems.push("body", "change the customer, the shipping_address, or both");
    }
    problems.into_result(()).map_err(ApiError::invalid)?;
    let order = state
        .store
        .order(&shop.shop_id, &order_id)
        .await?
        .ok_or_else(|| ApiError::not_found("order"))?;
    let warehouses = state.store.warehouses(&shop.shop_id).await?;
    let warehouse = order
        .warehouse_id
        .as_deref()
        .and_then(|id| warehouses.iter().find(|warehouse| warehouse.id == id));
    let recipient = rescind_workflow::recipient(address.as_ref().unwrap_or(&order.shipping_address));
    let key = format!("rescind-{}-modify-{}", order.id, now().unix_micros());
    let sync = match (
        plan_modification(&order, warehouse.map(|warehouse| warehouse.settings)),
        warehouse,
    ) {
        (ModificationRoute::Stay(sync), _) => sync,
        (_, None) => ModificationSync::NotApplicable {
            message: "the order's warehouse no longer exists".to_owned(),
        },
        (route, Some(warehouse)) => match rescind_workflow::openlogi(warehouse, &state.http) {
            Err(error) => ModificationSync::NotSynced {
                message: error.to_string(),
            },
            Ok(connector) => match route {
                ModificationRoute::Update { external_id } => {
                    match connector.update_recipient(&external_id, &recipient, &key).await {
                        Ok(_) => ModificationSync::Applied {
                            message: format!("the outbound request {external_id} was updated"),
                        },
                        Err(error) => ModificationSync::NotSynced {
                            message: format!("the warehouse did not take the change: {error}"),
                        },
                    }
                }
                ModificationRoute::Request { external_id } => {
                    match connector.request_modification(&external_id, &recipient, &key).await {
                        Ok(requested) => ModificationSync::Requested {
                            fee: requested
                                .fee
                                .map(|fee| rescind_domain::Money::from_minor_units(fee, order.currency)),
                            message: format!("a modification request for {external_id} was sent; a fee applies"),
                        },
                        Err(error) => ModificationSync::NotSynced {
                            message: format!("the warehouse did not take the request: {error}"),
                        },
                    }
                }
                ModificationRoute::Stay(sync) => sync,
            },
        },
    };
    let actor = principal.actor();
    let changed = state
        .store
        .change_order(&shop.shop_id, &order_id, |order| {
            modify_order(order, customer.clone(), address.clone(), &sync, &actor, now())
        })
        .await;
    match changed {
        Ok(change) => Ok(Json(ModifiedOrderBody {
            order: order_body(&change.order),
            modification_sync: ModificationSyncBody {
                status: sync.status().to_owned(),
                message: sync.message().to_owned(),
            },
        })),
        Err(ChangeError::NotFound) => Err(ApiError::not_found("order")),
        Err(ChangeError::Refused(refusal)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "order_not_modifiable",
            format!("{refusal}."),
        )),
        Err(ChangeError::Store(error)) => Err(ApiError::internal(&error)),
    }
}
