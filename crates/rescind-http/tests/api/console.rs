//! The operator console (B5) as a browser without JavaScript sees it: sessions, CSRF, isolation
//! between shops, idempotent forms, and pages in both languages. The browser tests in
//! tests/console/ drive the same screens in chromium.

use crate::helpers::{TestApp, TestShop, ADMIN_TOKEN};
use crate::on_both_backends;
use serde_json::json;
use std::collections::HashMap;

/// A cookie jar and a client that does not follow redirects, so each answer can be checked.
struct Browser<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    cookies: HashMap<String, String>,
    set_cookies: Vec<String>,
}

struct Page {
    status: u16,
    location: String,
    headers: reqwest::header::HeaderMap,
    html: String,
}

impl Page {
    /// The value of the first hidden input named `name`.
    fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self
            .html
            .find(&marker)
            .unwrap_or_else(|| panic!("no {name} in {}", self.html))
            + marker.len();
        self.html[start..].split('"').next().unwrap_or_default().to_owned()
    }
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        Browser {
            app,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: HashMap::new(),
            set_cookies: Vec::new(),
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let cookie: Vec<String> = self
            .cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        let response = request
            .header("cookie", cookie.join("; "))
            .header("accept-language", "ja")
            .send()
            .await
            .expect("the console answers");
        for value in response.headers().get_all("set-cookie") {
            let value = value.to_str().expect("ASCII").to_owned();
            let (pair, _) = value.split_once(';').unwrap_or((&value, ""));
            let (name, content) = pair.split_once('=').expect("name=value");
            if content.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), content.to_owned());
            }
            self.set_cookies.push(value);
        }
        Page {
            status: response.status().as_u16(),
            location: response
                .headers()
                .get("location")
                .map(|value| value.to_str().unwrap_or_default().to_owned())
                .unwrap_or_default(),
            headers: response.headers().clone(),
            html: response.text().await.expect("a body"),
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(self.app.url(path));
        self.send(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let request = self
            .client
            .post(self.app.url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(request).await
    }

    /// Signs in with `token`; answers the session's CSRF token.
    async fn sign_in(&mut self, token: &str) -> String {
        let form = self.get("/console/sign_in").await;
        let csrf = form.hidden("csrf");
        let signed_in = self
            .post("/console/sign_in", &[("csrf", &csrf), ("token", token)])
            .await;
        assert_eq!(
            (signed_in.status, signed_in.location.as_str()),
            (303, "/console/orders"),
            "{}",
            signed_in.html
        );
        self.get("/console/orders").await.hidden("csrf")
    }
}

async fn signed_in(app: &TestApp) -> (TestShop, Browser<'_>, String) {
    let shop = app.shop().await;
    let mut browser = Browser::new(app);
    let csrf = browser.sign_in(&shop.token).await;
    (shop, browser, csrf)
}

async fn a_visitor_without_a_session_is_sent_to_sign_in(app: TestApp) {
    let mut browser = Browser::new(&app);
    for path in ["/console", "/console/orders", "/console/requests", "/console/inventory"] {
        let page = browser.get(path).await;
        assert_eq!(page.status, 303, "{path}");
        assert!(
            page.location.ends_with("/console/sign_in") || page.location == "/console/orders",
            "{path}: {}",
            page.location
        );
    }
    let page = browser.get("/console/orders").await;
    assert_eq!(page.location, "/console/sign_in");
    let forged = browser
        .post("/console/cancel/run", &[("order_id", "ord_x"), ("csrf", "x")])
        .await;
    assert_eq!((forged.status, forged.location.as_str()), (303, "/console/sign_in"));
}

async fn signing_in_sets_an_http_only_strict_session_cookie_and_a_wrong_token_is_refused(app: TestApp) {
    let shop = app.shop().await;
    let mut browser = Browser::new(&app);
    let form = browser.get("/console/sign_in").await;
    let csrf = form.hidden("csrf");
    let refused = browser
        .post("/console/sign_in", &[("csrf", &csrf), ("token", "rsk_wrong")])
        .await;
    assert_eq!(refused.status, 401);
    assert!(refused.html.contains("このトークンは使えません。"));
    assert!(!browser.cookies.contains_key("rescind_session"));
    // The sign-in form's own CSRF token is needed too (no login CSRF).
    let mut stranger = Browser::new(&app);
    let forged = stranger
        .post("/console/sign_in", &[("csrf", "guess"), ("token", &shop.token)])
        .await;
    assert_eq!(forged.status, 403);
    assert!(!stranger.cookies.contains_key("rescind_session"));

    browser.sign_in(&shop.token).await;
    let session = browser
        .set_cookies
        .iter()
        .find(|cookie| cookie.starts_with("rescind_session=") && !cookie.starts_with("rescind_session=;"))
        .expect("a session cookie");
    assert!(session.contains("; HttpOnly"), "{session}");
    assert!(session.contains("; SameSite=Strict"), "{session}");
    assert!(session.contains("; Path=/console"), "{session}");
    assert!(!session.contains(&shop.token), "the cookie is not the token");
    let orders = browser.get("/console/orders").await;
    assert_eq!(orders.status, 200);
    assert!(orders.html.contains("<h1>注文</h1>"));
}

async fn a_form_without_the_sessions_csrf_token_is_refused_and_changes_nothing(app: TestApp) {
    let (shop, mut browser, csrf) = signed_in(&app).await;
    let order = app.order(&shop, json!({})).await;
    let order_id = order["id"].as_str().unwrap();
    let forged = browser
        .post(
            "/console/cancel/run",
            &[("csrf", "not-the-token"), ("order_id", order_id)],
        )
        .await;
    assert_eq!(forged.status, 403);
    let missing = browser.post("/console/cancel/run", &[("order_id", order_id)]).await;
    assert_eq!(missing.status, 403);
    let request = browser
        .client
        .post(app.url("/console/cancel/run"))
        .header("origin", "https://attacker.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&order_id={order_id}"));
    let cross_site = browser.send(request).await;
    assert_eq!(cross_site.status, 403, "another origin is refused even with the token");
    assert_eq!(app.order_now(&shop, order_id).await["status"], "open");
}

async fn the_console_cancels_with_the_api_and_a_form_sent_twice_acts_once(app: TestApp) {
    let (shop, mut browser, csrf) = signed_in(&app).await;
    let first = app.order(&shop, json!({})).await;
    let second = app.order(&shop, json!({"fulfillment_status": "shipped"})).await;
    let ids = [first["id"].as_str().unwrap(), second["id"].as_str().unwrap()];
    let dialog = browser
        .post(
            "/console/cancel",
            &[("csrf", &csrf), ("order_id", ids[0]), ("order_id", ids[1])],
        )
        .await;
    assert_eq!(dialog.status, 200);
    assert!(dialog.html.contains("2 件の注文を選択中"), "{}", dialog.html);
    let form_key = dialog.hidden("form_key");
    let form = [
        ("csrf", csrf.as_str()),
        ("form_key", form_key.as_str()),
        ("order_id", ids[0]),
        ("order_id", ids[1]),
        ("reason", "お客様都合"),
        ("refund_method", "store_credit"),
        ("restock", "on"),
    ];
    let results = browser.post("/console/cancel/run", &form).await;
    assert_eq!(results.status, 200);
    assert!(results.html.contains("キャンセル申請 実行結果"));
    assert!(results.html.contains("1 件成功 / 1 件失敗"), "{}", results.html);
    assert!(results.html.contains("skipped: own store order, cancelled in rescind"));
    let again = browser.post("/console/cancel/run", &form).await;
    assert!(
        again.html.contains("1 件成功 / 1 件失敗"),
        "the same form replays its answer: {}",
        again.html
    );
    let cancelled = app.order_now(&shop, ids[0]).await;
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["cancellation"]["refund_method"], "store_credit");
    assert_eq!(
        app.order_now(&shop, ids[1]).await["status"],
        "open",
        "C2: shipped orders are returns"
    );
    let history = app
        .get(&format!("/api/v1/orders/{}/history", ids[0]), &shop.token)
        .await;
    let cancels = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["kind"] == "order.cancelled")
        .count();
    assert_eq!(cancels, 1);
}

async fn the_console_reaches_only_its_own_shops_orders(app: TestApp) {
    let (_, mut browser, csrf) = signed_in(&app).await;
    let victim = app.shop().await;
    let order = app.order(&victim, json!({})).await;
    let order_id = order["id"].as_str().unwrap();
    assert_eq!(browser.get(&format!("/console/orders/{order_id}")).await.status, 404);
    let results = browser
        .post("/console/cancel/run", &[("csrf", &csrf), ("order_id", order_id)])
        .await;
    assert!(results.html.contains("0 件成功 / 1 件失敗"), "{}", results.html);
    let undo = browser
        .post(&format!("/console/orders/{order_id}/uncancel"), &[("csrf", &csrf)])
        .await;
    assert_eq!(undo.status, 404);
    assert_eq!(app.order_now(&victim, order_id).await["status"], "open");
    let list = browser.get("/console/orders").await;
    assert!(!list.html.contains(order_id));
}

async fn a_read_only_token_reads_the_console_but_cannot_cancel(app: TestApp) {
    let shop = app.shop().await;
    let order = app.order(&shop, json!({})).await;
    let order_id = order["id"].as_str().unwrap();
    let read_only = app
        .post(
            &format!("/api/v1/shops/{}/tokens", shop.id),
            ADMIN_TOKEN,
            json!({"scopes": ["read_order"]}),
        )
        .await;
    let mut browser = Browser::new(&app);
    let csrf = browser.sign_in(read_only.body["token"].as_str().unwrap()).await;
    let detail = browser.get(&format!("/console/orders/{order_id}")).await;
    assert_eq!(detail.status, 200);
    let refused = browser
        .post(
            &format!("/console/orders/{order_id}/cancel_lines"),
            &[
                ("csrf", &csrf),
                (
                    &format!("quantity:{}", order["line_items"][0]["id"].as_str().unwrap()),
                    "1",
                ),
            ],
        )
        .await;
    assert_eq!(refused.status, 403);
    assert!(
        refused.html.contains("このトークンには権限がありません"),
        "{}",
        refused.html
    );
    assert_eq!(
        app.order_now(&shop, order_id).await["line_items"][0]["cancelled_quantity"],
        0
    );
}

async fn signing_out_ends_the_session(app: TestApp) {
    let (_, mut browser, csrf) = signed_in(&app).await;
    let old_session = browser.cookies.get("rescind_session").cloned().unwrap();
    let signed_out = browser.post("/console/sign_out", &[("csrf", &csrf)]).await;
    assert_eq!(
        (signed_out.status, signed_out.location.as_str()),
        (303, "/console/sign_in")
    );
    browser.cookies.insert("rescind_session".to_owned(), old_session);
    let after = browser.get("/console/orders").await;
    assert_eq!(
        (after.status, after.location.as_str()),
        (303, "/console/sign_in"),
        "the old cookie no longer works"
    );
}

async fn every_screen_renders_in_both_languages_with_protective_headers(app: TestApp) {
    let (shop, mut browser, _) = signed_in(&app).await;
    app.set_stock(&shop, "TEA-001", 5).await;
    let order = app.order(&shop, json!({"deduct_inventory": true})).await;
    let order_id = order["id"].as_str().unwrap();
    let screens = [
        ("/console/orders".to_owned(), "<h1>注文</h1>", "<h1>Orders</h1>"),
        (format!("/console/orders/{order_id}"), "注文詳細", "Order #"),
        (
            "/console/requests".to_owned(),
            "キャンセル要求（お客様）",
            "Cancellation requests (customers)",
        ),
        (
            "/console/attention".to_owned(),
            "要対応のキャンセル",
            "Cancellations that need attention",
        ),
        (
            "/console/sync_history".to_owned(),
            "<h1>連携履歴</h1>",
            "<h1>Sync history</h1>",
        ),
        ("/console/inventory".to_owned(), "<h1>在庫</h1>", "<h1>Inventory</h1>"),
    ];
    for (path, japanese, _) in &screens {
        let page = browser.get(path).await;
        assert_eq!(page.status, 200, "{path}");
        assert!(page.html.contains(japanese), "{path}: {}", page.html);
        assert_eq!(page.headers["x-frame-options"], "DENY");
        assert_eq!(page.headers["cache-control"], "no-store");
        assert!(page.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'"));
    }
    let switched = browser.get("/console/language?lang=en&back=/console/inventory").await;
    assert_eq!(
        (switched.status, switched.location.as_str()),
        (303, "/console/inventory")
    );
    for (path, _, english) in &screens {
        let page = browser.get(path).await;
        assert!(page.html.contains(english), "{path}: {}", page.html);
    }
    let inventory = browser.get("/console/inventory").await;
    assert!(inventory.html.contains("data-sku=\"TEA-001\""), "{}", inventory.html);
    let elsewhere = browser
        .get("/console/language?lang=ja&back=https://attacker.example/")
        .await;
    assert_eq!(elsewhere.location, "/console/orders", "never redirects off the console");
    let protocol_relative = browser
        .get("/console/language?lang=ja&back=/console//attacker.example")
        .await;
    assert_eq!(protocol_relative.location, "/console/orders");
}

async fn a_bad_filter_shows_the_apis_reason_instead_of_failing(app: TestApp) {
    let (_, mut browser, _) = signed_in(&app).await;
    let page = browser.get("/console/orders?fulfillment_status=teleported").await;
    assert_eq!(page.status, 200);
    assert!(page.html.contains("fulfillment_status"), "{}", page.html);
    assert!(page.html.contains("role=\"alert\""));
}

on_both_backends!(
    a_visitor_without_a_session_is_sent_to_sign_in,
    signing_in_sets_an_http_only_strict_session_cookie_and_a_wrong_token_is_refused,
    a_form_without_the_sessions_csrf_token_is_refused_and_changes_nothing,
    the_console_cancels_with_the_api_and_a_form_sent_twice_acts_once,
    the_console_reaches_only_its_own_shops_orders,
    a_read_only_token_reads_the_console_but_cannot_cancel,
    signing_out_ends_the_session,
    every_screen_renders_in_both_languages_with_protective_headers,
    a_bad_filter_shows_the_apis_reason_instead_of_failing,
);
