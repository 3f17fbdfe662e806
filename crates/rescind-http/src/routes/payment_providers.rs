//! Payment provider integrations (API.md "Integrations"). Credentials are write-only.

use crate::auth::Principal;
use crate::body::parse_json;
use crate::error::{ApiError, ErrorBody};
use crate::input::{self, Problems, TEXT_LENGTH_MAX};
use crate::wire::{payment_provider_body, CreatePaymentProviderRequest, PaymentProviderBody, PaymentProviderList};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use rescind_domain::{PaymentProviderKind, Scope};
use rescind_store::{new_id, now, PaymentProvider};

#[utoipa::path(post, path = "/api/v1/payment_providers", tag = "integrations", request_body = CreatePaymentProviderRequest,
    security(("bearer" = [])),
    responses((status = 201, body = PaymentProviderBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn create_payment_provider(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<(StatusCode, Json<PaymentProviderBody>), ApiError> {
    let shop = principal.shop(Scope::WriteSettings)?;
    let request: CreatePaymentProviderRequest = parse_json(&body)?;
    let mut problems = Problems::default();
    let kind = problems.named(
        "kind",
        &request.kind,
        PaymentProviderKind::parse,
        PaymentProviderKind::names(),
    );
    if request.kind.is_none() {
        problems.push("kind", "is required");
    }
    let name = problems.required_text("name", &request.name, TEXT_LENGTH_MAX);
    let (base_url, credentials) = input::integration_endpoint(&mut problems, &request.base_url, &request.credentials);
    if base_url.is_none() {
        problems.push("base_url", "is required");
    }
    let secret_key = request
        .credentials
        .as_ref()
        .and_then(|credentials| credentials.get("secret_key"))
        .and_then(|key| key.as_str());
    if kind == Some(PaymentProviderKind::Stripe) && secret_key.is_none_or(str::is_empty) {
        problems.push("credentials.secret_key", "is required for Stripe");
    }
    let (Some(kind), Some(base_url)) = problems.into_result((kind, base_url)).map_err(ApiError::invalid)? else {
        return Err(ApiError::invalid(vec!["the payment provider is incomplete".to_owned()]));
    };
    let provider = PaymentProvider {
        id: new_id("pp"),
        shop_id: shop.shop_id.clone(),
        kind,
        name,
        base_url,
        credentials,
        created_at: now(),
    };
    state.store.create_payment_provider(&provider).await?;
    Ok((StatusCode::CREATED, Json(payment_provider_body(&provider))))
}

#[utoipa::path(get, path = "/api/v1/payment_providers", tag = "integrations", security(("bearer" = [])),
    responses((status = 200, body = PaymentProviderList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list_payment_providers(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<PaymentProviderList>, ApiError> {
    let shop = principal.shop_with_any(&[Scope::WriteSettings, Scope::ReadOrder])?;
    let providers = state.store.payment_providers(&shop.shop_id).await?;
    Ok(Json(PaymentProviderList {
        items: providers.iter().map(payment_provider_body).collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/payment_providers/{provider_id}", tag = "integrations",
    params(("provider_id" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = PaymentProviderBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn get_payment_provider(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(provider_id): Path<String>,
) -> Result<Json<PaymentProviderBody>, ApiError> {
    let shop = principal.shop_with_any(&[Scope::WriteSettings, Scope::ReadOrder])?;
    let provider = state
        .store
        .payment_provider(&shop.shop_id, &provider_id)
        .await?
        .ok_or_else(|| ApiError::not_found("payment provider"))?;
    Ok(Json(payment_provider_body(&provider)))
}
