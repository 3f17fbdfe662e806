//! Customer cancellation requests (API.md "Customer requests", PRODUCT.md §4).

use crate::auth::Principal;
use crate::body::parse_json;
use crate::error::{sentence, ApiError, ErrorBody};
use crate::input::{self, Problems, TEXT_LENGTH_MAX};
use crate::routes::cancel::{cancel_outcome, options_for, StepsGo};
use crate::routes::orders::page_size;
use crate::routes::query;
use crate::wire::{
    request_body, AcceptRequestBody, CancellationRequestBody, CancellationRequestList, OrderBody, RequestReasonBody,
};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rescind_domain::{
    accept_request, reject_request, request_cancellation, CancelError, OrderChange, RequestError, RequestStatus,
    RequestedBy, Scope,
};
use rescind_store::{now, ChangeError, RandomIds};

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        let message = sentence(error.to_string());
        let code = match error {
            RequestError::Cancel(refusal) => return refusal.into(),
            RequestError::Disabled => "requests_disabled",
            RequestError::NotCancellable(CancelError::AlreadyCancelled { .. }) => "already_cancelled",
            // Q1: once the order is in the warehouse's hands or shipped, a customer cannot ask.
            RequestError::NotCancellable(_) => "order_not_cancellable",
            RequestError::AlreadyRequested { .. } => "request_pending",
            RequestError::AlreadyDecided { .. } | RequestError::Superseded { .. } => "request_decided",
        };
        ApiError::new(StatusCode::CONFLICT, code, message)
    }
}

/// The change a request decision made, or the API error for why it made none.
fn request_change(
    changed: Result<OrderChange, ChangeError<RequestError>>,
    missing: &str,
) -> Result<OrderChange, ApiError> {
    match changed {
        Ok(change) => Ok(change),
        Err(ChangeError::NotFound) => Err(ApiError::not_found(missing)),
        Err(ChangeError::Refused(refusal)) => Err(refusal.into()),
        Err(ChangeError::Store(error)) => Err(ApiError::internal(&error)),
    }
}

/// The request a change decided on, as the API shows it.
fn changed_request(change: &OrderChange) -> Result<CancellationRequestBody, ApiError> {
    let order = &change.order;
    let request = order
        .cancellation_request
        .as_ref()
        .ok_or_else(|| ApiError::not_found("cancellation request"))?;
    Ok(request_body(&order.id, &order.number, request))
}

/// The customer's reason, required and at most [`TEXT_LENGTH_MAX`] characters.
fn required_reason(body: &RequestReasonBody) -> Result<String, ApiError> {
    let mut problems = Problems::default();
    let reason = problems.required_text("reason", &body.reason, TEXT_LENGTH_MAX);
    problems.into_result(reason).map_err(ApiError::invalid)
}

/// A customer asks to cancel (Q1); the storefront calls this on their behalf.
#[utoipa::path(post, path = "/api/v1/orders/{order_id}/cancellation_requests", tag = "cancelling",
    params(("order_id" = String, Path)), request_body = RequestReasonBody, security(("bearer" = [])),
    responses((status = 201, body = CancellationRequestBody), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "requests_disabled, order_not_cancellable, already_cancelled, request_pending", body = ErrorBody)))]
pub async fn create_request(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(order_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let shop = principal.shop(Scope::WriteOrder)?;
    let reason = required_reason(&parse_json(&body)?)?;
    let enabled = state
        .store
        .shop(&shop.shop_id)
        .await?
        .is_some_and(|shop| shop.settings.customer_cancellation_requests);
    let actor = principal.actor();
    let change = request_change(
        state
            .store
            .change_order(&shop.shop_id, &order_id, |order| {
                request_cancellation(order, &reason, enabled, &actor, &mut RandomIds, now())
            })
            .await,
        "order",
    )?;
    Ok((StatusCode::CREATED, Json(changed_request(&change)?)).into_response())
}

/// The query of `GET /cancellation_requests`.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListRequestsQuery {
    /// `requested`, `accepted` or `rejected`; all when absent.
    pub status: Option<String>,
    /// 1 to 500, default 50.
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// The shop's customer cancellation requests, newest first; `status=requested` lists those waiting.
#[utoipa::path(get, path = "/api/v1/cancellation_requests", tag = "cancelling", params(ListRequestsQuery),
    security(("bearer" = [])),
    responses((status = 200, body = CancellationRequestList), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_requests(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    list_query: Result<Query<ListRequestsQuery>, QueryRejection>,
) -> Result<Json<CancellationRequestList>, ApiError> {
    let shop = principal.shop(Scope::ReadOrder)?;
    let list_query = query(list_query)?;
    let mut problems = Problems::default();
    let limit = page_size(&mut problems, list_query.limit.as_deref());
    let status = problems.named(
        "status",
        &list_query.status,
        RequestStatus::parse,
        RequestStatus::names(),
    );
    problems.into_result(()).map_err(ApiError::invalid)?;
    let cursor = list_query.cursor.as_deref().filter(|cursor| !cursor.is_empty());
    let page = state
        .store
        .cancellation_requests(&shop.shop_id, status, cursor, limit)
        .await?;
    Ok(Json(CancellationRequestList {
        items: page
            .items
            .iter()
            .map(|item| request_body(&item.order_id, &item.number, &item.request))
            .collect(),
        next_cursor: page.next_cursor,
    }))
}

async fn order_of_request(state: &AppState, shop_id: &str, request_id: &str) -> Result<String, ApiError> {
    state
        .store
        .order_id_of_request(shop_id, request_id)
        .await?
        .ok_or_else(|| ApiError::not_found("cancellation request"))
}

/// An operator accepts a request (Q2): the cancellation runs with their reason and refund method.
#[utoipa::path(post, path = "/api/v1/cancellation_requests/{request_id}/accept", tag = "cancelling",
    params(("request_id" = String, Path)), request_body = AcceptRequestBody, security(("bearer" = [])),
    responses(
        (status = 200, description = "Accepted and cancelled", body = OrderBody),
        (status = 202, description = "Accepted; a step is still running or waiting", body = OrderBody),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "request_decided, or any refusal of the cancel", body = ErrorBody)))]
pub async fn accept(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(request_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let shop = principal.shop(Scope::WriteOrder)?;
    let request: AcceptRequestBody = parse_json(&body)?;
    let mut problems = Problems::default();
    for (field, value) in [("reason", &request.reason), ("refund_method", &request.refund_method)] {
        if value.as_deref().is_none_or(|value| value.trim().is_empty()) {
            problems.push(field, "is required");
        }
    }
    let options = input::cancel_options(request.cancel_options(), RequestedBy::Customer);
    let options = match (problems.into_result(()), options) {
        (Ok(()), Ok(options)) => options,
        (first, second) => {
            let mut all = first.err().unwrap_or_default();
            all.extend(second.err().unwrap_or_default());
            return Err(ApiError::invalid(all));
        }
    };
    let order_id = order_of_request(&state, &shop.shop_id, &request_id).await?;
    let setup = state.store.shop_setup(&shop.shop_id).await?;
    let actor = principal.actor();
    // Before the change, so the wait hears every outcome of its steps.
    let watch = state.workflow.watch(&[&order_id]);
    let changed = state
        .store
        .change_order(&shop.shop_id, &order_id, |order| {
            let options = options_for(&options, &setup, order);
            accept_request(order, &request_id, &options, &actor, &mut RandomIds, now())
        })
        .await;
    // A refusal of the cancel itself is answered (and counted) like any cancel's.
    let changed = match changed {
        Ok(change) => Ok(Box::new(change)),
        Err(ChangeError::Refused(RequestError::Cancel(refusal))) => Err(ChangeError::Refused(refusal)),
        Err(ChangeError::Refused(refusal)) => return Err(refusal.into()),
        Err(ChangeError::NotFound) => Err(ChangeError::NotFound),
        Err(ChangeError::Store(error)) => Err(ChangeError::Store(error)),
    };
    cancel_outcome(&state, &shop.shop_id, watch, changed, StepsGo::ToBeClaimed).await
}

/// An operator rejects a request with a reason (Q2); the order stays as it was.
#[utoipa::path(post, path = "/api/v1/cancellation_requests/{request_id}/reject", tag = "cancelling",
    params(("request_id" = String, Path)), request_body = RequestReasonBody, security(("bearer" = [])),
    responses((status = 200, body = CancellationRequestBody), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "request_decided", body = ErrorBody)))]
pub async fn reject(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(request_id): Path<String>,
    body: Bytes,
) -> Result<Json<CancellationRequestBody>, ApiError> {
    let shop = principal.shop(Scope::WriteOrder)?;
    let reason = required_reason(&parse_json(&body)?)?;
    let order_id = order_of_request(&state, &shop.shop_id, &request_id).await?;
    let actor = principal.actor();
    let change = request_change(
        state
            .store
            .change_order(&shop.shop_id, &order_id, |order| {
                reject_request(order, &request_id, &reason, &actor, now())
            })
            .await,
        "cancellation request",
    )?;
    Ok(Json(changed_request(&change)?))
}
