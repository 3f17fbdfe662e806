//! The channel-side rules: reason lists and their validation (H2), webhooks and polls of cancels
//! made at the channel (H3), channels without cancel sync (H4).

use crate::helpers::{order_body, step, TestApp, TestSim};
use serde_json::{json, Value};

crate::on_both_backends!(
    each_channel_lists_its_own_reasons_in_japanese_and_english,
    a_reason_code_is_checked_against_the_orders_channel,
    yahoo_store_other_needs_a_detail_of_10_to_200_characters,
    a_webhook_with_a_bad_signature_is_refused_and_changes_nothing,
    a_replayed_webhook_runs_the_workflow_once,
    shopifys_signed_orders_cancelled_payload_is_accepted,
    a_poll_that_finds_a_rakuten_cancel_runs_the_workflow_once_however_often_it_polls,
    a_channel_without_cancel_sync_is_not_called_and_the_operator_is_told,
    amazon_cancels_each_item_with_the_reason_through_the_feed,
    shopify_is_told_to_refund_what_it_collected_and_to_restock_its_own_stock,
);

async fn rakuten_shop(app: &TestApp, sim: &TestSim, cancel_sync: bool) -> (crate::helpers::TestShop, String) {
    let shop = app.shop().await;
    let created = app
        .post(
            "/api/v1/channels",
            &shop.token,
            json!({"kind": "rakuten", "name": "楽天市場店", "base_url": sim.url(), "cancel_sync": cancel_sync,
                   "credentials": {"service_secret": "s", "license_key": "l", "webhook_secret": "rakuten-secret"}}),
        )
        .await;
    (shop, created.body["id"].as_str().unwrap().to_owned())
}

async fn rakuten_order(
    app: &TestApp,
    sim: &TestSim,
    shop: &crate::helpers::TestShop,
    channel_id: &str,
    number: &str,
) -> String {
    app.client
        .post(format!("{}/_sim/rakuten/orders", sim.url()))
        .json(&json!({"id": number}))
        .send()
        .await
        .unwrap();
    let imported = app
        .post(
            "/api/v1/orders",
            &shop.token,
            order_body(
                channel_id,
                json!({"channel_order_id": number, "payment": {"method": "channel", "amount": "2600"}}),
            ),
        )
        .await;
    assert_eq!(imported.status, 201, "{}", imported.text);
    imported.body["id"].as_str().unwrap().to_owned()
}

fn hex_hmac(secret: &str, body: &[u8]) -> String {
    rescind_http::auth::hmac_sha256(secret.as_bytes(), body)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

async fn each_channel_lists_its_own_reasons_in_japanese_and_english(app: TestApp) {
    let sim = TestSim::start().await;
    let (shop, channel_id) = rakuten_shop(&app, &sim, true).await;
    let path = format!("/api/v1/channels/{channel_id}/cancel_reasons");
    let english = app.get(&path, &shop.token).await;
    assert_eq!(english.status, 200, "{}", english.text);
    assert_eq!(english.body["reason_code_required"], true);
    let items = english.body["items"].as_array().unwrap();
    let out_of_stock = items.iter().find(|item| item["code"] == "8").unwrap();
    assert_eq!(
        (out_of_stock["label"].as_str(), out_of_stock["group"].as_str()),
        (Some("Out of stock"), Some("store"))
    );
    assert_eq!(items.iter().filter(|item| item["group"] == "customer").count(), 6);
    let japanese = app
        .client
        .get(app.url(&path))
        .bearer_auth(&shop.token)
        .header("Accept-Language", "ja-JP,ja;q=0.9")
        .send()
        .await
        .unwrap();
    let japanese: Value = japanese.json().await.unwrap();
    let out_of_stock = japanese["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["code"] == "8")
        .unwrap();
    assert_eq!(out_of_stock["label"], "欠品");
    assert_eq!(
        app.get(
            &format!("/api/v1/channels/{}/cancel_reasons", shop.channel_id),
            &shop.token
        )
        .await
        .body["reason_code_required"],
        false
    );
}

async fn a_reason_code_is_checked_against_the_orders_channel(app: TestApp) {
    let sim = TestSim::start().await;
    let (shop, channel_id) = rakuten_shop(&app, &sim, true).await;
    let id = rakuten_order(&app, &sim, &shop, &channel_id, "354396-20260525-0036329794").await;
    let missing = app.cancel(&shop, &id, json!({})).await;
    assert_eq!((missing.status, missing.code()), (400, "invalid_request"));
    assert!(
        missing.body["errors"][0]
            .as_str()
            .unwrap()
            .contains("1, 2, 3, 4, 5, 6, 8, 10, 13, 14, 15"),
        "names the valid codes: {}",
        missing.text
    );
    let foreign = app.cancel(&shop, &id, json!({"reason_code": "NoInventory"})).await;
    assert_eq!(foreign.status, 400, "an Amazon code on a Rakuten order");
    assert_eq!(
        app.order_now(&shop, &id).await["cancellation"],
        Value::Null,
        "nothing started"
    );
}

async fn yahoo_store_other_needs_a_detail_of_10_to_200_characters(app: TestApp) {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    let channel = app
        .post("/api/v1/channels", &shop.token, json!({"kind": "yahoo", "name": "Yahoo!", "base_url": sim.url(), "credentials": {"access_token": "t", "seller_id": "s"}}))
        .await;
    let channel_id = channel.body["id"].as_str().unwrap();
    app.client
        .post(format!("{}/_sim/yahoo/orders", sim.url()))
        .json(&json!({"id": "store-10001"}))
        .send()
        .await
        .unwrap();
    let order = app
        .post(
            "/api/v1/orders",
            &shop.token,
            order_body(
                channel_id,
                json!({"channel_order_id": "store-10001", "payment": {"method": "channel", "amount": "2600"}}),
            ),
        )
        .await;
    let id = order.body["id"].as_str().unwrap();
    for (detail, accepted) in [
        (None, false),
        (Some("あ".repeat(9)), false),
        (Some("あ".repeat(201)), false),
    ] {
        let mut options = json!({"reason_code": "230"});
        if let Some(detail) = &detail {
            options["reason_detail"] = json!(detail);
        }
        let answer = app.cancel(&shop, id, options).await;
        assert_eq!(answer.status == 200, accepted, "{detail:?}: {}", answer.text);
        assert_eq!(answer.status, 400);
        assert!(answer.body["errors"][0].as_str().unwrap().starts_with("reason_detail:"));
    }
    let answer = app
        .cancel(
            &shop,
            id,
            json!({"reason_code": "230", "reason_detail": "お客様と相談の上でキャンセル"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let ledger = sim.whole_ledger().await;
    assert_eq!(ledger["yahoo"]["cancels"][0]["detail"], "お客様と相談の上でキャンセル");
}

async fn a_webhook_with_a_bad_signature_is_refused_and_changes_nothing(app: TestApp) {
    let sim = TestSim::start().await;
    let (shop, channel_id) = rakuten_shop(&app, &sim, true).await;
    let id = rakuten_order(&app, &sim, &shop, &channel_id, "R-1").await;
    let body = json!({"channel_order_id": "R-1", "event": "order_cancelled"}).to_string();
    let url = app.url(&format!("/api/v1/channels/{channel_id}/webhooks"));
    for signature in [
        None,
        Some("sha256=00".to_owned()),
        Some(format!("sha256={}", hex_hmac("wrong-secret", body.as_bytes()))),
    ] {
        let mut request = app.client.post(&url).body(body.clone());
        if let Some(signature) = signature {
            request = request.header("X-Rescind-Signature", signature);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
    }
    assert_eq!(app.order_now(&shop, &id).await["status"], "open");
}

async fn a_replayed_webhook_runs_the_workflow_once(app: TestApp) {
    let sim = TestSim::start().await;
    let (shop, channel_id) = rakuten_shop(&app, &sim, true).await;
    let id = rakuten_order(&app, &sim, &shop, &channel_id, "R-2").await;
    let body = json!({"channel_order_id": "R-2", "event": "order_cancelled", "reason": "キャンセル"}).to_string();
    let signature = format!("sha256={}", hex_hmac("rakuten-secret", body.as_bytes()));
    let url = app.url(&format!("/api/v1/channels/{channel_id}/webhooks"));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = app
            .client
            .post(&url)
            .header("X-Rescind-Signature", &signature)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        statuses.push(
            response.json::<Value>().await.unwrap()["status"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(statuses, ["cancelled", "already_cancelled", "already_cancelled"]);
    let order = app
        .wait_for_order(&shop, &id, 10, |order| order["cancellation"]["status"] == "completed")
        .await;
    assert_eq!(order["cancellation"]["requested_by"], "channel");
    assert_eq!(step(&order, "channel_cancel")["status"], "succeeded");
    let history = app.get(&format!("/api/v1/orders/{id}/history"), &shop.token).await;
    let created = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["kind"] == "cancellation.created")
        .count();
    assert_eq!(created, 1, "one workflow");
    let ledger = sim.whole_ledger().await;
    assert!(
        ledger["rakuten"]["cancels"].as_array().unwrap().is_empty(),
        "the channel is not asked to cancel what it cancelled"
    );
}

async fn shopifys_signed_orders_cancelled_payload_is_accepted(app: TestApp) {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    let channel = app
        .post("/api/v1/channels", &shop.token, json!({"kind": "shopify", "name": "Shopify", "base_url": sim.url(), "credentials": {"access_token": "shpat", "webhook_secret": "whsec"}}))
        .await;
    let channel_id = channel.body["id"].as_str().unwrap();
    let order = app
        .post(
            "/api/v1/orders",
            &shop.token,
            order_body(
                channel_id,
                json!({"channel_order_id": "450789469", "payment": {"method": "channel", "amount": "2600"}}),
            ),
        )
        .await;
    let id = order.body["id"].as_str().unwrap();
    let body = json!({"id": 450789469, "name": "#1001", "cancel_reason": "customer", "cancelled_at": "2026-11-22T10:00:00+09:00"}).to_string();
    let signature = rescind_connectors::encoding::base64(&rescind_http::auth::hmac_sha256(b"whsec", body.as_bytes()));
    let response = app
        .client
        .post(app.url(&format!("/api/v1/channels/{channel_id}/webhooks")))
        .header("X-Shopify-Hmac-SHA256", signature)
        .header("X-Shopify-Topic", "orders/cancelled")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let order = app
        .wait_for_order(&shop, id, 10, |order| order["status"] == "cancelled")
        .await;
    assert_eq!(order["cancel_reason"], "customer");
}

async fn a_poll_that_finds_a_rakuten_cancel_runs_the_workflow_once_however_often_it_polls(app: TestApp) {
    let sim = TestSim::start().await;
    let (shop, channel_id) = rakuten_shop(&app, &sim, true).await;
    let cancelled_there = rakuten_order(&app, &sim, &shop, &channel_id, "R-10").await;
    let still_open = rakuten_order(&app, &sim, &shop, &channel_id, "R-11").await;
    app.client
        .post(format!("{}/_sim/rakuten/orders/R-10/status", sim.url()))
        .json(&json!({"status": "900"}))
        .send()
        .await
        .unwrap();
    let path = format!("/api/v1/channels/{channel_id}/poll");
    let first = app.post(&path, &shop.token, json!({})).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["checked"], 2);
    assert_eq!(first.body["cancelled_order_ids"], json!([cancelled_there]));
    for _ in 0..3 {
        let again = app.post(&path, &shop.token, json!({})).await;
        assert_eq!(again.body["cancelled_order_ids"], json!([]), "{}", again.text);
    }
    let order = app
        .wait_for_order(&shop, &cancelled_there, 10, |order| {
            order["cancellation"]["status"] == "completed"
        })
        .await;
    assert_eq!(order["status"], "cancelled");
    let history = app
        .get(&format!("/api/v1/orders/{cancelled_there}/history"), &shop.token)
        .await;
    assert_eq!(
        history.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["kind"] == "cancellation.created")
            .count(),
        1
    );
    assert_eq!(app.order_now(&shop, &still_open).await["status"], "open");
}

async fn a_channel_without_cancel_sync_is_not_called_and_the_operator_is_told(app: TestApp) {
    let sim = TestSim::start().await;
    let (shop, channel_id) = rakuten_shop(&app, &sim, false).await;
    let id = rakuten_order(&app, &sim, &shop, &channel_id, "R-20").await;
    let answer = app.cancel(&shop, &id, json!({"reason_code": "1"})).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["status"], "cancelled");
    let message = step(&answer.body, "channel_cancel")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("cancel sync is off") && message.contains("stop the warehouse outbound by hand"),
        "{message}"
    );
    let ledger = sim.whole_ledger().await;
    assert!(ledger["rakuten"]["cancels"].as_array().unwrap().is_empty());
}

async fn amazon_cancels_each_item_with_the_reason_through_the_feed(app: TestApp) {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    let channel = app
        .post(
            "/api/v1/channels",
            &shop.token,
            json!({"kind": "amazon", "name": "Amazon.co.jp", "base_url": sim.url(),
                   "credentials": {"access_token": "Atza|x", "merchant_id": "A2EUQ1WTGCTBG2", "marketplace_id": "A1VC38T7YXB528"}}),
        )
        .await;
    let channel_id = channel.body["id"].as_str().unwrap();
    app.client
        .post(format!("{}/_sim/amazon/orders", sim.url()))
        .json(&json!({"id": "250-1234567-1234567"}))
        .send()
        .await
        .unwrap();
    let without_codes = app
        .post(
            "/api/v1/orders",
            &shop.token,
            order_body(channel_id, json!({"channel_order_id": "250-1234567-1234567"})),
        )
        .await;
    assert_eq!(without_codes.status, 400, "Amazon lines need their item codes");
    let order = app
        .post(
            "/api/v1/orders",
            &shop.token,
            order_body(
                channel_id,
                json!({"channel_order_id": "250-1234567-1234567", "payment": {"method": "channel", "amount": "2600"},
                       "line_items": [
                           {"sku": "A", "title": "Tea", "quantity": 1, "price": "1000", "channel_line_item_id": "12345678901234"},
                           {"sku": "B", "title": "Cup", "quantity": 2, "price": "500", "channel_line_item_id": "12345678905678"}]}),
            ),
        )
        .await;
    let answer = app
        .cancel(
            &shop,
            order.body["id"].as_str().unwrap(),
            json!({"reason_code": "BuyerCanceled"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let ledger = sim.whole_ledger().await;
    let cancel = &ledger["amazon"]["cancels"][0];
    assert_eq!(cancel["reason"], "BuyerCanceled");
    assert_eq!(
        cancel["parameters"]["items"],
        json!([{"code": "12345678901234", "quantity": null}, {"code": "12345678905678", "quantity": null}])
    );
    assert!(
        ledger["amazon"]["calls"]["getFeed"].as_u64().unwrap() >= 3,
        "the feed's processing status was polled"
    );
}

async fn shopify_is_told_to_refund_what_it_collected_and_to_restock_its_own_stock(app: TestApp) {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    let channel = app
        .post("/api/v1/channels", &shop.token, json!({"kind": "shopify", "name": "Shopify", "base_url": sim.url(), "credentials": {"access_token": "shpat"}}))
        .await;
    let channel_id = channel.body["id"].as_str().unwrap();
    app.client
        .post(format!("{}/_sim/shopify/orders", sim.url()))
        .json(&json!({"id": "820982911946154508"}))
        .send()
        .await
        .unwrap();
    let order = app
        .post(
            "/api/v1/orders",
            &shop.token,
            order_body(
                channel_id,
                json!({"channel_order_id": "820982911946154508", "payment": {"method": "channel", "amount": "2600"}}),
            ),
        )
        .await;
    let answer = app
        .cancel(
            &shop,
            order.body["id"].as_str().unwrap(),
            json!({"reason_code": "INVENTORY", "staff_note": "欠品のため", "notify_customer": false}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let ledger = sim.whole_ledger().await;
    let parameters = &ledger["shopify"]["cancels"][0]["parameters"];
    assert_eq!(parameters["refund"], true, "Shopify collected the money");
    assert_eq!(
        parameters["restock"], true,
        "rescind did not deduct the stock, so Shopify puts its own back"
    );
    assert_eq!(parameters["notifyCustomer"], false);
    assert_eq!(parameters["staffNote"], "欠品のため");
    assert!(
        step(&answer.body, "channel_cancel")["message"]
            .as_str()
            .unwrap()
            .contains("job"),
        "the Job was followed"
    );
}
