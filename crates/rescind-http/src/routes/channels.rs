//! Sales channel integrations (API.md "Integrations"). Credentials are write-only.

use crate::auth::Principal;
use crate::body::parse_json;
use crate::error::{ApiError, ErrorBody};
use crate::input::{self, Problems, TEXT_LENGTH_MAX};
use crate::wire::{channel_body, ChannelBody, ChannelList, CreateChannelRequest};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
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
