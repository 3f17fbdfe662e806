//! The sync history (F5): every call to an outside system about an order, with its result.

use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::input::Problems;
use crate::routes::orders::page_size;
use crate::routes::{numeric_cursor, query};
use crate::wire::{rfc3339, SyncHistoryEntryBody, SyncHistoryList};
use crate::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use rescind_domain::{Scope, SyncKind};
use serde::Deserialize;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SyncHistoryQuery {
    /// `cancel`, `modify`, `restock` or `inventory_push`.
    pub kind: Option<String>,
    /// `ok` or `error`.
    pub result: Option<String>,
    /// 1 to 500, default 50.
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Calls to channels and warehouses, newest first, filtered by kind and result.
#[utoipa::path(get, path = "/api/v1/sync_history", tag = "orders", params(SyncHistoryQuery), security(("bearer" = [])),
    responses((status = 200, body = SyncHistoryList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    list_query: Result<Query<SyncHistoryQuery>, QueryRejection>,
) -> Result<Json<SyncHistoryList>, ApiError> {
    let shop = principal.shop(Scope::ReadOrder)?;
    let list_query = query(list_query)?;
    let mut problems = Problems::default();
    let kind = problems.named("kind", &list_query.kind, SyncKind::parse, SyncKind::names());
    let ok = match list_query.result.as_deref().filter(|result| !result.is_empty()) {
        None => None,
        Some("ok") => Some(true),
        Some("error") => Some(false),
        Some(_) => {
            problems.push("result", "must be one of: ok, error");
            None
        }
    };
    let limit = page_size(&mut problems, list_query.limit.as_deref());
    let cursor = numeric_cursor(&mut problems, list_query.cursor.as_deref());
    problems.into_result(()).map_err(ApiError::invalid)?;
    let page = state.store.sync_history(&shop.shop_id, kind, ok, cursor, limit).await?;
    Ok(Json(SyncHistoryList {
        items: page
            .items
            .iter()
            .map(|entry| SyncHistoryEntryBody {
                at: rfc3339(entry.record.at),
                kind: entry.record.kind.as_str().to_owned(),
                order_id: entry.order_id.clone(),
                target: entry.record.target.clone(),
                request: entry.record.request.clone(),
                result: if entry.record.ok { "ok" } else { "error" }.to_owned(),
                message: entry.record.message.clone(),
                fee: entry.record.fee.map(|fee| fee.to_string()),
            })
            .collect(),
        next_cursor: page.next_cursor,
    }))
}
