//! Partial cancellation (PRODUCT.md B1): some quantities of some lines, refunded with their share of
//! tax and discount, restocked by exactly what was cancelled; channels that cancel whole orders only
//! refuse it by name.

use crate::helpers::{order_body, step, TestApp, TestShop, TestSim};
use serde_json::{json, Value};

crate::on_both_backends!(
    partial_cancels_refund_each_lines_share_of_tax_and_discount_to_the_yen,
    a_partial_card_refund_reaches_the_provider_to_the_cent_and_the_dry_run_agrees,
    a_partial_cancel_restocks_exactly_the_cancelled_quantities,
    channels_that_cancel_whole_orders_refuse_a_partial_cancel_by_name,
    amazon_cancels_part_of_an_order_item_by_item_and_the_rest_still_ships,
    the_lines_of_a_partial_cancel_are_checked_against_the_order,
);

/// The id of the order's line with `sku`.
fn line_id(order: &Value, sku: &str) -> String {
    order["line_items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|line| line["sku"] == sku)
        .and_then(|line| line["id"].as_str())
        .unwrap_or_else(|| panic!("no line {sku} in {order}"))
        .to_owned()
}

fn cancelled_quantities(order: &Value) -> Vec<(String, u64)> {
    order["line_items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            (
                line["sku"].as_str().unwrap().to_owned(),
                line["cancelled_quantity"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn refund_amounts(order: &Value) -> Vec<String> {
    order["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|refund| refund["amount"].as_str().unwrap().to_owned())
        .collect()
}

async fn partial_cancels_refund_each_lines_share_of_tax_and_discount_to_the_yen(app: TestApp) {
    let shop = app.shop().await;
    // ¥5,000 of goods, ¥457 tax, ¥250 discount, ¥600 shipping: ¥5,807 paid.
    let order = app
        .order(
            &shop,
            json!({
                "line_items": [
                    {"sku": "TEA-001", "title": "Sencha", "quantity": 2, "price": "1000"},
                    {"sku": "POT-003", "title": "Kyusu", "quantity": 1, "price": "3000"}],
                "total_tax": "457", "total_discount": "250",
                "payment": {"method": "bank_transfer", "amount": "5807"},
            }),
        )
        .await;
    let id = order["id"].as_str().unwrap();
    let tea = line_id(&order, "TEA-001");
    let pot = line_id(&order, "POT-003");

    // One tea: ¥1,000 + ¥457 × 1000/5000 (¥91.4 → ¥91) − ¥250 × 1000/5000 (¥50) = ¥1,041.
    let first = app
        .cancel(
            &shop,
            id,
            json!({"line_items": [{"line_item_id": tea, "quantity": 1}], "refund_method": "store_credit"}),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["status"], "open", "the rest of the order still ships");
    assert_eq!(first.body["fulfillment_status"], "awaiting_shipment");
    assert_eq!(first.body["financial_status"], "partially_refunded");
    assert_eq!(first.body["cancellation"]["scope"], "lines");
    assert_eq!(first.body["cancellation"]["status"], "completed");
    assert_eq!(
        first.body["cancellation"]["line_items"],
        json!([{"line_item_id": tea, "sku": "TEA-001", "quantity": 1}])
    );
    assert_eq!(refund_amounts(&first.body), ["1041"]);
    assert_eq!(
        cancelled_quantities(&first.body),
        [("TEA-001".to_owned(), 1), ("POT-003".to_owned(), 0)]
    );

    // The pot: shares are of everything cancelled so far (¥4,000: tax ¥365.6 → ¥366, discount ¥200)
    // minus what the tea took, so rounding never drifts: ¥4,166 − ¥1,041 = ¥3,125.
    let second = app
        .cancel(
            &shop,
            id,
            json!({"line_items": [{"line_item_id": pot, "quantity": 1}], "refund_method": "store_credit"}),
        )
        .await;
    assert_eq!(second.status, 200, "{}", second.text);
    assert_eq!(second.body["status"], "open");
    assert_eq!(refund_amounts(&second.body), ["1041", "3125"]);

    // The last tea leaves nothing of the order: it is the whole order now, and shipping goes back
    // with it — exactly what is left of ¥5,807.
    let plan = app
        .cancel(
            &shop,
            id,
            json!({"line_items": [{"line_item_id": tea, "quantity": 1}], "refund_method": "store_credit", "dry_run": true}),
        )
        .await;
    assert_eq!(
        plan.body["plan"]["refund_amount"], "1641",
        "¥1,000 + ¥91 − ¥50 + ¥600 shipping"
    );
    assert_eq!(plan.body["plan"]["line_items"], json!([]), "the whole order");
    let last = app
        .cancel(
            &shop,
            id,
            json!({"line_items": [{"line_item_id": tea, "quantity": 1}], "refund_method": "store_credit"}),
        )
        .await;
    assert_eq!(last.status, 200, "{}", last.text);
    assert_eq!(last.body["status"], "cancelled");
    assert_eq!(last.body["financial_status"], "refunded");
    assert_eq!(last.body["cancellation"]["scope"], "order");
    assert_eq!(refund_amounts(&last.body), ["1041", "3125", "1641"]);
    assert_eq!(last.body["total_refund_price"], "5807");
    assert_eq!(
        cancelled_quantities(&last.body),
        [("TEA-001".to_owned(), 2), ("POT-003".to_owned(), 1)]
    );
    let again = app
        .cancel(&shop, id, json!({"line_items": [{"line_item_id": tea, "quantity": 1}]}))
        .await;
    assert_eq!((again.status, again.code()), (409, "already_cancelled"));

    let history = app.get(&format!("/api/v1/orders/{id}/history"), &shop.token).await;
    let lines_cancelled = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["kind"] == "order.lines_cancelled")
        .count();
    assert_eq!(lines_cancelled, 2, "{}", history.text);
}

async fn a_partial_card_refund_reaches_the_provider_to_the_cent_and_the_dry_run_agrees(app: TestApp) {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    let provider = app.stripe(&shop, &sim).await;
    // $64.97 of goods, $5.20 tax, $6.50 discount, $4.99 shipping: $68.66 charged.
    let payment = sim.payment(6866, "usd", "succeeded").await;
    let order = app
        .card_order(
            &shop,
            &provider,
            &payment,
            json!({
                "currency": "USD",
                "line_items": [
                    {"sku": "MUG-010", "title": "Mug", "quantity": 3, "price": "19.99"},
                    {"sku": "SPN-011", "title": "Spoon", "quantity": 1, "price": "5.00"}],
                "total_shipping": "4.99", "total_tax": "5.20", "total_discount": "6.50",
                "payment": {"method": "credit_card", "amount": "68.66", "provider_id": provider, "reference": payment},
            }),
        )
        .await;
    let id = order["id"].as_str().unwrap();
    let mug = line_id(&order, "MUG-010");
    let spoon = line_id(&order, "SPN-011");

    // One mug: $19.99 + $5.20 × 19.99/64.97 ($1.5999… → $1.60) − $6.50 × 19.99/64.97 ($1.9999… → $2.00).
    let one_mug = json!({"line_items": [{"line_item_id": mug, "quantity": 1}]});
    let plan = app
        .cancel(&shop, id, json!({"line_items": one_mug["line_items"], "dry_run": true}))
        .await;
    assert_eq!(plan.status, 200, "{}", plan.text);
    assert_eq!(plan.body["plan"]["refund_amount"], "19.59");
    assert_eq!(
        plan.body["plan"]["line_items"],
        json!([{"line_item_id": mug, "sku": "MUG-010", "quantity": 1}])
    );
    let cancelled = app.cancel(&shop, id, one_mug).await;
    assert!(cancelled.status == 200 || cancelled.status == 202, "{}", cancelled.text);
    let order_now = app
        .wait_for_order(&shop, id, 10, |order| order["cancellation"]["status"] == "completed")
        .await;
    assert_eq!(order_now["status"], "open");
    assert_eq!(order_now["financial_status"], "partially_refunded");
    assert_eq!(step(&order_now, "refund")["status"], "succeeded");
    let refunds = sim.refunds_of(&payment).await;
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0]["amount"], 1959, "the provider refunded $19.59 in cents");

    // The rest (two mugs and the spoon) is the whole order: what is left of $68.66, shipping included.
    let rest = json!({"line_items": [{"line_item_id": mug, "quantity": 2}, {"line_item_id": spoon, "quantity": 1}]});
    let plan = app
        .cancel(&shop, id, json!({"line_items": rest["line_items"], "dry_run": true}))
        .await;
    assert_eq!(plan.body["plan"]["refund_amount"], "49.07");
    app.cancel(&shop, id, rest).await;
    let order_now = app
        .wait_for_order(&shop, id, 10, |order| order["cancellation"]["status"] == "completed")
        .await;
    assert_eq!(order_now["status"], "cancelled");
    assert_eq!(order_now["financial_status"], "refunded");
    let amounts: Vec<Value> = sim
        .refunds_of(&payment)
        .await
        .iter()
        .map(|refund| refund["amount"].clone())
        .collect();
    assert_eq!(amounts, [json!(1959), json!(4907)], "refunded once each, $68.66 in all");
}

async fn a_partial_cancel_restocks_exactly_the_cancelled_quantities(app: TestApp) {
    let shop = app.shop().await;
    app.set_stock(&shop, "TEA-001", 10).await;
    app.set_stock(&shop, "CUP-002", 10).await;
    let order = app.order(&shop, json!({"deduct_inventory": true})).await;
    let id = order["id"].as_str().unwrap();
    let cup = line_id(&order, "CUP-002");
    assert_eq!(
        (app.stock(&shop, "TEA-001").await, app.stock(&shop, "CUP-002").await),
        (9, 8)
    );

    let plan = app
        .cancel(
            &shop,
            id,
            json!({"line_items": [{"line_item_id": cup, "quantity": 1}], "refund_method": "store_credit", "dry_run": true}),
        )
        .await;
    assert_eq!(plan.body["plan"]["restock"], json!([{"sku": "CUP-002", "quantity": 1}]));
    let one_cup = app
        .cancel(
            &shop,
            id,
            json!({"line_items": [{"line_item_id": cup, "quantity": 1}], "refund_method": "store_credit"}),
        )
        .await;
    assert_eq!(one_cup.status, 200, "{}", one_cup.text);
    assert_eq!(step(&one_cup.body, "restock")["message"], "restocked CUP-002 × 1");
    assert_eq!(
        (app.stock(&shop, "TEA-001").await, app.stock(&shop, "CUP-002").await),
        (9, 9),
        "only the cancelled cup went back"
    );

    let whole = app.cancel(&shop, id, json!({"refund_method": "store_credit"})).await;
    assert_eq!(whole.status, 200, "{}", whole.text);
    assert_eq!(
        step(&whole.body, "restock")["message"],
        "restocked TEA-001 × 1, CUP-002 × 1",
        "the rest of the snapshot, not the order's lines again"
    );
    assert_eq!(
        (app.stock(&shop, "TEA-001").await, app.stock(&shop, "CUP-002").await),
        (10, 10)
    );
    let restocks = app.get("/api/v1/sync_history?kind=restock", &shop.token).await;
    assert_eq!(restocks.body["items"].as_array().unwrap().len(), 2, "{}", restocks.text);

    let undo = app
        .post(&format!("/api/v1/orders/{id}/uncancel"), &shop.token, json!({}))
        .await;
    assert_eq!(
        (undo.status, undo.code()),
        (409, "cancellation_irreversible"),
        "lines refunded by their share are not put back by an undo: {}",
        undo.text
    );
}

async fn channel_with_order(app: &TestApp, sim: &TestSim, kind: &str) -> (TestShop, Value) {
    let shop = app.shop().await;
    let channel_id = app.sim_channel(&shop, sim, kind).await;
    let external_id = format!("{kind}-order-1");
    let created = app
        .client
        .post(format!("{}/_sim/{kind}/orders", sim.url()))
        .json(&json!({"id": external_id, "items": ["item-1", "item-2"]}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success());
    let imported = app
        .post(
            "/api/v1/orders",
            &shop.token,
            order_body(
                &channel_id,
                json!({
                    "channel_order_id": external_id,
                    "line_items": [
                        {"sku": "TEA-001", "title": "Sencha", "quantity": 1, "price": "1000", "channel_line_item_id": "item-1"},
                        {"sku": "CUP-002", "title": "Yunomi", "quantity": 2, "price": "500", "channel_line_item_id": "item-2"}],
                    "payment": {"method": "channel", "amount": "2600"},
                }),
            ),
        )
        .await;
    assert_eq!(imported.status, 201, "{}", imported.text);
    (shop, imported.body)
}

async fn channel_cancels(sim: &TestSim, kind: &str) -> Vec<Value> {
    let ledger = sim.whole_ledger().await;
    ledger[kind]["cancels"].as_array().cloned().unwrap_or_default()
}

async fn channels_that_cancel_whole_orders_refuse_a_partial_cancel_by_name(app: TestApp) {
    let sim = TestSim::start().await;
    for (kind, reason) in [("yahoo", "210"), ("rakuten", "8"), ("shopify", "CUSTOMER")] {
        let (shop, order) = channel_with_order(&app, &sim, kind).await;
        let id = order["id"].as_str().unwrap();
        let cup = line_id(&order, "CUP-002");
        let refused = app
            .cancel(
                &shop,
                id,
                json!({"line_items": [{"line_item_id": cup, "quantity": 1}], "reason_code": reason}),
            )
            .await;
        assert_eq!(
            (refused.status, refused.code()),
            (409, "partial_cancel_unsupported"),
            "{kind}: {}",
            refused.text
        );
        assert!(
            refused.body["error"].as_str().unwrap().contains(kind),
            "{}",
            refused.text
        );
        let unchanged = app.order_now(&shop, id).await;
        assert_eq!(unchanged["status"], "open");
        assert!(unchanged["cancellation"].is_null(), "{kind}: nothing was started");
        assert!(channel_cancels(&sim, kind).await.is_empty(), "{kind} was not called");

        // Every line, all of it: that is the whole order, which the channel can cancel.
        let tea = line_id(&order, "TEA-001");
        let whole = app
            .cancel(
                &shop,
                id,
                json!({"line_items": [{"line_item_id": tea, "quantity": 1}, {"line_item_id": cup, "quantity": 2}],
                       "reason_code": reason}),
            )
            .await;
        assert_eq!(whole.status, 200, "{kind}: {}", whole.text);
        assert_eq!(whole.body["status"], "cancelled");
        assert_eq!(
            channel_cancels(&sim, kind).await.len(),
            1,
            "{kind} cancelled the whole order once"
        );
    }
}

async fn amazon_cancels_part_of_an_order_item_by_item_and_the_rest_still_ships(app: TestApp) {
    let sim = TestSim::start().await;
    let (shop, order) = channel_with_order(&app, &sim, "amazon").await;
    let id = order["id"].as_str().unwrap();
    let cup = line_id(&order, "CUP-002");
    let answer = app
        .cancel(
            &shop,
            id,
            json!({"line_items": [{"line_item_id": cup, "quantity": 1}], "reason_code": "NoInventory"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["status"], "open");
    assert_eq!(answer.body["cancellation"]["status"], "completed");
    assert_eq!(step(&answer.body, "channel_cancel")["status"], "succeeded");
    assert_eq!(
        refund_amounts(&answer.body),
        ["500"],
        "Amazon refunds the one cup it collected"
    );

    let cancels = channel_cancels(&sim, "amazon").await;
    assert_eq!(cancels.len(), 1);
    assert_eq!(
        cancels[0]["parameters"]["items"],
        json!([{"code": "item-2", "quantity": "1"}]),
        "only the cancelled item, with its quantity"
    );
    let ledger = sim.whole_ledger().await;
    assert_eq!(
        ledger["amazon"]["orders"][0]["status"], "Unshipped",
        "the rest still ships at Amazon"
    );
}

async fn the_lines_of_a_partial_cancel_are_checked_against_the_order(app: TestApp) {
    let shop = app.shop().await;
    let order = app.order(&shop, json!({})).await;
    let id = order["id"].as_str().unwrap();
    let cup = line_id(&order, "CUP-002");
    for (lines, field) in [
        (
            json!([{"line_item_id": "li_nope", "quantity": 1}]),
            "line_items[0].line_item_id",
        ),
        (json!([{"line_item_id": cup, "quantity": 3}]), "line_items[0].quantity"),
        (json!([{"line_item_id": cup, "quantity": 0}]), "line_items[0].quantity"),
        (json!([{"line_item_id": cup}]), "line_items[0].quantity"),
        (json!([{"quantity": 1}]), "line_items[0].line_item_id"),
        (
            json!([{"line_item_id": cup, "quantity": 1}, {"line_item_id": cup, "quantity": 1}]),
            "line_items[1].line_item_id",
        ),
        (json!([]), "line_items"),
    ] {
        let answer = app
            .cancel(&shop, id, json!({"line_items": lines, "refund_method": "store_credit"}))
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, "invalid_request"),
            "{lines}: {}",
            answer.text
        );
        assert!(
            answer.body["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|error| error.as_str().unwrap().starts_with(field)),
            "{lines} names {field}: {}",
            answer.text
        );
    }
    assert!(
        app.order_now(&shop, id).await["cancellation"].is_null(),
        "nothing was started"
    );

    let first = app
        .cancel(
            &shop,
            id,
            json!({"line_items": [{"line_item_id": cup, "quantity": 1}], "refund_method": "store_credit"}),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text);
    let too_many = app
        .cancel(
            &shop,
            id,
            json!({"line_items": [{"line_item_id": cup, "quantity": 2}], "refund_method": "store_credit"}),
        )
        .await;
    assert_eq!(too_many.status, 400);
    assert!(too_many.text.contains("has 1 left to cancel"), "{}", too_many.text);
}
