//! Webhooks a shop registers for its events, their delivery log and replays, and the event list
//! (API.md "Webhooks"; PRODUCT.md B4).

use crate::auth::{new_secret, Principal};
use crate::body::parse_json;
use crate::error::{ApiError, ErrorBody};
use crate::input::{Problems, TEXT_LENGTH_MAX};
use crate::routes::orders::page_size;
use crate::routes::{numeric_cursor, query};
use crate::wire::{
    delivery_body, webhook_body, CreateWebhookRequest, DeliveryBody, DeliveryList, EventBody, EventList, WebhookBody,
    WebhookList,
};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use rescind_domain::{EventType, Scope};
use rescind_store::{new_id, now, DeliveryStatus, Webhook};
use serde::Deserialize;

/// The most webhooks one shop keeps (active or not).
pub const WEBHOOKS_PER_SHOP_MAX: usize = 20;
/// The longest webhook URL.
pub const WEBHOOK_URL_LENGTH_MAX: usize = 2048;

async fn shop_webhook(state: &AppState, shop_id: &str, webhook_id: &str) -> Result<Webhook, ApiError> {
    state
        .store
        .webhook(shop_id, webhook_id)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))
}

/// Registers a URL for some of the shop's events. The answer holds the signing secret, once.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "webhooks", request_body = CreateWebhookRequest,
    security(("bearer" = [])),
    responses((status = 201, body = WebhookBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, description = "too_many_webhooks", body = ErrorBody)))]
pub async fn create_webhook(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<(StatusCode, Json<WebhookBody>), ApiError> {
    let shop = principal.shop(Scope::WriteSettings)?;
    let request: CreateWebhookRequest = parse_json(&body)?;
    let mut problems = Problems::default();
    let url = problems.required_text("url", &request.url, WEBHOOK_URL_LENGTH_MAX);
    if !url.is_empty() {
        match reqwest::Url::parse(&url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {
                if let Some(reason) = rescind_workflow::webhooks::private_target(&parsed) {
                    if !state.settings.webhooks.allow_private_targets {
                        problems.push(
                            "url",
                            format_args!("{reason}; this rescind sends webhooks to public addresses only"),
                        );
                    }
                }
            }
            _ => problems.push("url", "must be an http:// or https:// URL with a host"),
        }
    }
    let mut events: Vec<EventType> = Vec::new();
    match &request.events {
        None => problems.push("events", "is required: the event types to send"),
        Some(names) if names.is_empty() => problems.push("events", "needs at least one event type"),
        Some(names) => {
            for (index, name) in names.iter().enumerate() {
                match EventType::parse(name) {
                    Some(event) if !events.contains(&event) => events.push(event),
                    Some(_) => {}
                    None => problems.push(
                        &format!("events[{index}]"),
                        format_args!(
                            "`{}` is not an event type; one of: {}",
                            name.chars().take(TEXT_LENGTH_MAX).collect::<String>(),
                            EventType::names().join(", ")
                        ),
                    ),
                }
            }
        }
    }
    problems.into_result(()).map_err(ApiError::invalid)?;
    if state.store.webhooks(&shop.shop_id).await?.len() >= WEBHOOKS_PER_SHOP_MAX {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_webhooks",
            format!("A shop keeps at most {WEBHOOKS_PER_SHOP_MAX} webhooks."),
        ));
    }
    let webhook = Webhook {
        id: new_id("wh"),
        shop_id: shop.shop_id.clone(),
        url,
        events,
        secret: format!("whsec_{}", new_secret().trim_start_matches("rsk_")),
        active: true,
        created_at: now(),
    };
    state.store.create_webhook(&webhook).await?;
    Ok((StatusCode::CREATED, Json(webhook_body(&webhook, true))))
}

#[utoipa::path(get, path = "/api/v1/webhooks", tag = "webhooks", security(("bearer" = [])),
    responses((status = 200, body = WebhookList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<WebhookList>, ApiError> {
    let shop = principal.shop(Scope::WriteSettings)?;
    let webhooks = state.store.webhooks(&shop.shop_id).await?;
    Ok(Json(WebhookList {
        items: webhooks.iter().map(|webhook| webhook_body(webhook, false)).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/webhooks/{webhook_id}", tag = "webhooks", params(("webhook_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = WebhookBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_webhook(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(webhook_id): Path<String>,
) -> Result<Json<WebhookBody>, ApiError> {
    let shop = principal.shop(Scope::WriteSettings)?;
    let webhook = shop_webhook(&state, &shop.shop_id, &webhook_id).await?;
    Ok(Json(webhook_body(&webhook, false)))
}

/// Stops a webhook: nothing more is sent to it; its delivery log stays.
#[utoipa::path(delete, path = "/api/v1/webhooks/{webhook_id}", tag = "webhooks", params(("webhook_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = WebhookBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(webhook_id): Path<String>,
) -> Result<Json<WebhookBody>, ApiError> {
    let shop = principal.shop(Scope::WriteSettings)?;
    if !state.store.deactivate_webhook(&shop.shop_id, &webhook_id).await? {
        return Err(ApiError::not_found("webhook"));
    }
    let webhook = shop_webhook(&state, &shop.shop_id, &webhook_id).await?;
    Ok(Json(webhook_body(&webhook, false)))
}

/// The filter and page of a delivery log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// `pending`, `delivered` or `failed`.
    pub status: Option<String>,
    /// 1 to 500, default 50.
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Every delivery to a webhook, newest event first, with its attempts and the receiver's last answer.
#[utoipa::path(get, path = "/api/v1/webhooks/{webhook_id}/deliveries", tag = "webhooks",
    params(("webhook_id" = String, Path), DeliveriesQuery), security(("bearer" = [])),
    responses((status = 200, body = DeliveryList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(webhook_id): Path<String>,
    list_query: Result<Query<DeliveriesQuery>, QueryRejection>,
) -> Result<Json<DeliveryList>, ApiError> {
    let shop = principal.shop(Scope::WriteSettings)?;
    let list_query = query(list_query)?;
    let mut problems = Problems::default();
    let names: Vec<&'static str> = DeliveryStatus::ALL.iter().map(|status| status.as_str()).collect();
    let status = problems.named("status", &list_query.status, DeliveryStatus::parse, names);
    let limit = page_size(&mut problems, list_query.limit.as_deref());
    let cursor = numeric_cursor(&mut problems, list_query.cursor.as_deref());
    problems.into_result(()).map_err(ApiError::invalid)?;
    let webhook = shop_webhook(&state, &shop.shop_id, &webhook_id).await?;
    let page = state.store.deliveries(&webhook.id, status, cursor, limit).await?;
    Ok(Json(DeliveryList {
        items: page.items.iter().map(delivery_body).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Sends a delivery again from its first attempt (after the receiver was fixed, say).
#[utoipa::path(post, path = "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay", tag = "webhooks",
    params(("webhook_id" = String, Path), ("delivery_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = DeliveryBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "webhook_inactive", body = ErrorBody)))]
pub async fn replay_delivery(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((webhook_id, delivery_id)): Path<(String, String)>,
) -> Result<Json<DeliveryBody>, ApiError> {
    let shop = principal.shop(Scope::WriteSettings)?;
    let webhook = shop_webhook(&state, &shop.shop_id, &webhook_id).await?;
    if !webhook.active {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "webhook_inactive",
            "This webhook was deleted; nothing is sent to it any more.",
        ));
    }
    let delivery = state
        .store
        .replay_delivery(&webhook.id, &delivery_id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    Ok(Json(delivery_body(&delivery)))
}

/// The page of `GET /events`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The `sequence` of the last event already seen (the last page's `next_after`); 0 from the start.
    pub after: Option<String>,
    /// 1 to 500, default 50.
    pub limit: Option<String>,
}

/// The shop's events, oldest first: what webhooks and the event stream carry, for catching up.
#[utoipa::path(get, path = "/api/v1/events", tag = "webhooks", params(EventsQuery), security(("bearer" = [])),
    responses((status = 200, body = EventList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list_events(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    list_query: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Json<EventList>, ApiError> {
    let shop = principal.shop(Scope::ReadOrder)?;
    let list_query = query(list_query)?;
    let mut problems = Problems::default();
    let after = match list_query.after.as_deref().filter(|after| !after.is_empty()) {
        None => 0,
        Some(after) => after
            .parse::<i64>()
            .ok()
            .filter(|after| *after >= 0)
            .unwrap_or_else(|| {
                problems.push("after", "must be a sequence number (0 or more)");
                0
            }),
    };
    let limit = page_size(&mut problems, list_query.limit.as_deref());
    problems.into_result(()).map_err(ApiError::invalid)?;
    let events = state.store.events(&shop.shop_id, after, limit).await?;
    let next_after = events.last().map(|event| event.seq);
    let items = events
        .iter()
        .map(|event| serde_json::from_value::<EventBody>(rescind_workflow::webhooks::event_envelope(event)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ApiError::internal(&anyhow::Error::from(error)))?;
    Ok(Json(EventList { items, next_after }))
}
