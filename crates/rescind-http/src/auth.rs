//! Who is calling: the platform operator (the `RESCIND_ADMIN_TOKEN`) or a shop's scoped token (B6).
//! Secrets are random 256-bit values; only their SHA-256 is stored and compared.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use rescind_domain::Scope;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a token looked up in the database is believed without asking again. Tokens are never
/// changed once made; the bound is for a token deleted in the database by hand or by another process.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(10);
/// The most tokens remembered; when full, the cache starts over.
pub const TOKEN_CACHE_MAX: usize = 10_000;

/// Tokens recently found in the database, by the SHA-256 of their secret, so that a busy client's
/// requests do not each read its token. Unknown secrets are never remembered.
#[derive(Debug, Default)]
pub struct TokenCache {
    known: Mutex<HashMap<String, (Arc<ShopAccess>, Instant)>>,
}

impl TokenCache {
    fn get(&self, hash: &str) -> Option<Arc<ShopAccess>> {
        let known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        known
            .get(hash)
            .filter(|(_, found_at)| found_at.elapsed() < TOKEN_CACHE_TTL)
            .map(|(access, _)| access.clone())
    }

    fn remember(&self, hash: String, access: Arc<ShopAccess>) {
        let mut known = self.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if known.len() >= TOKEN_CACHE_MAX {
            known.clear();
        }
        known.insert(hash, (access, Instant::now()));
    }
}

/// The caller of a request, put in the request's extensions by [`authenticate`] (and cloned out of
/// them by every handler: a shop's token is shared, not copied).
#[derive(Clone, Debug)]
pub enum Principal {
    /// The platform operator: may only create shops and their tokens.
    Admin,
    Shop(Arc<ShopAccess>),
}

/// A shop's token, resolved.
#[derive(Clone, Debug)]
pub struct ShopAccess {
    pub token_id: String,
    pub shop_id: String,
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// The shop, when the token holds `scope`; 403 otherwise.
    pub fn shop(&self, scope: Scope) -> Result<&ShopAccess, ApiError> {
        self.shop_with_any(&[scope])
    }

    /// The shop, when the token holds one of `scopes`; 403 otherwise.
    pub fn shop_with_any(&self, scopes: &[Scope]) -> Result<&ShopAccess, ApiError> {
        match self {
            Principal::Admin => Err(ApiError::forbidden(
                "The platform token may only create shops and tokens; use a shop's token for this endpoint.",
            )),
            Principal::Shop(access) if scopes.iter().any(|scope| access.scopes.contains(scope)) => Ok(access.as_ref()),
            Principal::Shop(_) => Err(ApiError::forbidden(format!(
                "This token lacks the scope this endpoint needs ({}).",
                scopes
                    .iter()
                    .map(|scope| scope.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ))),
        }
    }

    /// Passes only the platform operator; 403 for shop tokens.
    pub fn admin(&self) -> Result<(), ApiError> {
        match self {
            Principal::Admin => Ok(()),
            Principal::Shop(_) => Err(ApiError::forbidden(
                "Only the platform operator's token may manage shops.",
            )),
        }
    }

    /// The namespace of this caller's idempotency keys.
    pub fn idempotency_scope(&self) -> String {
        match self {
            Principal::Admin => "admin".to_owned(),
            Principal::Shop(access) => format!("shop:{}", access.shop_id),
        }
    }

    /// What the history records as the actor.
    pub fn actor(&self) -> rescind_domain::Actor {
        match self {
            Principal::Admin => rescind_domain::Actor::System,
            Principal::Shop(access) => rescind_domain::Actor::Token(access.token_id.clone()),
        }
    }
}

/// Hex SHA-256 of a secret.
pub fn hash_secret(secret: &str) -> String {
    rescind_connectors::encoding::hex(&Sha256::digest(secret.as_bytes()))
}

/// A new token secret: `rsk_` and 64 hex digits (256 random bits).
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("rsk_{}", rescind_connectors::encoding::hex(&bytes))
}

/// The one layer of every `/api/v1` route (but the OpenAPI document's and the partners' own): the
/// request timed and counted with its body buffered (`metrics::tracked`), its bearer token
/// resolved into a [`Principal`] or 401, then its `Idempotency-Key` (`idempotency::keyed`).
pub async fn authenticate(State(state): State<AppState>, request: Request, next: Next) -> Response {
    crate::metrics::tracked(&state, request, |request| async {
        authenticated(&state, request, next)
            .await
            .unwrap_or_else(IntoResponse::into_response)
    })
    .await
}

async fn authenticated(state: &AppState, mut request: Request, next: Next) -> Result<Response, ApiError> {
    let secret = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|secret| !secret.is_empty())
        .ok_or_else(ApiError::unauthorized)?;
    let hash = hash_secret(secret);
    let principal = if state.admin_token_hash.as_deref() == Some(hash.as_str()) {
        Principal::Admin
    } else {
        Principal::Shop(shop_access(state, &hash).await?.ok_or_else(ApiError::unauthorized)?)
    };
    request.extensions_mut().insert(principal);
    crate::idempotency::keyed(state, request, next).await
}

/// The shop token with this hash, from the cache or the database; `None` when there is none.
pub async fn shop_access(state: &AppState, token_hash: &str) -> anyhow::Result<Option<Arc<ShopAccess>>> {
    if let Some(access) = state.tokens.get(token_hash) {
        return Ok(Some(access));
    }
    let Some(token) = state.store.token_by_hash(token_hash).await? else {
        return Ok(None);
    };
    let access = Arc::new(ShopAccess {
        token_id: token.id,
        shop_id: token.shop_id,
        scopes: token.scopes,
    });
    state.tokens.remember(token_hash.to_owned(), access.clone());
    Ok(Some(access))
}

pub use rescind_connectors::encoding::hmac_sha256;

/// Compares two byte strings in time that does not depend on where they differ.
pub fn equal_in_constant_time(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len()
        && left
            .iter()
            .zip(right)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(shop_id: &str) -> Arc<ShopAccess> {
        Arc::new(ShopAccess {
            token_id: format!("tok_{shop_id}"),
            shop_id: shop_id.to_owned(),
            scopes: vec![Scope::ReadOrder],
        })
    }

    #[test]
    fn a_remembered_token_is_found_by_its_hash_and_no_other() {
        let cache = TokenCache::default();
        cache.remember(hash_secret("rsk_a"), access("shop_a"));
        assert_eq!(
            cache.get(&hash_secret("rsk_a")).map(|found| found.shop_id.clone()),
            Some("shop_a".to_owned())
        );
        assert!(cache.get(&hash_secret("rsk_b")).is_none());
    }

    #[test]
    fn a_full_cache_starts_over_instead_of_growing() {
        let cache = TokenCache::default();
        for number in 0..TOKEN_CACHE_MAX {
            cache.remember(format!("hash{number}"), access("shop"));
        }
        cache.remember("one more".to_owned(), access("shop"));
        assert!(cache.get("hash0").is_none());
        assert!(cache.get("one more").is_some());
        assert_eq!(cache.known.lock().unwrap().len(), 1);
    }
}
