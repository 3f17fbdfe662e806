//! Sales channel integrations (API.md "Integrations"). Credentials are write-only.

use crate::auth::Principal;
use crate::body::parse_json;
use crate::error::{ApiError, ErrorBody};
use crate::input::{self, Problems, TEXT_LENGTH_MAX};
use crate::wire::{
    channel_body, CancelReasonBody, CancelReasonList, ChannelBody, ChannelList, CreateChannelRequest, PollBody,
};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::ACCEPT_LANGUAGE;
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::{Extension, Json};
use rescind_domain::reasons::{cancel_reasons as reasons_of, reason_code_required};
use rescind_domain::{ChannelKind, Scope};
use rescind_store::{new_id, now, Channel};

#[utoipa::path(post, path = "/api/v1/channels", tag = "integrations", request_body = CreateChannelRequest,
    security(("bearer" = [])),
    responses((status = 201, body = ChannelBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn create_channel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<(StatusCode, Json<ChannelBody>), ApiError> {
    let shop = principal.shop(Scope::WriteSettings)?;
    let request: CreateChannelRequest = parse_json(&body)?;
    let mut problems = Problems::default();
    let kind = problems.named("kind", &request.kind, ChannelKind::parse, ChannelKind::names());
    if request.kind.is_none() {
        problems.push("kind", "is required");
    }
    let name = problems.required_text("name", &request.name, TEXT_LENGTH_MAX);
    let (base_url, credentials) = input::integration_endpoint(&mut problems, &request.base_url, &request.credentials);
    if kind.is_some_and(ChannelKind::requires_channel_cancel) && base_url.is_none() {
        problems.push(
            "base_url",
            format_args!(
                "is required for a {} channel",
                kind.map(ChannelKind::as_str).unwrap_or_default()
            ),
        );
    }
    let kind = problems
        .into_result(kind)
        .map_err(ApiError::invalid)?
        .expect("kind is validated above");
    let channel = Channel {
        id: new_id("ch"),
        shop_id: shop.shop_id.clone(),
        kind,
        name,
        base_url,
        credentials,
        cancel_sync: request.cancel_sync.unwrap_or(true),
        created_at: now(),
    };
    state.store.create_channel(&channel).await?;
    Ok((StatusCode::CREATED, Json(channel_body(&channel))))
}

#[utoipa::path(get, path = "/api/v1/channels", tag = "integrations", security(("bearer" = [])),
    responses((status = 200, body = ChannelList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_channels(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<ChannelList>, ApiError> {
    let shop = principal.shop_with_any(&[Scope::WriteSettings, Scope::ReadOrder])?;
    let channels = state.store.channels(&shop.shop_id).await?;
    Ok(Json(ChannelList {
        items: channels.iter().map(channel_body).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/channels/{channel_id}", tag = "integrations", params(("channel_id" = String, Path)),
    security(("bearer" = [])),
    responses((status = 200, body = ChannelBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_channel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(channel_id): Path<String>,
) -> Result<Json<ChannelBody>, ApiError> {
    let shop = principal.shop_with_any(&[Scope::WriteSettings, Scope::ReadOrder])?;
    let channel = state
        .store
        .channel(&shop.shop_id, &channel_id)
        .await?
        .ok_or_else(|| ApiError::not_found("channel"))?;
    Ok(Json(channel_body(&channel)))
}

/// Cancel reasons of a channel (H2), with labels in the language asked for (`Accept-Language`), and
/// both labels besides.
#[utoipa::path(get, path = "/api/v1/channels/{channel_id}/cancel_reasons", tag = "integrations",
    params(("channel_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = CancelReasonList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn cancel_reasons(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<CancelReasonList>, ApiError> {
    let shop = principal.shop_with_any(&[Scope::ReadOrder, Scope::WriteOrder, Scope::WriteSettings])?;
    let channel = state
        .store
        .channel(&shop.shop_id, &channel_id)
        .await?
        .ok_or_else(|| ApiError::not_found("channel"))?;
    let japanese = headers
        .get(ACCEPT_LANGUAGE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|languages| languages.trim_start().to_ascii_lowercase().starts_with("ja"));
    Ok(Json(CancelReasonList {
        reason_code_required: reason_code_required(channel.kind),
        items: reasons_of(channel.kind)
            .iter()
            .map(|reason| CancelReasonBody {
                code: reason.code.to_owned(),
                label: if japanese { reason.label_ja } else { reason.label_en }.to_owned(),
                label_ja: reason.label_ja.to_owned(),
                label_en: reason.label_en.to_owned(),
                group: reason.group.as_str().to_owned(),
                detail_required: reason.detail_required,
            })
            .collect(),
    }))
}

/// Asks the channel now which of its open orders it shows as cancelled, and runs their cancellation
/// here (H3); the same poll also runs on its own every `--channel-poll-interval-s`.
#[utoipa::path(post, path = "/api/v1/channels/{channel_id}/poll", tag = "integrations",
    params(("channel_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = PollBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 502, description = "the channel could not be asked", body = ErrorBody)))]
pub async fn poll(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(channel_id): Path<String>,
) -> Result<Json<PollBody>, ApiError> {
    let shop = principal.shop_with_any(&[Scope::WriteSettings, Scope::WriteOrder])?;
    let channel = state
        .store
        .channel(&shop.shop_id, &channel_id)
        .await?
        .ok_or_else(|| ApiError::not_found("channel"))?;
    let report = rescind_workflow::poll_channel(&state.store, &state.workflow, &state.http, &channel)
        .await
        .map_err(|error| ApiError::new(StatusCode::BAD_GATEWAY, "channel_unreachable", format!("{error:#}")))?;
    Ok(Json(PollBody {
        checked: report.checked,
        cancelled_order_ids: report.cancelled,
    }))
}
