//! Stock pushed to the channels that sell each SKU (PRODUCT.md I5): the latest level once per
//! `inventory_push_interval_s`, through each channel's inventory API, retried, in the sync history.

use crate::helpers::{TestApp, TestShop, TestSim};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

crate::on_both_backends!(
    three_channels_selling_one_sku_hear_its_level_once_per_interval,
    with_no_interval_levels_go_out_at_once_and_a_failed_push_is_retried,
    listings_name_a_channel_of_the_shop_and_the_ids_it_needs,
);

async fn patch_settings(app: &TestApp, shop: &TestShop, settings: Value) {
    let patched = app
        .send(
            Method::PATCH,
            "/api/v1/settings",
            Some(&shop.token),
            Some(settings),
            None,
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
}

async fn stock_request(
    app: &TestApp,
    shop: &TestShop,
    method: Method,
    path: &str,
    body: Value,
) -> crate::helpers::Answer {
    app.send(method, path, Some(&shop.token), Some(body), None).await
}

/// The pushes each channel received: `[[(listing id, quantity)…] per push]`.
fn pushes(ledger: &Value, channel: &str) -> Vec<Vec<(String, u64)>> {
    ledger[channel]["stock_pushes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|push| {
            push["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| {
                    (
                        item["id"].as_str().unwrap().to_owned(),
                        item["quantity"].as_u64().unwrap(),
                    )
                })
                .collect()
        })
        .collect()
}

/// Waits until every channel has received `count` pushes.
async fn wait_for_pushes(sim: &TestSim, channels: &[&str], count: usize, seconds: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        let ledger = sim.whole_ledger().await;
        if channels.iter().all(|channel| pushes(&ledger, channel).len() >= count) {
            return ledger;
        }
        assert!(
            Instant::now() < deadline,
            "not every channel got {count} pushes in {seconds} s: {ledger}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn three_channels_selling_one_sku_hear_its_level_once_per_interval(app: TestApp) {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    patch_settings(&app, &shop, json!({"inventory_push_interval_s": 2})).await;
    let shopify = app.sim_channel(&shop, &sim, "shopify").await;
    let yahoo = app.sim_channel(&shop, &sim, "yahoo").await;
    let amazon = app.sim_channel(&shop, &sim, "amazon").await;
    let set = stock_request(
        &app,
        &shop,
        Method::PUT,
        "/api/v1/inventory/TEA-001",
        json!({"available": 10}),
    )
    .await;
    assert_eq!(set.status, 200, "{}", set.text);
    let listed = stock_request(
        &app,
        &shop,
        Method::PUT,
        "/api/v1/inventory/TEA-001/listings",
        json!({"listings": [
            {"channel_id": shopify, "external_id": "gid://shopify/InventoryItem/1", "location_id": "gid://shopify/Location/1"},
            {"channel_id": yahoo, "external_id": "sencha-100g"},
            {"channel_id": amazon},
        ]}),
    )
    .await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(
        listed.body["listings"][2]["external_id"], "TEA-001",
        "Amazon's seller SKU defaults to the SKU"
    );

    // A new listing hears the current level at once.
    let ledger = wait_for_pushes(&sim, &["shopify", "yahoo", "amazon"], 1, 10).await;
    assert_eq!(
        pushes(&ledger, "shopify"),
        [vec![(
            "gid://shopify/InventoryItem/1@gid://shopify/Location/1".to_owned(),
            10
        )]]
    );
    assert_eq!(pushes(&ledger, "yahoo"), [vec![("sencha-100g".to_owned(), 10)]]);
    assert_eq!(pushes(&ledger, "amazon"), [vec![("TEA-001".to_owned(), 10)]]);

    // Three moves within the interval: a manual adjustment, a set, a deduction at import.
    let moved_at = Instant::now();
    let adjusted = stock_request(
        &app,
        &shop,
        Method::POST,
        "/api/v1/inventory/TEA-001/adjust",
        json!({"delta": -1, "reason": "broken in the shop"}),
    )
    .await;
    assert_eq!(adjusted.status, 200, "{}", adjusted.text);
    stock_request(
        &app,
        &shop,
        Method::PUT,
        "/api/v1/inventory/TEA-001",
        json!({"available": 8}),
    )
    .await;
    app.order(
        &shop,
        json!({"deduct_inventory": true, "line_items": [{"sku": "TEA-001", "title": "Sencha", "quantity": 2, "price": "1000"}],
               "total_shipping": "600", "payment": {"method": "bank_transfer", "amount": "2600"}}),
    )
    .await;
    let early = sim.whole_ledger().await;
    if moved_at.elapsed() < Duration::from_millis(1500) {
        for channel in ["shopify", "yahoo", "amazon"] {
            assert_eq!(
                pushes(&early, channel).len(),
                1,
                "{channel} hears nothing before the interval is over"
            );
        }
    }

    // One push per channel for the three moves, with the latest level.
    let ledger = wait_for_pushes(&sim, &["shopify", "yahoo", "amazon"], 2, 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ledger_after = sim.whole_ledger().await;
    for channel in ["shopify", "yahoo", "amazon"] {
        assert_eq!(
            pushes(&ledger_after, channel).len(),
            2,
            "{channel}: nothing more was pushed"
        );
    }
    assert_eq!(
        pushes(&ledger, "shopify")[1],
        [("gid://shopify/InventoryItem/1@gid://shopify/Location/1".to_owned(), 6)]
    );
    assert_eq!(pushes(&ledger, "yahoo")[1], [("sencha-100g".to_owned(), 6)]);
    assert_eq!(pushes(&ledger, "amazon")[1], [("TEA-001".to_owned(), 6)]);
    for channel in ["shopify", "yahoo", "amazon"] {
        assert!(
            ledger[channel]["stock_pushes"][1]["idempotency_key"]
                .as_str()
                .is_some_and(|key| key.starts_with("rescind-push-")),
            "{channel}: every push carries an idempotency key"
        );
    }

    let history = app.get("/api/v1/sync_history?kind=inventory_push", &shop.token).await;
    let entries = history.body["items"].as_array().unwrap();
    assert_eq!(entries.len(), 6, "{}", history.text);
    assert!(
        entries
            .iter()
            .all(|entry| entry["result"] == "ok" && entry["order_id"].is_null()),
        "{}",
        history.text
    );
    assert!(
        entries.iter().any(|entry| entry["request"] == "set stock TEA-001 = 6"),
        "{}",
        history.text
    );
}

async fn with_no_interval_levels_go_out_at_once_and_a_failed_push_is_retried(app: TestApp) {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    patch_settings(&app, &shop, json!({"inventory_push_interval_s": 0})).await;
    let rakuten = app.sim_channel(&shop, &sim, "rakuten").await;
    let shoplazza = app.sim_channel(&shop, &sim, "shoplazza").await;
    for sku in ["TEA-001", "CUP-002"] {
        stock_request(
            &app,
            &shop,
            Method::PUT,
            &format!("/api/v1/inventory/{sku}"),
            json!({"available": 10}),
        )
        .await;
        let listed = stock_request(
            &app,
            &shop,
            Method::PUT,
            &format!("/api/v1/inventory/{sku}/listings"),
            json!({"listings": [
                {"channel_id": rakuten, "external_id": "tea-set"},
                {"channel_id": shoplazza, "external_id": format!("variant-{sku}")},
            ]}),
        )
        .await;
        assert_eq!(listed.status, 200, "{}", listed.text);
    }
    let _ = wait_for_pushes(&sim, &["rakuten", "shoplazza"], 1, 10).await;

    // Rakuten's inventory API fails twice; the pusher tries again until it has the level.
    sim.set_faults("rakuten.inventoryBulkUpsert", json!({"fail_first": 2}))
        .await;
    let order = app.order(&shop, json!({"deduct_inventory": true})).await;
    let cancelled = app
        .cancel(
            &shop,
            order["id"].as_str().unwrap(),
            json!({"refund_method": "store_credit"}),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);

    let deadline = Instant::now() + Duration::from_secs(15);
    let (stock, history) = loop {
        let ledger = sim.whole_ledger().await;
        let stock = ledger["rakuten"]["stock"].clone();
        let shoplazza_stock = ledger["shoplazza"]["stock"].clone();
        // The restock after the cancel (10, 10) reaches both channels (after the deduction, 9 and
        // 8, unless both moves were pushed at once), Rakuten's after two failed attempts — each
        // in the sync history once the pusher has recorded it, a moment after the simulator
        // counted the call.
        let history = app.get("/api/v1/sync_history?kind=inventory_push", &shop.token).await;
        let recorded_failures = history.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| entry["result"] == "error")
            .count();
        if stock["tea-set:TEA-001"] == 10
            && stock["tea-set:CUP-002"] == 10
            && shoplazza_stock["variant-TEA-001"] == 10
            && shoplazza_stock["variant-CUP-002"] == 10
            && ledger["rakuten"]["calls"]["inventoryBulkUpsert"].as_u64().unwrap_or(0) >= 3
            && recorded_failures >= 2
        {
            break (stock, history);
        }
        assert!(
            Instant::now() < deadline,
            "the levels did not arrive: {ledger} {}",
            history.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stock, json!({"tea-set:TEA-001": 10, "tea-set:CUP-002": 10}));

    let entries = history.body["items"].as_array().unwrap();
    let failed: Vec<&Value> = entries.iter().filter(|entry| entry["result"] == "error").collect();
    assert_eq!(failed.len(), 2, "{}", history.text);
    assert!(
        failed
            .iter()
            .all(|entry| entry["message"].as_str().unwrap().contains("retried")),
        "{}",
        history.text
    );
    assert!(failed
        .iter()
        .all(|entry| entry["target"].as_str().unwrap().starts_with("rakuten ")));
}

async fn listings_name_a_channel_of_the_shop_and_the_ids_it_needs(app: TestApp) {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    let other = app.shop().await;
    let shopify = app.sim_channel(&shop, &sim, "shopify").await;
    let foreign = app.sim_channel(&other, &sim, "yahoo").await;
    let unknown = stock_request(
        &app,
        &shop,
        Method::PUT,
        "/api/v1/inventory/NOPE/listings",
        json!({"listings": []}),
    )
    .await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));

    stock_request(
        &app,
        &shop,
        Method::PUT,
        "/api/v1/inventory/TEA-001",
        json!({"available": 3}),
    )
    .await;
    let refused = stock_request(
        &app,
        &shop,
        Method::PUT,
        "/api/v1/inventory/TEA-001/listings",
        json!({"listings": [
            {"channel_id": shopify, "external_id": "gid://shopify/InventoryItem/1"},
            {"channel_id": foreign},
            {"channel_id": shop.channel_id},
            {},
        ]}),
    )
    .await;
    assert_eq!(
        (refused.status, refused.code()),
        (400, "invalid_request"),
        "{}",
        refused.text
    );
    let errors: Vec<&str> = refused.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|error| error.as_str().unwrap())
        .collect();
    assert!(
        errors.iter().any(|error| error.starts_with("listings[0].location_id")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|error| error.starts_with("listings[1].channel_id: no channel")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|error| error.starts_with("listings[2].channel_id: the own store")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|error| error.starts_with("listings[3].channel_id: is required")),
        "{errors:?}"
    );
    let listings = app.get("/api/v1/inventory/TEA-001/listings", &shop.token).await;
    assert_eq!(listings.body["listings"], json!([]), "nothing was kept");
}
