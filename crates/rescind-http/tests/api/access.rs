//! Platform administration, tokens, scopes and tenant isolation (API.md "Platform administration", B6).

use crate::helpers::{TestApp, ADMIN_TOKEN};
use reqwest::Method;
use serde_json::json;

crate::on_both_backends!(
    the_platform_token_creates_a_shop_whose_first_token_holds_every_scope,
    only_the_platform_token_may_create_shops_and_tokens,
    requests_without_a_token_or_with_an_unknown_one_are_unauthorized,
    a_token_lacking_the_scope_of_an_endpoint_is_forbidden,
    a_shop_never_sees_or_touches_another_shops_orders,
    tokens_are_stored_only_as_hashes,
    shop_settings_can_be_read_and_changed_within_their_limits,
    token_requests_with_unknown_scopes_or_for_unknown_shops_are_refused,
);

async fn the_platform_token_creates_a_shop_whose_first_token_holds_every_scope(app: TestApp) {
    let created = app
        .post(
            "/api/v1/shops",
            ADMIN_TOKEN,
            json!({"name": "Kyoto Tea", "settings": {"customer_cancellation_requests": true}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["shop"]["name"], "Kyoto Tea");
    assert_eq!(created.body["shop"]["settings"]["customer_cancellation_requests"], true);
    assert_eq!(created.body["shop"]["settings"]["inventory_push_interval_s"], 300);
    let scopes: Vec<&str> = created.body["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        scopes,
        [
            "read_order",
            "write_order",
            "read_inventory",
            "write_inventory",
            "write_settings"
        ]
    );
    let token = created.body["token"].as_str().unwrap();
    assert!(token.len() >= 32, "a token carries at least 128 random bits");
    let settings = app.get("/api/v1/settings", token).await;
    assert_eq!(settings.status, 200);
    assert_eq!(settings.body["customer_cancellation_requests"], true);
}

async fn only_the_platform_token_may_create_shops_and_tokens(app: TestApp) {
    let shop = app.shop().await;
    let by_shop = app.post("/api/v1/shops", &shop.token, json!({"name": "Sneaky"})).await;
    assert_eq!((by_shop.status, by_shop.code()), (403, "forbidden"));
    let token_by_shop = app
        .post(
            &format!("/api/v1/shops/{}/tokens", shop.id),
            &shop.token,
            json!({"scopes": ["read_order"]}),
        )
        .await;
    assert_eq!(token_by_shop.status, 403);
    let orders_by_admin = app.get("/api/v1/orders", ADMIN_TOKEN).await;
    assert_eq!(
        (orders_by_admin.status, orders_by_admin.code()),
        (403, "forbidden"),
        "the platform token reads no shop's data"
    );
}

async fn requests_without_a_token_or_with_an_unknown_one_are_unauthorized(app: TestApp) {
    let missing = app.send(Method::GET, "/api/v1/orders", None, None, None).await;
    assert_eq!((missing.status, missing.code()), (401, "unauthorized"));
    assert!(missing.body["error"]
        .as_str()
        .is_some_and(|sentence| !sentence.is_empty()));
    let unknown = app
        .get(
            "/api/v1/orders",
            "rsk_0000000000000000000000000000000000000000000000000000000000000000",
        )
        .await;
    assert_eq!((unknown.status, unknown.code()), (401, "unauthorized"));
    let not_bearer = app
        .client
        .get(app.url("/api/v1/orders"))
        .header("Authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(not_bearer.status().as_u16(), 401);
}

async fn a_token_lacking_the_scope_of_an_endpoint_is_forbidden(app: TestApp) {
    let shop = app.shop().await;
    let order = app.order(&shop, json!({})).await;
    let reader = app
        .post(
            &format!("/api/v1/shops/{}/tokens", shop.id),
            ADMIN_TOKEN,
            json!({"scopes": ["read_order"]}),
        )
        .await;
    assert_eq!(reader.status, 201, "{}", reader.text);
    assert_eq!(reader.body["scopes"], json!(["read_order"]));
    let reader = reader.body["token"].as_str().unwrap();

    assert_eq!(
        app.get(&format!("/api/v1/orders/{}", order["id"].as_str().unwrap()), reader)
            .await
            .status,
        200
    );
    let cancel = app
        .post(
            &format!("/api/v1/orders/{}/cancel", order["id"].as_str().unwrap()),
            reader,
            json!({}),
        )
        .await;
    assert_eq!((cancel.status, cancel.code()), (403, "forbidden"));
    assert!(cancel.body["error"].as_str().unwrap().contains("write_order"));
    assert_eq!(app.get("/api/v1/settings", reader).await.status, 403);
    let unchanged = app.order_now(&shop, order["id"].as_str().unwrap()).await;
    assert_eq!(unchanged["status"], "open");
}

async fn a_shop_never_sees_or_touches_another_shops_orders(app: TestApp) {
    let mine = app.shop().await;
    let theirs = app.shop().await;
    let order = app.order(&theirs, json!({})).await;
    let id = order["id"].as_str().unwrap();

    for path in [
        format!("/api/v1/orders/{id}"),
        format!("/api/v1/orders/{id}/history"),
        format!("/api/v1/channels/{}", theirs.channel_id),
    ] {
        let answer = app.get(&path, &mine.token).await;
        assert_eq!((answer.status, answer.code()), (404, "not_found"), "{path}");
    }
    let cancel = app.cancel(&mine, id, json!({"refund_method": "store_credit"})).await;
    assert_eq!((cancel.status, cancel.code()), (404, "not_found"));
    let refund = app
        .post(
            &format!("/api/v1/orders/{id}/refunds"),
            &mine.token,
            json!({"amount": "100", "method": "store_credit"}),
        )
        .await;
    assert_eq!(refund.status, 404);
    let bulk = app
        .post("/api/v1/orders/cancel", &mine.token, json!({"order_ids": [id]}))
        .await;
    assert_eq!(bulk.body["results"][0]["code"], "not_found");
    let import = app
        .post(
            "/api/v1/orders",
            &mine.token,
            crate::helpers::order_body(&theirs.channel_id, json!({})),
        )
        .await;
    assert_eq!(
        import.status, 400,
        "another shop's channel is unknown here: {}",
        import.text
    );
    let list = app.get("/api/v1/orders", &mine.token).await;
    assert_eq!(list.body["items"], json!([]));

    let still = app.order_now(&theirs, id).await;
    assert_eq!(still["status"], "open", "nothing another shop did reached this order");
    assert_eq!(still["refunds"], json!([]));
}

async fn tokens_are_stored_only_as_hashes(app: TestApp) {
    let shop = app.shop().await;
    assert!(
        app.store.token_by_hash(&shop.token).await.unwrap().is_none(),
        "the secret itself is not stored"
    );
    let stored = app
        .store
        .token_by_hash(&rescind_http::auth::hash_secret(&shop.token))
        .await
        .unwrap()
        .expect("stored by hash");
    assert_eq!(stored.shop_id, shop.id);
    assert_ne!(stored.token_hash, shop.token);
}

async fn shop_settings_can_be_read_and_changed_within_their_limits(app: TestApp) {
    let shop = app.shop().await;
    let patched = app
        .send(
            Method::PATCH,
            "/api/v1/settings",
            Some(&shop.token),
            Some(json!({"inventory_push_interval_s": 0})),
            None,
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(
        patched.body,
        json!({"customer_cancellation_requests": false, "inventory_push_interval_s": 0})
    );
    let refused = app
        .send(
            Method::PATCH,
            "/api/v1/settings",
            Some(&shop.token),
            Some(json!({"inventory_push_interval_s": -5, "customer_cancellation_requests": "yes"})),
            None,
        )
        .await;
    assert_eq!((refused.status, refused.code()), (400, "invalid_request"));
    let negative = app
        .send(
            Method::PATCH,
            "/api/v1/settings",
            Some(&shop.token),
            Some(json!({"inventory_push_interval_s": -5})),
            None,
        )
        .await;
    assert_eq!(negative.status, 400);
    assert_eq!(
        negative.body["errors"][0],
        "inventory_push_interval_s: must be between 0 and 86400 seconds"
    );
    assert_eq!(
        app.get("/api/v1/settings", &shop.token).await.body["inventory_push_interval_s"],
        0
    );
}

async fn token_requests_with_unknown_scopes_or_for_unknown_shops_are_refused(app: TestApp) {
    let shop = app.shop().await;
    let unknown_scope = app
        .post(
            &format!("/api/v1/shops/{}/tokens", shop.id),
            ADMIN_TOKEN,
            json!({"scopes": ["read_order", "root"]}),
        )
        .await;
    assert_eq!((unknown_scope.status, unknown_scope.code()), (400, "invalid_request"));
    assert!(unknown_scope.body["errors"][0].as_str().unwrap().contains("`root`"));
    let no_shop = app
        .post(
            "/api/v1/shops/shop_nope/tokens",
            ADMIN_TOKEN,
            json!({"scopes": ["read_order"]}),
        )
        .await;
    assert_eq!((no_shop.status, no_shop.code()), (404, "not_found"));
    let nameless = app.post("/api/v1/shops", ADMIN_TOKEN, json!({})).await;
    assert_eq!(nameless.body["errors"], json!(["name: is required"]));
}
