//! Who is using the console: sign-in with a shop token, the session cookie (HttpOnly,
//! SameSite=Strict), the CSRF token every form carries, and the language.

use super::api::Api;
use super::i18n::Lang;
use super::ConsoleState;
use crate::auth::{equal_in_constant_time, hash_secret, new_secret, Principal};
use axum::extract::FromRequestParts;
use axum::http::header::{ACCEPT_LANGUAGE, COOKIE, HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use rescind_domain::Timestamp;
use rescind_store::ConsoleSession;
use std::time::Duration;

/// How long a session lasts after sign-in: a working day, then the operator signs in again.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The session cookie: a random secret whose SHA-256 names the session.
pub const SESSION_COOKIE: &str = "rescind_session";
/// The language the operator chose, overriding `Accept-Language`.
pub const LANGUAGE_COOKIE: &str = "rescind_lang";
/// The sign-in form's CSRF token (double-submit: the cookie and the form must agree).
pub const SIGN_IN_COOKIE: &str = "rescind_sign_in";
/// The most form fields the console reads from one post: a page of orders with every option.
pub const FORM_FIELDS_MAX: usize = 2_000;

/// The value of a cookie of the request.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The language of this request: the cookie, else `Accept-Language`.
pub fn language(headers: &HeaderMap) -> Lang {
    cookie(headers, LANGUAGE_COOKIE)
        .and_then(Lang::parse)
        .unwrap_or_else(|| {
            Lang::from_accept_language(headers.get(ACCEPT_LANGUAGE).and_then(|value| value.to_str().ok()))
        })
}

/// `Secure` when the request reached us over HTTPS (directly or through a proxy that says so).
fn secure_attribute(headers: &HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
    if https {
        "; Secure"
    } else {
        ""
    }
}

/// A `Set-Cookie` value for the console's path, HttpOnly and SameSite=Strict.
pub fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: Duration) -> String {
    format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age.as_secs(),
        secure_attribute(headers)
    )
}

/// A `Set-Cookie` value that removes the cookie.
pub fn clear_cookie(headers: &HeaderMap, name: &str) -> String {
    set_cookie(headers, name, "", Duration::ZERO)
}

/// A random token for forms and sessions.
pub fn new_form_token() -> String {
    new_secret().trim_start_matches("rsk_").to_owned()
}

/// A new session for a token, and the cookie secret that names it.
pub fn new_session(token_hash: String, now: Timestamp) -> (String, ConsoleSession) {
    let secret = new_form_token();
    let ttl_micros = i64::try_from(SESSION_TTL.as_micros()).unwrap_or(i64::MAX);
    let session = ConsoleSession {
        id_hash: hash_secret(&secret),
        token_hash,
        csrf_token: new_form_token(),
        created_at: now,
        expires_at: Timestamp::from_unix_micros(now.unix_micros().saturating_add(ttl_micros)),
    };
    (secret, session)
}

/// A form post, as name and value pairs in the order sent.
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn parse(body: &[u8]) -> Form {
        Form(
            form_urlencoded::parse(body)
                .take(FORM_FIELDS_MAX)
                .map(|(name, value)| (name.into_owned(), value.into_owned()))
                .collect(),
        )
    }

    /// The first value of a field, trimmed; empty when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map_or("", |(_, value)| value.trim())
    }

    /// Every non-empty value of a field, in order, each once.
    pub fn all(&self, name: &str) -> Vec<String> {
        let mut values: Vec<String> = Vec::new();
        for (key, value) in &self.0 {
            let value = value.trim();
            if key == name && !value.is_empty() && !values.iter().any(|seen| seen == value) {
                values.push(value.to_owned());
            }
        }
        values
    }

    /// Whether a checkbox was ticked.
    pub fn checked(&self, name: &str) -> bool {
        self.0.iter().any(|(key, value)| key == name && !value.is_empty())
    }

    /// The fields whose name starts with `prefix`, with the rest of the name.
    pub fn with_prefix<'f>(&'f self, prefix: &'f str) -> impl Iterator<Item = (&'f str, &'f str)> + 'f {
        self.0
            .iter()
            .filter_map(move |(key, value)| key.strip_prefix(prefix).map(|rest| (rest, value.trim())))
    }
}

/// A signed-in operator: the session, the shop it acts for, and the API as that shop's token.
pub struct Operator {
    pub session: ConsoleSession,
    pub api: Api,
    pub lang: Lang,
}

impl Operator {
    /// Whether a posted form carries this session's CSRF token.
    pub fn csrf_ok(&self, form: &Form) -> bool {
        equal_in_constant_time(form.get("csrf").as_bytes(), self.session.csrf_token.as_bytes())
    }
}

/// A request from another site: its `Origin` names a host other than ours. SameSite=Strict already
/// keeps the session cookie off such requests; this refuses them even where a browser would not.
pub fn cross_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(ORIGIN).and_then(|value| value.to_str().ok()) else {
        return false;
    };
    let host = headers.get(HOST).and_then(|value| value.to_str().ok()).unwrap_or("");
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    origin == "null" || !origin_host.eq_ignore_ascii_case(host)
}

/// Why there is no operator: the browser is sent to the sign-in page.
pub struct SignInRequired;

impl IntoResponse for SignInRequired {
    fn into_response(self) -> Response {
        Redirect::to("/console/sign_in").into_response()
    }
}

impl FromRequestParts<ConsoleState> for Operator {
    type Rejection = SignInRequired;

    async fn from_request_parts(parts: &mut Parts, state: &ConsoleState) -> Result<Self, Self::Rejection> {
        let secret = cookie(&parts.headers, SESSION_COOKIE)
            .filter(|secret| !secret.is_empty())
            .ok_or(SignInRequired)?;
        let session = state
            .app
            .store
            .console_session(&hash_secret(secret))
            .await
            .map_err(|error| {
                tracing::error!(error = format!("{error:#}"), "failed to read a console session");
                SignInRequired
            })?
            .ok_or(SignInRequired)?;
        let access = crate::auth::shop_access(&state.app, &session.token_hash)
            .await
            .map_err(|error| {
                tracing::error!(error = format!("{error:#}"), "failed to read a console session's token");
                SignInRequired
            })?
            .ok_or(SignInRequired)?;
        Ok(Operator {
            session,
            api: Api {
                routes: state.api.clone(),
                principal: Principal::Shop(access),
            },
            lang: language(&parts.headers),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn a_cookie_is_found_by_its_exact_name() {
        let headers = headers(&[("cookie", "a=1; rescind_session=abc; rescind_lang=en")]);
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "rescind"), None);
        assert_eq!(language(&headers), Lang::En);
    }

    #[test]
    fn cookies_are_http_only_and_strict_and_secure_behind_https() {
        let plain = set_cookie(&HeaderMap::new(), SESSION_COOKIE, "x", SESSION_TTL);
        assert_eq!(
            plain,
            "rescind_session=x; Path=/console; HttpOnly; SameSite=Strict; Max-Age=43200"
        );
        let https = set_cookie(
            &headers(&[("x-forwarded-proto", "https")]),
            SESSION_COOKIE,
            "x",
            SESSION_TTL,
        );
        assert!(https.ends_with("; Secure"));
    }

    #[test]
    fn a_post_from_another_origin_is_recognised() {
        assert!(cross_origin(&headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(cross_origin(&headers(&[
            ("origin", "null"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(!cross_origin(&headers(&[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(!cross_origin(&headers(&[("host", "127.0.0.1:8080")])));
    }

    #[test]
    fn a_form_gives_values_once_in_order_and_ignores_empty_ones() {
        let form = Form::parse(b"order_id=a&order_id=b&order_id=a&order_id=&restock=on&reason_code%3Ach_1=4&note=+x+");
        assert_eq!(form.all("order_id"), vec!["a", "b"]);
        assert!(form.checked("restock"));
        assert!(!form.checked("notify_customer"));
        assert_eq!(form.get("note"), "x");
        assert_eq!(
            form.with_prefix("reason_code:").collect::<Vec<_>>(),
            vec![("ch_1", "4")]
        );
    }
}
