//! Cancelling at the sales channels (PRODUCT.md C3, C6, H1–H4, W6, W8), against the simulators of
//! Shopify, Rakuten, Yahoo!ショッピング, Amazon and Shoplazza.

use crate::helpers::{order_body, step, TestApp, TestShop, TestSim};
use serde_json::{json, Value};

/// How one channel is set up and what its simulator calls things.
struct Channel {
    kind: &'static str,
    credentials: fn() -> Value,
    /// The fault endpoint of its cancel call.
    cancel_endpoint: &'static str,
    reason_code: Option<&'static str>,
    /// A status in which the channel refuses the cancel, and the words its refusal contains.
    refusing_status: &'static str,
    refusal_words: &'static str,
    /// The channel's own status of a cancelled order.
    cancelled_status: &'static str,
}

const SHOPIFY: Channel = Channel {
    kind: "shopify",
    credentials: || json!({"access_token": "shpat_test", "webhook_secret": "shopify-secret"}),
    cancel_endpoint: "shopify.orderCancel",
    reason_code: Some("CUSTOMER"),
    refusing_status: "fulfilled",
    refusal_words: "fulfilled",
    cancelled_status: "cancelled",
};
const RAKUTEN: Channel = Channel {
    kind: "rakuten",
    credentials: || json!({"service_secret": "SP000000_secret", "license_key": "license", "webhook_secret": "rakuten-secret"}),
    cancel_endpoint: "rakuten.cancelOrder",
    reason_code: Some("8"),
    refusing_status: "500",
    refusal_words: "ORDER_EXT_API_CANCEL_ORDER_ERROR_017",
    cancelled_status: "900",
};
const YAHOO: Channel = Channel {
    kind: "yahoo",
    credentials: || json!({"access_token": "yahoo-token", "seller_id": "rescind-store"}),
    cancel_endpoint: "yahoo.orderStatusChange",
    reason_code: Some("210"),
    refusing_status: "5",
    refusal_words: "od90192",
    cancelled_status: "4",
};
const AMAZON: Channel = Channel {
    kind: "amazon",
    credentials: || json!({"access_token": "Atza|test", "merchant_id": "A2EUQ1WTGCTBG2", "marketplace_id": "A1VC38T7YXB528"}),
    cancel_endpoint: "amazon.createFeed",
    reason_code: Some("NoInventory"),
    refusing_status: "Shipped",
    refusal_words: "has shipped",
    cancelled_status: "Canceled",
};
const SHOPLAZZA: Channel = Channel {
    kind: "shoplazza",
    credentials: || json!({"access_token": "shoplazza-token"}),
    cancel_endpoint: "shoplazza.cancel",
    reason_code: None,
    refusing_status: "finished",
    refusal_words: "finished order cannot be cancelled",
    cancelled_status: "cancelled",
};

/// A shop with a channel of `channel.kind` pointed at the simulator.
async fn channel_shop(app: &TestApp, sim: &TestSim, channel: &Channel, cancel_sync: bool) -> (TestShop, String) {
    let shop = app.shop().await;
    let created = app
        .post(
            "/api/v1/channels",
            &shop.token,
            json!({"kind": channel.kind, "name": channel.kind, "base_url": sim.url(), "credentials": (channel.credentials)(), "cancel_sync": cancel_sync}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    (shop, created.body["id"].as_str().unwrap().to_owned())
}

/// An order of the channel, known to its simulator in `status` (the channel's default when `None`),
/// paid through the channel.
async fn channel_order(
    app: &TestApp,
    sim: &TestSim,
    shop: &TestShop,
    channel_id: &str,
    channel: &Channel,
    external_id: &str,
    status: Option<&str>,
) -> Value {
    let mut control = json!({"id": external_id, "items": ["item-1", "item-2"]});
    if let Some(status) = status {
        control["status"] = json!(status);
    }
    let response = app
        .client
        .post(format!("{}/_sim/{}/orders", sim.url(), channel.kind))
        .json(&control)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let body = order_body(
        channel_id,
        json!({
            "channel_order_id": external_id,
            "line_items": [
                {"sku": "TEA-001", "title": "Sencha", "quantity": 1, "price": "1000", "channel_line_item_id": "item-1"},
                {"sku": "CUP-002", "title": "Yunomi", "quantity": 2, "price": "500", "channel_line_item_id": "item-2"}
            ],
            "payment": {"method": "channel", "amount": "2600"},
        }),
    );
    let imported = app.post("/api/v1/orders", &shop.token, body).await;
    assert_eq!(imported.status, 201, "{}", imported.text);
    imported.body
}

fn cancel_options(channel: &Channel) -> Value {
    match channel.reason_code {
        Some(code) => json!({"reason": "在庫切れ", "reason_code": code}),
        None => json!({"reason": "在庫切れ"}),
    }
}

async fn cancels_at(sim: &TestSim, channel: &Channel) -> Vec<Value> {
    let ledger = sim.whole_ledger().await;
    ledger[channel.kind]["cancels"].as_array().unwrap().clone()
}

async fn a_cancel_is_made_at_the_channel_once_with_its_reason(app: TestApp, channel: &Channel) {
    let sim = TestSim::start().await;
    let (shop, channel_id) = channel_shop(&app, &sim, channel, true).await;
    let order = channel_order(&app, &sim, &shop, &channel_id, channel, "M-1001", None).await;
    let id = order["id"].as_str().unwrap();
    let answer = app.cancel(&shop, id, cancel_options(channel)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["status"], "cancelled");
    assert_eq!(answer.body["cancellation"]["status"], "completed");
    assert_eq!(step(&answer.body, "channel_cancel")["status"], "succeeded");
    assert_eq!(
        answer.body["refunds"][0]["method"], "channel",
        "W6: the channel refunds what it collected"
    );
    assert_eq!(answer.body["total_refund_price"], "2600");
    let cancels = cancels_at(&sim, channel).await;
    assert_eq!(cancels.len(), 1, "exactly one cancel at {}: {cancels:?}", channel.kind);
    assert_eq!(cancels[0]["order_id"], "M-1001");
    match channel.reason_code {
        Some(code) => assert_eq!(cancels[0]["reason"], code, "the mapped reason code"),
        None => assert_eq!(cancels[0]["reason"], "在庫切れ"),
    }
    let cancellation_id = answer.body["cancellation"]["id"].as_str().unwrap();
    assert_eq!(
        cancels[0]["idempotency_key"],
        format!("rescind-{cancellation_id}-channel_cancel-0")
    );
    let history = app.get("/api/v1/sync_history?kind=cancel", &shop.token).await;
    assert_eq!(history.status, 200, "{}", history.text);
    let entry = &history.body["items"][0];
    assert_eq!(
        (entry["result"].as_str(), entry["order_id"].as_str()),
        (Some("ok"), Some(id)),
        "F5: {entry}"
    );
    assert!(entry["target"].as_str().unwrap().starts_with(channel.kind));
    assert!(entry["request"].as_str().unwrap().contains("M-1001"));
    assert_eq!(
        app.get("/api/v1/sync_history?kind=modify", &shop.token).await.body["items"],
        json!([])
    );
    let again = app.cancel(&shop, id, cancel_options(channel)).await;
    assert_eq!(again.code(), "already_cancelled");
    assert_eq!(cancels_at(&sim, channel).await.len(), 1);
    let undo = app
        .post(&format!("/api/v1/orders/{id}/uncancel"), &shop.token, json!({}))
        .await;
    assert_eq!((undo.status, undo.code()), (409, "cancellation_irreversible"), "C6");
}

async fn a_refusal_surfaces_the_channels_message_and_changes_nothing(app: TestApp, channel: &Channel) {
    let sim = TestSim::start().await;
    let (shop, channel_id) = channel_shop(&app, &sim, channel, true).await;
    let order = channel_order(
        &app,
        &sim,
        &shop,
        &channel_id,
        channel,
        "M-2001",
        Some(channel.refusing_status),
    )
    .await;
    let id = order["id"].as_str().unwrap();
    let answer = app.cancel(&shop, id, cancel_options(channel)).await;
    assert_eq!(
        (answer.status, answer.code()),
        (502, "channel_refused"),
        "{}",
        answer.text
    );
    assert!(
        answer.body["error"].as_str().unwrap().contains(channel.refusal_words),
        "{}",
        answer.text
    );
    let after = app.order_now(&shop, id).await;
    assert_eq!(
        (after["status"].as_str(), after["fulfillment_status"].as_str()),
        (Some("open"), Some("awaiting_shipment"))
    );
    assert_eq!(after["refunds"], json!([]));
    assert_eq!(after["cancellation"]["status"], "failed");
    assert_eq!(
        step(&after, "restock")["message"],
        "not run: the channel cancel did not succeed"
    );
    let history = app.get(&format!("/api/v1/orders/{id}/history"), &shop.token).await;
    let kinds: Vec<&str> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"step.channel_cancel") && kinds.contains(&"cancellation.failed"),
        "the attempt is recorded: {kinds:?}"
    );
    assert!(cancels_at(&sim, channel).await.is_empty());
    let history = app.get("/api/v1/sync_history", &shop.token).await;
    assert_eq!(
        history.body["items"][0]["result"], "error",
        "the refused call is in the sync history"
    );
    assert!(history.body["items"][0]["message"]
        .as_str()
        .unwrap()
        .contains(channel.refusal_words));

    let bulk = app
        .post(
            "/api/v1/orders/cancel",
            &shop.token,
            json!({"order_ids": [id], "reason_code": channel.reason_code}),
        )
        .await;
    let result = &bulk.body["results"][0];
    assert_eq!(
        (result["ok"].as_bool(), result["code"].as_str()),
        (Some(false), Some("channel_refused")),
        "{}",
        bulk.text
    );
    assert!(
        result["messages"][0].as_str().unwrap().starts_with("channel: ")
            && result["messages"][0].as_str().unwrap().contains(channel.refusal_words)
    );
}

async fn a_transient_failure_is_retried_until_the_channel_cancels(app: TestApp, channel: &Channel) {
    let sim = TestSim::start().await;
    let (shop, channel_id) = channel_shop(&app, &sim, channel, true).await;
    let order = channel_order(&app, &sim, &shop, &channel_id, channel, "M-3001", None).await;
    sim.set_faults(channel.cancel_endpoint, json!({"fail_first": 2})).await;
    let answer = app
        .cancel(&shop, order["id"].as_str().unwrap(), cancel_options(channel))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["status"], "cancelled");
    assert_eq!(
        step(&answer.body, "channel_cancel")["attempts"],
        3,
        "two failures, then the cancel"
    );
    assert_eq!(cancels_at(&sim, channel).await.len(), 1);
}

async fn an_order_already_cancelled_at_the_channel_is_cancelled_here_without_a_second_cancel(
    app: TestApp,
    channel: &Channel,
) {
    let sim = TestSim::start().await;
    let (shop, channel_id) = channel_shop(&app, &sim, channel, true).await;
    let order = channel_order(
        &app,
        &sim,
        &shop,
        &channel_id,
        channel,
        "M-4001",
        Some(channel.cancelled_status),
    )
    .await;
    let answer = app
        .cancel(&shop, order["id"].as_str().unwrap(), cancel_options(channel))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["status"], "cancelled");
    assert!(
        step(&answer.body, "channel_cancel")["message"]
            .as_str()
            .unwrap()
            .contains("already cancelled"),
        "{}",
        answer.text
    );
    assert!(
        cancels_at(&sim, channel).await.is_empty(),
        "the channel was not made to cancel twice"
    );
}

macro_rules! per_channel {
    ($($name:ident => $scenario:ident($channel:ident)),+ $(,)?) => {
        $(async fn $name(app: TestApp) { $scenario(app, &$channel).await })+
        crate::on_both_backends!($($name),+);
    };
}

per_channel!(
    shopify_cancels_once_with_its_reason => a_cancel_is_made_at_the_channel_once_with_its_reason(SHOPIFY),
    rakuten_cancels_once_with_its_reason => a_cancel_is_made_at_the_channel_once_with_its_reason(RAKUTEN),
    yahoo_cancels_once_with_its_reason => a_cancel_is_made_at_the_channel_once_with_its_reason(YAHOO),
    amazon_cancels_once_with_its_reason => a_cancel_is_made_at_the_channel_once_with_its_reason(AMAZON),
    shoplazza_cancels_once_with_its_reason => a_cancel_is_made_at_the_channel_once_with_its_reason(SHOPLAZZA),
    shopify_refusal_changes_nothing => a_refusal_surfaces_the_channels_message_and_changes_nothing(SHOPIFY),
    rakuten_refusal_changes_nothing => a_refusal_surfaces_the_channels_message_and_changes_nothing(RAKUTEN),
    yahoo_refusal_changes_nothing => a_refusal_surfaces_the_channels_message_and_changes_nothing(YAHOO),
    amazon_refusal_changes_nothing => a_refusal_surfaces_the_channels_message_and_changes_nothing(AMAZON),
    shoplazza_refusal_changes_nothing => a_refusal_surfaces_the_channels_message_and_changes_nothing(SHOPLAZZA),
    shopify_transient_failures_are_retried => a_transient_failure_is_retried_until_the_channel_cancels(SHOPIFY),
    rakuten_transient_failures_are_retried => a_transient_failure_is_retried_until_the_channel_cancels(RAKUTEN),
    yahoo_transient_failures_are_retried => a_transient_failure_is_retried_until_the_channel_cancels(YAHOO),
    amazon_transient_failures_are_retried => a_transient_failure_is_retried_until_the_channel_cancels(AMAZON),
    shoplazza_transient_failures_are_retried => a_transient_failure_is_retried_until_the_channel_cancels(SHOPLAZZA),
    shopify_already_cancelled_orders_are_not_cancelled_twice => an_order_already_cancelled_at_the_channel_is_cancelled_here_without_a_second_cancel(SHOPIFY),
    rakuten_already_cancelled_orders_are_not_cancelled_twice => an_order_already_cancelled_at_the_channel_is_cancelled_here_without_a_second_cancel(RAKUTEN),
    yahoo_already_cancelled_orders_are_not_cancelled_twice => an_order_already_cancelled_at_the_channel_is_cancelled_here_without_a_second_cancel(YAHOO),
    amazon_already_cancelled_orders_are_not_cancelled_twice => an_order_already_cancelled_at_the_channel_is_cancelled_here_without_a_second_cancel(AMAZON),
    shoplazza_already_cancelled_orders_are_not_cancelled_twice => an_order_already_cancelled_at_the_channel_is_cancelled_here_without_a_second_cancel(SHOPLAZZA),
);
