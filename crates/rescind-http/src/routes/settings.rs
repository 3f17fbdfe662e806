//! Shop settings (API.md "Shop settings").

use crate::auth::Principal;
use crate::body::parse_json;
use crate::error::{ApiError, ErrorBody};
use crate::input::Problems;
use crate::wire::{settings_body, SettingsBody, SettingsPatchBody};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::{Extension, Json};
use rescind_domain::Scope;
use rescind_store::SettingsPatch;

/// The longest stock-push interval accepted: a day. Longer would leave channels selling stock that
/// is gone.
pub const INVENTORY_PUSH_INTERVAL_S_MAX: i64 = 86_400;

/// Validates a settings patch.
pub(crate) fn settings_patch(problems: &mut Problems, body: Option<&SettingsPatchBody>) -> SettingsPatch {
    let Some(body) = body else {
        return SettingsPatch::default();
    };
    if let Some(interval) = body.inventory_push_interval_s {
        if !(0..=INVENTORY_PUSH_INTERVAL_S_MAX).contains(&interval) {
            problems.push(
                "settings.inventory_push_interval_s",
                format_args!("must be between 0 and {INVENTORY_PUSH_INTERVAL_S_MAX} seconds"),
            );
        }
    }
    SettingsPatch {
        customer_cancellation_requests: body.customer_cancellation_requests,
        inventory_push_interval_s: body.inventory_push_interval_s,
    }
}

#[utoipa::path(get, path = "/api/v1/settings", tag = "settings", security(("bearer" = [])),
    responses((status = 200, body = SettingsBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get_settings(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<SettingsBody>, ApiError> {
    let shop = principal.shop(Scope::WriteSettings)?;
    let shop = state
        .store
        .shop(&shop.shop_id)
        .await?
        .ok_or_else(|| ApiError::not_found("shop"))?;
    Ok(Json(settings_body(&shop.settings)))
}

#[utoipa::path(patch, path = "/api/v1/settings", tag = "settings", request_body = SettingsPatchBody,
    security(("bearer" = [])),
    responses((status = 200, body = SettingsBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn update_settings(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Bytes,
) -> Result<Json<SettingsBody>, ApiError> {
    let shop = principal.shop(Scope::WriteSettings)?;
    let body: SettingsPatchBody = parse_json(&body)?;
    let mut problems = Problems::default();
    let patch = settings_patch(&mut problems, Some(&body));
    problems.into_result(()).map_err(|errors| {
        ApiError::invalid(
            errors
                .into_iter()
                .map(|problem| problem.trim_start_matches("settings.").to_owned())
                .collect(),
        )
    })?;
    let settings = state.store.update_settings(&shop.shop_id, patch).await?;
    Ok(Json(settings_body(&settings)))
}
