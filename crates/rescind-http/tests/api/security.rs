//! Sweeps over every endpoint of the OpenAPI document (B6): another shop's token finds nothing and
//! changes nothing, every endpoint is closed to some scope, a read-only token changes nothing, the
//! platform token reaches no shop, and no answer ever carries a credential or a token secret. Plus
//! hostile bodies: nesting, size and broken JSON get a clear 4xx.

use crate::helpers::{TestApp, TestShop, TestSim, ADMIN_TOKEN};
use reqwest::Method;
use serde_json::{json, Value};

crate::on_both_backends!(
    another_shops_token_finds_nothing_and_changes_nothing_at_any_endpoint,
    every_endpoint_is_closed_to_some_scope_and_a_read_only_token_changes_nothing,
    no_answer_of_any_endpoint_carries_a_credential_or_a_token_secret,
    hostile_bodies_get_a_clear_client_error_and_the_server_stays_up,
);

/// A credential value no answer may ever contain.
const MARKER: &str = "s3cret-never-shown-7f3a";

/// Endpoints that authenticate by the partner's signature, not by a shop token.
const SIGNED_BY_PARTNERS: [&str; 2] = [
    "/api/v1/channels/{channel_id}/webhooks",
    "/api/v1/warehouses/{warehouse_id}/events",
];

/// One operation of the OpenAPI document.
#[derive(Debug)]
struct Operation {
    method: Method,
    template: String,
}

impl Operation {
    fn has_id(&self) -> bool {
        self.template.contains('{')
    }

    fn writes(&self) -> bool {
        self.method != Method::GET
    }

    fn is_platform(&self) -> bool {
        self.template.starts_with("/api/v1/shops")
    }
}

/// Every operation that takes a shop token, from the server's own OpenAPI document.
async fn token_operations(app: &TestApp) -> Vec<Operation> {
    let document = app
        .client
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let mut operations = Vec::new();
    for (template, methods) in document["paths"].as_object().expect("paths") {
        if !template.starts_with("/api/v1/") || SIGNED_BY_PARTNERS.contains(&template.as_str()) {
            continue;
        }
        for (method, operation) in methods.as_object().expect("operations") {
            if operation.get("security").is_none() {
                continue;
            }
            operations.push(Operation {
                method: Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                template: template.clone(),
            });
        }
    }
    assert!(operations.len() >= 30, "the document lists the API: {operations:?}");
    operations
}

/// A shop with one of everything: an open order, a cancelled one, a pending customer request, a
/// channel, a warehouse and a payment provider with credentials, stock and a listing.
struct Victim {
    shop: TestShop,
    ids: Vec<(&'static str, String)>,
    order_id: String,
    secrets: Vec<String>,
    _sim: TestSim,
}

async fn victim(app: &TestApp) -> Victim {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    app.take_requests(&shop).await;
    let channel = app
        .post(
            "/api/v1/channels",
            &shop.token,
            json!({"kind": "shopify", "name": "Shopify", "base_url": format!("{}/shopify", sim.url()),
                   "credentials": {"shop_domain": "victim.myshopify.com", "access_token": MARKER,
                                   "webhook_secret": MARKER}}),
        )
        .await;
    assert_eq!(channel.status, 201, "{}", channel.text);
    let warehouse = app
        .post(
            "/api/v1/warehouses",
            &shop.token,
            json!({"kind": "openlogi", "name": "OpenLogi", "base_url": format!("{}/openlogi/api", sim.url()),
                   "credentials": {"access_token": MARKER, "webhook_secret": MARKER, "account_id": "TS001"}}),
        )
        .await;
    assert_eq!(warehouse.status, 201, "{}", warehouse.text);
    let provider = app
        .post(
            "/api/v1/payment_providers",
            &shop.token,
            json!({"kind": "stripe", "name": "Stripe", "base_url": format!("{}/stripe", sim.url()),
                   "credentials": {"secret_key": MARKER}}),
        )
        .await;
    assert_eq!(provider.status, 201, "{}", provider.text);
    app.set_stock(&shop, "TEA-001", 10).await;
    let listed = app
        .send(
            Method::PUT,
            "/api/v1/inventory/TEA-001/listings",
            Some(&shop.token),
            Some(json!({"listings": [{"channel_id": channel.body["id"], "external_id": "gid://shopify/InventoryItem/1", "location_id": "gid://shopify/Location/1"}]})),
            None,
        )
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    // A webhook nobody listens at: its deliveries stay in the log, failing.
    let webhook = app
        .post(
            "/api/v1/webhooks",
            &shop.token,
            json!({"url": "http://127.0.0.1:9/hooks", "events": ["order.imported", "order.cancelled"]}),
        )
        .await;
    assert_eq!(webhook.status, 201, "{}", webhook.text);
    let order = app.order(&shop, json!({})).await;
    let order_id = order["id"].as_str().unwrap().to_owned();
    let deliveries = app
        .get(
            &format!("/api/v1/webhooks/{}/deliveries", webhook.body["id"].as_str().unwrap()),
            &shop.token,
        )
        .await;
    let delivery_id = deliveries.body["items"][0]["id"]
        .as_str()
        .expect("a delivery")
        .to_owned();
    let asked = app
        .post(
            &format!("/api/v1/orders/{order_id}/cancellation_requests"),
            &shop.token,
            json!({"reason": "changed my mind"}),
        )
        .await;
    assert_eq!(asked.status, 201, "{}", asked.text);
    let cancelled = app.order(&shop, json!({})).await;
    let cancelled_id = cancelled["id"].as_str().unwrap();
    let cancel = app
        .cancel(&shop, cancelled_id, json!({"refund_method": "store_credit"}))
        .await;
    assert_eq!(cancel.status, 200, "{}", cancel.text);
    let id = |answer: &Value| answer["id"].as_str().unwrap().to_owned();
    Victim {
        ids: vec![
            ("order_id", order_id.clone()),
            ("channel_id", id(&channel.body)),
            ("warehouse_id", id(&warehouse.body)),
            ("provider_id", id(&provider.body)),
            ("request_id", id(&asked.body)),
            ("cancellation_id", id(&cancel.body["cancellation"])),
            ("sku", "TEA-001".to_owned()),
            ("shop_id", shop.id.clone()),
            ("webhook_id", id(&webhook.body)),
            ("delivery_id", delivery_id),
        ],
        secrets: vec![
            MARKER.to_owned(),
            shop.token.clone(),
            webhook.body["secret"].as_str().unwrap().to_owned(),
        ],
        order_id,
        shop,
        _sim: sim,
    }
}

impl Victim {
    /// The operation's path with this shop's ids; every path parameter must be known here.
    fn path(&self, operation: &Operation) -> String {
        let mut path = operation.template.clone();
        for (name, value) in &self.ids {
            path = path.replace(&format!("{{{name}}}"), value);
        }
        assert!(
            !path.contains('{'),
            "a path parameter this sweep does not know: {}",
            operation.template
        );
        path
    }

    /// What a stranger could have changed: the open order with its request and history, the stock
    /// and its listing, the settings, the cancellations and the integrations.
    async fn state(&self, app: &TestApp) -> Vec<Value> {
        let mut state = Vec::new();
        for path in [
            format!("/api/v1/orders/{}", self.order_id),
            format!("/api/v1/orders/{}/history", self.order_id),
            "/api/v1/inventory/TEA-001".to_owned(),
            "/api/v1/inventory/TEA-001/listings".to_owned(),
            "/api/v1/settings".to_owned(),
            "/api/v1/cancellations".to_owned(),
            "/api/v1/cancellation_requests".to_owned(),
            "/api/v1/channels".to_owned(),
            "/api/v1/warehouses".to_owned(),
            "/api/v1/payment_providers".to_owned(),
            "/api/v1/orders".to_owned(),
        ] {
            let answer = app.get(&path, &self.shop.token).await;
            assert_eq!(answer.status, 200, "{path}: {}", answer.text);
            state.push(answer.body);
        }
        state
    }
}

impl TestApp {
    async fn get_with_header(&self, path: &str, token: &str, header: (&str, String)) -> crate::helpers::Answer {
        let response = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .header(header.0, header.1)
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        crate::helpers::Answer {
            status,
            headers: Default::default(),
            body,
            text,
        }
    }
}

async fn call(app: &TestApp, operation: &Operation, path: &str, token: &str) -> crate::helpers::Answer {
    let body = operation.writes().then(|| json!({}));
    app.send(operation.method.clone(), path, Some(token), body, None).await
}

async fn another_shops_token_finds_nothing_and_changes_nothing_at_any_endpoint(app: TestApp) {
    let victim = victim(&app).await;
    let stranger = app.shop().await;
    let before = victim.state(&app).await;
    for operation in token_operations(&app)
        .await
        .iter()
        .filter(|operation| operation.has_id())
    {
        let path = victim.path(operation);
        let answer = call(&app, operation, &path, &stranger.token).await;
        let expected: &[u16] = if operation.is_platform() {
            &[403]
        } else if operation.template.contains("{sku}") {
            // A SKU is a name, not an id: the stranger's own (empty) stock of that name, or its
            // checks of the body first.
            &[200, 400, 404, 422]
        } else if operation.writes() {
            // The body is checked before the order is looked up: 404 or a 4xx about the body.
            &[400, 404, 422]
        } else {
            &[404]
        };
        assert!(
            expected.contains(&answer.status),
            "{} {path} with another shop's token: {} {}",
            operation.method,
            answer.status,
            answer.text
        );
        assert!(answer.status < 500);
    }
    assert_eq!(
        victim.state(&app).await,
        before,
        "nothing another shop did reached this shop"
    );
}

async fn every_endpoint_is_closed_to_some_scope_and_a_read_only_token_changes_nothing(app: TestApp) {
    let victim = victim(&app).await;
    let scopes = [
        "read_order",
        "write_order",
        "read_inventory",
        "write_inventory",
        "write_settings",
    ];
    let mut single = Vec::new();
    for scope in scopes {
        single.push((scope, token_with(&app, &victim.shop, &[scope]).await));
    }
    let read_only = token_with(&app, &victim.shop, &["read_order", "read_inventory"]).await;
    let operations = token_operations(&app).await;
    // First the tokens that may change nothing: the platform's, a read-only one, and every shop
    // token at the platform's endpoints.
    let before = victim.state(&app).await;
    for operation in &operations {
        let path = victim.path(operation);
        if operation.is_platform() {
            let answer = call(&app, operation, &path, &victim.shop.token).await;
            assert_eq!(answer.status, 403, "a shop token administers no platform: {path}");
            continue;
        }
        if operation.writes() {
            let answer = call(&app, operation, &path, &read_only).await;
            assert_eq!(
                answer.status, 403,
                "{} {path} with a read-only token: {}",
                operation.method, answer.text
            );
        }
        let admin = call(&app, operation, &path, ADMIN_TOKEN).await;
        assert_eq!(
            admin.status, 403,
            "the platform token reaches no shop: {} {path}",
            operation.method
        );
    }
    assert_eq!(
        victim.state(&app).await,
        before,
        "no token without the scope changed anything"
    );
    // Then each single scope: every endpoint is closed to some and open to others.
    for operation in operations.iter().filter(|operation| !operation.is_platform()) {
        let path = victim.path(operation);
        let mut forbidden = Vec::new();
        for (scope, token) in &single {
            let answer = call(&app, operation, &path, token).await;
            assert!(
                answer.status < 500,
                "{} {path} as {scope}: {}",
                operation.method,
                answer.text
            );
            if answer.status == 403 {
                assert_eq!(answer.code(), "forbidden");
                assert!(
                    answer.body["error"].as_str().unwrap().contains("scope"),
                    "{}",
                    answer.text
                );
                forbidden.push(*scope);
            }
        }
        assert!(
            !forbidden.is_empty() && forbidden.len() < scopes.len(),
            "{} {path} is closed to some scopes and open to others; closed to {forbidden:?}",
            operation.method
        );
    }
}

async fn token_with(app: &TestApp, shop: &TestShop, scopes: &[&str]) -> String {
    let created = app
        .post(
            &format!("/api/v1/shops/{}/tokens", shop.id),
            ADMIN_TOKEN,
            json!({"scopes": scopes}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    created.body["token"].as_str().unwrap().to_owned()
}

async fn no_answer_of_any_endpoint_carries_a_credential_or_a_token_secret(app: TestApp) {
    let victim = victim(&app).await;
    let mut read = 0;
    for operation in token_operations(&app)
        .await
        .iter()
        .filter(|operation| !operation.writes())
    {
        let path = victim.path(operation);
        let answer = call(&app, operation, &path, &victim.shop.token).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text);
        for secret in &victim.secrets {
            assert!(
                !answer.text.contains(secret.as_str()),
                "{path} shows a secret: {}",
                answer.text
            );
        }
        read += 1;
    }
    assert!(read >= 15, "every readable endpoint was read ({read})");
    let metrics = app.metrics().await;
    assert!(!metrics.contains(MARKER) && !metrics.contains(&victim.shop.token));
}

async fn hostile_bodies_get_a_clear_client_error_and_the_server_stays_up(app: TestApp) {
    let shop = app.shop().await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let too_big = format!("{{\"note\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let order = app.order(&shop, json!({})).await;
    let cancel_path = format!("/api/v1/orders/{}/cancel", order["id"].as_str().unwrap());
    for (path, body, expected) in [
        ("/api/v1/orders", deep.clone(), 400),
        (cancel_path.as_str(), deep, 400),
        ("/api/v1/orders", too_big.clone(), 413),
        (cancel_path.as_str(), too_big, 413),
        ("/api/v1/orders", "{\"channel_id\": ".to_owned(), 400),
        ("/api/v1/orders", "\u{feff}{}".to_owned(), 400),
        ("/api/v1/orders/cancel", "[1, 2, 3]".to_owned(), 400),
        // Not filled by position from an array (schemathesis found this one).
        ("/api/v1/orders/cancel", "[[\"ord_1\"], null]".to_owned(), 400),
    ] {
        let answer = app
            .client
            .post(app.url(path))
            .bearer_auth(&shop.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap();
        assert_eq!(status, expected, "{path}: {}", &text[..text.len().min(300)]);
        let error: Value = serde_json::from_str(&text).expect("the error body of API.md");
        assert!(error["code"].is_string() && error["error"].is_string(), "{text}");
    }
    let huge_header = app
        .get_with_header("/api/v1/orders", &shop.token, ("x-filler", "y".repeat(64 * 1024)))
        .await;
    assert_eq!(
        (huge_header.status, huge_header.code()),
        (431, "headers_too_large"),
        "{}",
        huge_header.text
    );
    let long_query = app
        .get(&format!("/api/v1/orders?q={}", "z".repeat(10 * 1024)), &shop.token)
        .await;
    assert_eq!(
        (long_query.status, long_query.code()),
        (414, "uri_too_long"),
        "{}",
        long_query.text
    );
    // The smallest 64-bit number has no positive twin: a limit check by absolute value overflowed.
    app.set_stock(&shop, "TEA-001", 5).await;
    for delta in [i64::MIN, i64::MAX, -1_000_000_001] {
        let answer = app
            .post(
                "/api/v1/inventory/TEA-001/adjust",
                &shop.token,
                json!({"delta": delta, "reason": "fuzz"}),
            )
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, "invalid_request"),
            "{delta}: {}",
            answer.text
        );
    }
    assert_eq!(app.stock(&shop, "TEA-001").await, 5);
    assert_eq!(
        app.order_now(&shop, order["id"].as_str().unwrap()).await["status"],
        "open"
    );
    assert_eq!(
        app.get("/api/v1/orders", &shop.token).await.status,
        200,
        "still serving"
    );
}
