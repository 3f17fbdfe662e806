//! Platform administration (B6): shops and their scoped tokens. Only the platform operator's token.

use crate::auth::{hash_secret, new_secret, Principal};
use crate::body::parse_json;
use crate::error::{ApiError, ErrorBody};
use crate::input::{Problems, TEXT_LENGTH_MAX};
use crate::routes::settings::settings_patch;
use crate::wire::{
    settings_body, CreateShopRequest, CreateShopResponse, CreateTokenRequest, CreateTokenResponse, ShopBody,
};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use rescind_domain::Scope;
use rescind_store::{new_id, ApiToken, Settings, Shop};

/// Creates a shop and its first token, holding every scope.
#[utoipa::path(post, path = "/api/v1/shops", tag = "platform", request_body = CreateShopRequest,
    security(("bearer" = [])),
    responses((status = 201, body = CreateShopResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create_shop(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<(StatusCode, Json<CreateShopResponse>), ApiError> {
    principal.admin()?;
    let request: CreateShopRequest = parse_json(&body)?;
    let mut problems = Problems::default();
    let name = problems.required_text("name", &request.name, TEXT_LENGTH_MAX);
    let patch = settings_patch(&mut problems, request.settings.as_ref());
    problems.into_result(()).map_err(ApiError::invalid)?;

    let defaults = Settings::default();
    let shop = Shop {
        id: new_id("shop"),
        name,
        settings: Settings {
            customer_cancellation_requests: patch
                .customer_cancellation_requests
                .unwrap_or(defaults.customer_cancellation_requests),
            inventory_push_interval_s: patch
                .inventory_push_interval_s
                .unwrap_or(defaults.inventory_push_interval_s),
        },
    };
    let secret = new_secret();
    let token = ApiToken {
        id: new_id("tok"),
        shop_id: shop.id.clone(),
        token_hash: hash_secret(&secret),
        scopes: Scope::ALL.to_vec(),
    };
    state.store.create_shop(&shop, &token).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreateShopResponse {
            shop: ShopBody {
                id: shop.id,
                name: shop.name,
                settings: settings_body(&shop.settings),
            },
            token: secret,
            scopes: Scope::names().into_iter().map(str::to_owned).collect(),
        }),
    ))
}

/// Creates another token of a shop, holding the scopes asked for.
#[utoipa::path(post, path = "/api/v1/shops/{shop_id}/tokens", tag = "platform", request_body = CreateTokenRequest,
    params(("shop_id" = String, Path)), security(("bearer" = [])),
    responses((status = 201, body = CreateTokenResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create_token(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(shop_id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<CreateTokenResponse>), ApiError> {
    principal.admin()?;
    let request: CreateTokenRequest = parse_json(&body)?;
    let mut problems = Problems::default();
    let mut scopes = Vec::new();
    match &request.scopes {
        None => problems.push("scopes", "is required"),
        Some(names) if names.is_empty() => problems.push("scopes", "needs at least one scope"),
        Some(names) => {
            for name in names {
                match Scope::parse(name) {
                    Some(scope) if !scopes.contains(&scope) => scopes.push(scope),
                    Some(_) => {}
                    None => problems.push(
                        "scopes",
                        format_args!("`{name}` is not one of {}", Scope::names().join(", ")),
                    ),
                }
            }
        }
    }
    problems.into_result(()).map_err(ApiError::invalid)?;
    if state.store.shop(&shop_id).await?.is_none() {
        return Err(ApiError::not_found("shop"));
    }
    let secret = new_secret();
    let token = ApiToken {
        id: new_id("tok"),
        shop_id,
        token_hash: hash_secret(&secret),
        scopes,
    };
    state.store.create_token(&token).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreateTokenResponse {
            id: token.id,
            token: secret,
            scopes: token.scopes.iter().map(|scope| scope.as_str().to_owned()).collect(),
        }),
    ))
}
