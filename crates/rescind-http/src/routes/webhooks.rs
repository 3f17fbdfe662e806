//! Channels report orders cancelled on their side (H3): `POST /channels/{id}/webhooks`. A channel
//! calls without rescind's token, so the body is authenticated by its signature: Shopify's
//! `X-Shopify-Hmac-SHA256` (base64 HMAC-SHA256 of the body) or rescind's `X-Rescind-Signature`
//! (`sha256=` and hex HMAC-SHA256), both with the channel's `webhook_secret`; or by a shop token.

use crate::auth::{equal_in_constant_time, hash_secret, hmac_sha256};
use crate::body::parse_json;
use crate::error::{ApiError, ErrorBody};
use crate::wire::{ChannelWebhook, WebhookReceipt};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use rescind_connectors::encoding::base64;
use rescind_domain::{cancelled_at_channel, ChannelKind, Scope, WorkflowSchedule};
use rescind_store::{now, ChangeError, RandomIds};
use serde_json::Value;

pub const SHOPIFY_SIGNATURE_HEADER: &str = "x-shopify-hmac-sha256";
pub const SIGNATURE_HEADER: &str = "x-rescind-signature";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// Whether the request proves it comes from the channel (or from the shop).
async fn authentic(
    state: &AppState,
    channel: &rescind_store::Channel,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<bool, ApiError> {
    if let Some(token) = header(headers, "authorization").and_then(|value| value.strip_prefix("Bearer ")) {
        let token = state.store.token_by_hash(&hash_secret(token.trim())).await?;
        return Ok(
            token.is_some_and(|token| token.shop_id == channel.shop_id && token.scopes.contains(&Scope::WriteOrder))
        );
    }
    let secret = channel
        .credentials
        .as_deref()
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .and_then(|credentials| credentials["webhook_secret"].as_str().map(str::to_owned))
        .filter(|secret| !secret.is_empty());
    let Some(secret) = secret else { return Ok(false) };
    let mac = hmac_sha256(secret.as_bytes(), body);
    if let Some(signature) = header(headers, SHOPIFY_SIGNATURE_HEADER) {
        return Ok(equal_in_constant_time(
            signature.trim().as_bytes(),
            base64(&mac).as_bytes(),
        ));
    }
    if let Some(signature) = header(headers, SIGNATURE_HEADER) {
        let hex = rescind_connectors::encoding::hex(&mac);
        let given = signature.trim().strip_prefix("sha256=").unwrap_or(signature.trim());
        return Ok(equal_in_constant_time(given.as_bytes(), hex.as_bytes()));
    }
    Ok(false)
}

/// The channel order id and reason of a webhook body: rescind's form, or Shopify's order payload.
fn read_report(kind: ChannelKind, body: &Bytes) -> Result<(String, Option<String>), ApiError> {
    let value: Value = parse_json(body)?;
    if kind == ChannelKind::Shopify && value.get("channel_order_id").is_none() {
        let id = match &value["id"] {
            Value::Number(number) => number.to_string(),
            Value::String(text) => text.clone(),
            _ => {
                return Err(ApiError::invalid(vec![
                    "id: Shopify's order payload needs its id".to_owned()
                ]))
            }
        };
        if value["cancelled_at"].is_null() {
            return Err(ApiError::invalid(vec![
                "cancelled_at: the order is not cancelled".to_owned()
            ]));
        }
        return Ok((id, value["cancel_reason"].as_str().map(str::to_owned)));
    }
    let report: ChannelWebhook =
        serde_json::from_value(value).map_err(|error| ApiError::invalid(vec![error.to_string()]))?;
    if report.event.as_deref() != Some("order_cancelled") {
        return Err(ApiError::invalid(vec!["event: must be order_cancelled".to_owned()]));
    }
    let id = report
        .channel_order_id
        .filter(|id| !id.is_empty())
        .ok_or_else(|| ApiError::invalid(vec!["channel_order_id: is required".to_owned()]))?;
    Ok((id, report.reason))
}

#[utoipa::path(post, path = "/api/v1/channels/{channel_id}/webhooks", tag = "integrations",
    params(("channel_id" = String, Path)), request_body = ChannelWebhook,
    responses((status = 200, body = WebhookReceipt), (status = 400, body = ErrorBody),
        (status = 401, description = "no valid signature or token", body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn receive(
    State(state): State<AppState>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookReceipt>, ApiError> {
    let channel = state
        .store
        .channel_by_id(&channel_id)
        .await?
        .ok_or_else(|| ApiError::not_found("channel"))?;
    if !authentic(&state, &channel, &headers, &body).await? {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "The webhook's signature does not match the channel's secret.",
        ));
    }
    let (channel_order_id, reason) = read_report(channel.kind, &body)?;
    let Some(order_id) = state
        .store
        .order_id_by_channel_order_id(&channel.id, &channel_order_id)
        .await?
    else {
        return Ok(Json(WebhookReceipt {
            status: "ignored".to_owned(),
            order_id: None,
        }));
    };
    let warehouses = state.store.warehouses(&channel.shop_id).await?;
    let recorded = state
        .store
        .change_order(&channel.shop_id, &order_id, |order| {
            cancelled_at_channel(
                order,
                reason.clone(),
                "reported by webhook",
                rescind_workflow::warehouse_settings(&warehouses, order),
                &mut RandomIds,
                now(),
            )
        })
        .await;
    match recorded {
        Ok(change) => {
            if matches!(change.workflow, WorkflowSchedule::DueAt(_)) {
                state.workflow.wake();
            }
            Ok(Json(WebhookReceipt {
                status: "cancelled".to_owned(),
                order_id: Some(order_id),
            }))
        }
        Err(ChangeError::Refused(_)) => Ok(Json(WebhookReceipt {
            status: "already_cancelled".to_owned(),
            order_id: Some(order_id),
        })),
        Err(ChangeError::NotFound) => Ok(Json(WebhookReceipt {
            status: "ignored".to_owned(),
            order_id: None,
        })),
        Err(ChangeError::Store(error)) => Err(ApiError::internal(&error)),
    }
}
