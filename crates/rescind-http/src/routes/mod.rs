//! One module per resource of API.md.

pub mod admin;
pub mod cancel;
pub mod channels;
pub mod inventory;
pub mod ops;
pub mod orders;
pub mod payment_providers;
pub mod requests;
pub mod settings;
pub mod subscriptions;
pub mod sync_history;
pub mod warehouses;
pub mod webhooks;

use crate::error::ApiError;
use crate::input::Problems;
use axum::extract::rejection::QueryRejection;
use axum::extract::Query;

/// Query strings that cannot be decoded are a 400 with the API's error body.
pub(crate) fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(value)| value)
        .map_err(|rejection| ApiError::invalid(vec![format!("query: {}", rejection.body_text())]))
}

/// A list's numeric `cursor` (the `next_cursor` it handed out); a problem for anything else.
pub(crate) fn numeric_cursor(problems: &mut Problems, cursor: Option<&str>) -> Option<i64> {
    let cursor = cursor.filter(|cursor| !cursor.is_empty())?;
    match cursor.parse::<i64>() {
        Ok(cursor) => Some(cursor),
        Err(_) => {
            problems.push("cursor", "is not a cursor this list handed out");
            None
        }
    }
}
