//! Cancelling own-store orders: C1–C3, C5, C7, W1–W5, W8 and the dry run (B2).

use crate::helpers::{step, TestApp, TestShop};
use serde_json::{json, Value};

crate::on_both_backends!(
    orders_awaiting_payment_allocation_confirmation_or_shipment_can_be_cancelled,
    shipped_or_delivered_orders_must_be_handled_as_returns,
    an_order_in_the_warehouses_hands_is_refused_without_a_warehouse_integration,
    a_packed_order_is_refused_and_the_answer_says_the_goods_will_ship,
    cancelling_an_order_twice_changes_nothing_and_refunds_nothing_twice,
    the_cancellation_records_who_why_how_and_its_steps_in_order,
    a_bank_transfer_refund_keeps_the_cancellation_awaiting_refund_until_recorded,
    an_order_with_nothing_to_refund_completes_at_once,
    points_paid_part_goes_back_as_points_and_the_rest_by_the_chosen_method,
    refunding_to_the_original_payment_needs_a_payment_provider,
    a_bulk_cancel_answers_one_result_per_order_in_the_order_given,
    a_bulk_cancel_of_more_than_1000_orders_is_refused,
    a_dry_run_shows_the_plan_and_changes_nothing,
    fifty_concurrent_cancels_of_one_order_make_one_cancellation_and_one_refund,
    cancels_sharing_a_transaction_each_get_their_own_answer,
    the_history_records_every_change_with_actor_and_time,
    cancel_options_of_the_wrong_type_or_unknown_are_refused,
);

async fn orders_awaiting_payment_allocation_confirmation_or_shipment_can_be_cancelled(app: TestApp) {
    let shop = app.shop().await;
    for status in [
        "awaiting_payment",
        "awaiting_allocation",
        "awaiting_confirmation",
        "awaiting_shipment",
    ] {
        let order = app.order(&shop, json!({"fulfillment_status": status})).await;
        let answer = app
            .cancel(
                &shop,
                order["id"].as_str().unwrap(),
                json!({"reason": "changed mind", "refund_method": "store_credit"}),
            )
            .await;
        assert_eq!(answer.status, 200, "{status}: {}", answer.text);
        assert_eq!(answer.body["status"], "cancelled");
        assert_eq!(answer.body["fulfillment_status"], "cancelled");
        assert_eq!(answer.body["cancel_reason"], "changed mind");
        assert!(answer.body["canceled_at"].is_string());
        assert_eq!(answer.body["cancellation"]["status"], "completed");
        assert_eq!(answer.body["line_items"][1]["cancelled_quantity"], 2);
    }
}

async fn shipped_or_delivered_orders_must_be_handled_as_returns(app: TestApp) {
    let shop = app.shop().await;
    for status in ["shipped", "delivered"] {
        let order = app.order(&shop, json!({"fulfillment_status": status})).await;
        let id = order["id"].as_str().unwrap();
        let answer = app.cancel(&shop, id, json!({"refund_method": "store_credit"})).await;
        assert_eq!((answer.status, answer.code()), (409, "return_required"), "{status}");
        assert!(answer.body["error"].as_str().unwrap().contains("return"));
        let after = app.order_now(&shop, id).await;
        assert_eq!(
            (after["status"].as_str(), after["total_refund_price"].as_str()),
            (Some("open"), Some("0"))
        );
        assert_eq!(after["cancellation"], Value::Null);
    }
}

async fn an_order_in_the_warehouses_hands_is_refused_without_a_warehouse_integration(app: TestApp) {
    let shop = app.shop().await;
    let order = app.order(&shop, json!({"fulfillment_status": "in_progress"})).await;
    let answer = app.cancel(&shop, order["id"].as_str().unwrap(), json!({})).await;
    assert_eq!((answer.status, answer.code()), (409, "order_not_cancellable"));
    assert_eq!(
        app.order_now(&shop, order["id"].as_str().unwrap()).await["status"],
        "open"
    );
}

async fn a_packed_order_is_refused_and_the_answer_says_the_goods_will_ship(app: TestApp) {
    let shop = app.shop().await;
    let order = app.order(&shop, json!({"fulfillment_status": "packed"})).await;
    let answer = app.cancel(&shop, order["id"].as_str().unwrap(), json!({})).await;
    assert_eq!((answer.status, answer.code()), (409, "order_not_cancellable"));
    let message = answer.body["error"].as_str().unwrap();
    assert!(
        message.contains("will ship") && message.contains("refuse delivery"),
        "C5 explains: {message}"
    );
}

async fn cancelling_an_order_twice_changes_nothing_and_refunds_nothing_twice(app: TestApp) {
    let shop = app.shop().await;
    let order = app.order(&shop, json!({})).await;
    let id = order["id"].as_str().unwrap();
    let first = app.cancel(&shop, id, json!({"refund_method": "store_credit"})).await;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(first.body["total_refund_price"], "2600");
    let second = app.cancel(&shop, id, json!({"refund_method": "store_credit"})).await;
    assert_eq!((second.status, second.code()), (409, "already_cancelled"));
    assert!(second.body["error"].as_str().unwrap().contains("nothing was changed"));
    let after = app.order_now(&shop, id).await;
    assert_eq!(after["refunds"].as_array().unwrap().len(), 1);
    assert_eq!(after["total_refund_price"], "2600");
    assert_eq!(after["financial_status"], "refunded");
    assert_eq!(after["cancellation"]["id"], first.body["cancellation"]["id"]);
}

async fn the_cancellation_records_who_why_how_and_its_steps_in_order(app: TestApp) {
    let shop = app.shop().await;
    let order = app.order(&shop, json!({})).await;
    let answer = app
        .cancel(
            &shop,
            order["id"].as_str().unwrap(),
            json!({"reason": "お客様都合", "reason_code": "customer", "staff_note": "電話で依頼", "refund_method": "store_credit",
                   "restock": false, "notify_customer": false}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let cancellation = &answer.body["cancellation"];
    assert_eq!(cancellation["requested_by"], "merchant");
    assert_eq!(cancellation["reason"], "お客様都合");
    assert_eq!(cancellation["reason_code"], "customer");
    assert_eq!(cancellation["staff_note"], "電話で依頼");
    assert_eq!(cancellation["refund_method"], "store_credit");
    assert_eq!(cancellation["restock"], false);
    assert_eq!(cancellation["notify_customer"], false);
    assert_eq!(cancellation["needs_attention"], false);
    assert!(cancellation["completed_at"].is_string());
    let kinds: Vec<&str> = cancellation["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["channel_cancel", "warehouse_cancel", "refund", "restock", "notify"],
        "W2's order"
    );
    assert_eq!(step(&answer.body, "channel_cancel")["status"], "skipped");
    assert_eq!(
        step(&answer.body, "warehouse_cancel")["message"],
        "skipped: no warehouse handles this order"
    );
    assert_eq!(step(&answer.body, "refund")["status"], "succeeded");
    assert_eq!(step(&answer.body, "refund")["attempts"], 1);
    assert_eq!(step(&answer.body, "restock")["message"], "skipped: not requested");
    assert_eq!(step(&answer.body, "notify")["message"], "skipped: not requested");
}

async fn a_bank_transfer_refund_keeps_the_cancellation_awaiting_refund_until_recorded(app: TestApp) {
    let shop = app.shop().await;
    let order = app.order(&shop, json!({})).await;
    let id = order["id"].as_str().unwrap();
    let cancelled = app.cancel(&shop, id, json!({"refund_method": "bank_transfer"})).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    assert_eq!(cancelled.body["status"], "cancelled", "W4: it will not ship");
    assert!(cancelled.body["canceled_at"].is_string());
    assert_eq!(cancelled.body["cancellation"]["status"], "awaiting_refund");
    assert_eq!(cancelled.body["cancellation"]["completed_at"], Value::Null);
    assert_eq!(step(&cancelled.body, "refund")["status"], "waiting");
    assert_eq!(cancelled.body["financial_status"], "paid");

    let part = app
        .post(
            &format!("/api/v1/orders/{id}/refunds"),
            &shop.token,
            json!({"amount": "1000", "method": "bank_transfer", "note": "振込1回目"}),
        )
        .await;
    assert_eq!(part.status, 201, "{}", part.text);
    assert_eq!(part.body["amount"], "1000");
    assert_eq!(part.body["order"]["financial_status"], "partially_refunded");
    assert_eq!(part.body["order"]["cancellation"]["status"], "awaiting_refund");

    let rest = app
        .post(
            &format!("/api/v1/orders/{id}/refunds"),
            &shop.token,
            json!({"amount": "1600", "method": "bank_transfer"}),
        )
        .await;
    assert_eq!(rest.status, 201, "{}", rest.text);
    let after = &rest.body["order"];
    assert_eq!(after["cancellation"]["status"], "completed");
    assert!(after["cancellation"]["completed_at"].is_string());
    assert_eq!(after["financial_status"], "refunded");
    assert_eq!(after["total_refund_price"], "2600");
    assert_eq!(step(after, "refund")["status"], "succeeded");
    assert_eq!(after["warnings"], json!([]), "no W9 warning on a cancelled order");
}

async fn an_order_with_nothing_to_refund_completes_at_once(app: TestApp) {
    let shop = app.shop().await;
    let free = app
        .order(&shop, json!({"line_items": [{"sku": "GIFT", "title": "Sample", "quantity": 1, "price": "0"}], "total_shipping": "0", "payment": null, "financial_status": "pending"}))
        .await;
    let answer = app
        .cancel(
            &shop,
            free["id"].as_str().unwrap(),
            json!({"refund_method": "bank_transfer"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(
        answer.body["cancellation"]["status"], "completed",
        "W5: a zero total completes at once"
    );
    assert_eq!(answer.body["refunds"], json!([]));

    let by_points = app
        .order(&shop, json!({"payment": {"method": "points", "amount": "2600"}}))
        .await;
    let answer = app.cancel(&shop, by_points["id"].as_str().unwrap(), json!({})).await;
    assert_eq!(
        answer.body["cancellation"]["status"], "completed",
        "W5: paid entirely with points"
    );
    assert_eq!(answer.body["refunds"][0]["method"], "points");
    assert_eq!(answer.body["refunds"][0]["amount"], "2600");

    let unpaid = app
        .order(
            &shop,
            json!({"financial_status": "pending", "fulfillment_status": "awaiting_payment"}),
        )
        .await;
    let answer = app.cancel(&shop, unpaid["id"].as_str().unwrap(), json!({})).await;
    assert_eq!(answer.body["cancellation"]["status"], "completed");
    assert_eq!(answer.body["financial_status"], "voided");
    assert_eq!(step(&answer.body, "refund")["message"], "skipped: nothing was paid");
}

async fn points_paid_part_goes_back_as_points_and_the_rest_by_the_chosen_method(app: TestApp) {
    let shop = app.shop().await;
    let order = app
        .order(
            &shop,
            json!({"payment": {"method": "bank_transfer", "amount": "2000", "points_amount": "600"}}),
        )
        .await;
    assert_eq!(order["total_paid"], "2600");
    let answer = app
        .cancel(
            &shop,
            order["id"].as_str().unwrap(),
            json!({"refund_method": "store_credit"}),
        )
        .await;
    let refunds: Vec<(&str, &str)> = answer.body["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|refund| (refund["method"].as_str().unwrap(), refund["amount"].as_str().unwrap()))
        .collect();
    assert_eq!(refunds, [("points", "600"), ("store_credit", "2000")]);
    assert_eq!(answer.body["cancellation"]["status"], "completed");
}

async fn refunding_to_the_original_payment_needs_a_payment_provider(app: TestApp) {
    let shop = app.shop().await;
    let order = app
        .order(&shop, json!({"payment": {"method": "credit_card", "amount": "2600"}}))
        .await;
    let id = order["id"].as_str().unwrap();
    let answer = app.cancel(&shop, id, json!({})).await;
    assert_eq!(
        (answer.status, answer.code()),
        (409, "payment_provider_required"),
        "credit cards refund to the original payment by default"
    );
    let explicit = app
        .cancel(&shop, id, json!({"refund_method": "original_payment"}))
        .await;
    assert_eq!(explicit.code(), "payment_provider_required");
    assert_eq!(app.order_now(&shop, id).await["status"], "open", "nothing changed");
    let channel = app.cancel(&shop, id, json!({"refund_method": "channel"})).await;
    assert_eq!(
        (channel.status, channel.code()),
        (400, "invalid_request"),
        "an own store has no channel to refund"
    );
}

async fn a_bulk_cancel_answers_one_result_per_order_in_the_order_given(app: TestApp) {
    let shop = app.shop().await;
    let first = app.order(&shop, json!({})).await;
    let shipped = app.order(&shop, json!({"fulfillment_status": "shipped"})).await;
    let last = app
        .order(
            &shop,
            json!({"fulfillment_status": "awaiting_payment", "financial_status": "pending"}),
        )
        .await;
    let ids = [
        first["id"].as_str().unwrap(),
        shipped["id"].as_str().unwrap(),
        "ord_missing",
        last["id"].as_str().unwrap(),
    ];
    let answer = app
        .post(
            "/api/v1/orders/cancel",
            &shop.token,
            json!({"order_ids": ids, "reason": "在庫切れ", "refund_method": "store_credit"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let results = answer.body["results"].as_array().unwrap();
    let order_ids: Vec<&str> = results
        .iter()
        .map(|result| result["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(order_ids, ids, "results come in the order given");
    assert_eq!(results[0]["ok"], true);
    assert_eq!(results[0]["status"], "cancelled");
    assert_eq!(results[0]["number"], first["number"]);
    assert_eq!(
        results[0]["messages"],
        json!([
            "channel: skipped: own store order, cancelled in rescind",
            "restock: not run: stock was never deducted for this order"
        ])
    );
    assert_eq!(
        (
            results[1]["ok"].as_bool(),
            results[1]["code"].as_str(),
            results[1]["status"].as_str()
        ),
        (Some(false), Some("return_required"), Some("open"))
    );
    assert_eq!(results[1]["messages"].as_array().unwrap().len(), 2);
    assert_eq!(
        (results[2]["ok"].as_bool(), results[2]["code"].as_str()),
        (Some(false), Some("not_found"))
    );
    assert_eq!(results[3]["ok"], true, "one order's failure never stops the others");
    assert_eq!(app.order_now(&shop, ids[3]).await["status"], "cancelled");
    assert_eq!(app.order_now(&shop, ids[0]).await["cancel_reason"], "在庫切れ");

    let repeated = app
        .post(
            "/api/v1/orders/cancel",
            &shop.token,
            json!({"order_ids": [ids[0], ids[0]], "refund_method": "store_credit"}),
        )
        .await;
    let codes: Vec<&str> = repeated.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["already_cancelled", "already_cancelled"]);
    assert_eq!(
        app.order_now(&shop, ids[0]).await["refunds"].as_array().unwrap().len(),
        1
    );
}

async fn a_bulk_cancel_of_more_than_1000_orders_is_refused(app: TestApp) {
    let shop = app.shop().await;
    let ids: Vec<String> = (0..1001).map(|index| format!("ord_{index}")).collect();
    let answer = app
        .post("/api/v1/orders/cancel", &shop.token, json!({"order_ids": ids}))
        .await;
    assert_eq!((answer.status, answer.code()), (400, "invalid_request"));
    assert!(answer.body["errors"][0].as_str().unwrap().contains("at most 1000"));
    let empty = app
        .post("/api/v1/orders/cancel", &shop.token, json!({"order_ids": []}))
        .await;
    assert_eq!(empty.status, 400);
}

async fn a_dry_run_shows_the_plan_and_changes_nothing(app: TestApp) {
    let shop = app.shop().await;
    let order = app.order(&shop, json!({})).await;
    let id = order["id"].as_str().unwrap();
    let answer = app
        .cancel(&shop, id, json!({"dry_run": true, "refund_method": "bank_transfer"}))
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let plan = &answer.body["plan"];
    assert_eq!(plan["refund_amount"], "2600");
    let kinds: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["channel_cancel", "warehouse_cancel", "refund", "restock", "notify"]
    );
    assert_eq!(
        plan["steps"][2]["action"],
        "waiting for the bank transfer of 2600 to be recorded"
    );
    assert_eq!(plan["warnings"], json!([]));
    let after = app.order_now(&shop, id).await;
    assert_eq!(after, order, "a dry run changes nothing");
    assert_eq!(
        app.get(&format!("/api/v1/orders/{id}/history"), &shop.token).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let shipped = app.order(&shop, json!({"fulfillment_status": "shipped"})).await;
    let refused = app
        .cancel(&shop, shipped["id"].as_str().unwrap(), json!({"dry_run": true}))
        .await;
    assert_eq!(
        refused.code(),
        "return_required",
        "a dry run refuses what the cancel would refuse"
    );
}

async fn fifty_concurrent_cancels_of_one_order_make_one_cancellation_and_one_refund(app: TestApp) {
    let shop = app.shop().await;
    let order = app.order(&shop, json!({})).await;
    let id = order["id"].as_str().unwrap().to_owned();
    let answers = cancel_all_at_once(&app, &shop, vec![id.clone(); 50]).await;
    let mut succeeded = 0;
    for (status, code) in answers {
        match status {
            200 => succeeded += 1,
            409 => assert_eq!(code.as_deref(), Some("already_cancelled")),
            other => panic!("unexpected answer {other} {code:?}"),
        }
    }
    assert_eq!(succeeded, 1, "exactly one cancel wins");
    let after = app.order_now(&shop, &id).await;
    assert_eq!(after["refunds"].as_array().unwrap().len(), 1, "one refund");
    assert_eq!(after["total_refund_price"], "2600");
    let history = app.get(&format!("/api/v1/orders/{id}/history"), &shop.token).await;
    let created = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["kind"] == "cancellation.created")
        .count();
    assert_eq!(created, 1);
}

async fn the_history_records_every_change_with_actor_and_time(app: TestApp) {
    let shop = app.shop().await;
    let order = app.order(&shop, json!({})).await;
    let id = order["id"].as_str().unwrap();
    app.cancel(
        &shop,
        id,
        json!({"refund_method": "bank_transfer", "reason": "duplicate order"}),
    )
    .await;
    app.post(
        &format!("/api/v1/orders/{id}/refunds"),
        &shop.token,
        json!({"amount": "2600", "method": "bank_transfer"}),
    )
    .await;
    let history = app.get(&format!("/api/v1/orders/{id}/history"), &shop.token).await;
    assert_eq!(history.status, 200);
    let items = history.body["items"].as_array().unwrap();
    let kinds: Vec<&str> = items.iter().map(|entry| entry["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "order.imported",
            "cancellation.created",
            "step.channel_cancel",
            "step.warehouse_cancel",
            "step.refund",
            "step.restock",
            "step.notify",
            "order.cancelled",
            "cancellation.awaiting_refund",
            "refund.recorded",
            "cancellation.completed",
        ],
        "oldest first"
    );
    for entry in items {
        assert!(entry["actor"].as_str().unwrap().starts_with("token:tok_"), "{entry}");
        assert!(entry["at"].as_str().unwrap().ends_with('Z'));
        assert!(!entry["message"].as_str().unwrap().is_empty());
    }
    assert!(items[1]["message"].as_str().unwrap().contains("duplicate order"));
    assert_eq!(items[9]["data"]["amount"], "2600");
}

async fn cancel_options_of_the_wrong_type_or_unknown_are_refused(app: TestApp) {
    let shop = app.shop().await;
    let order = app.order(&shop, json!({})).await;
    let id = order["id"].as_str().unwrap();
    for body in [
        json!({"refund": "yes"}),
        json!({"refund_method": "cash"}),
        json!({"restok": true}),
        json!({"reason": "x".repeat(1001)}),
    ] {
        let answer = app.cancel(&shop, id, body.clone()).await;
        assert_eq!((answer.status, answer.code()), (400, "invalid_request"), "{body}");
    }
    let partial = app
        .cancel(
            &shop,
            id,
            json!({"line_items": [{"line_item_id": "li_1", "quantity": 1}]}),
        )
        .await;
    assert_eq!(
        partial.status, 400,
        "partial cancellation is refused rather than done in full"
    );
    assert_eq!(app.order_now(&shop, id).await["status"], "open");
    let unknown = app.cancel(&shop, "ord_nope", json!({})).await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
}

async fn cancels_sharing_a_transaction_each_get_their_own_answer(app: TestApp) {
    // On SQLite concurrent cancels are committed together (group commit): a refusal or an unknown
    // order among them changes nothing for the others.
    let shop = app.shop().await;
    let mut ids = Vec::new();
    for _ in 0..40 {
        ids.push(app.order(&shop, json!({})).await["id"].as_str().unwrap().to_owned());
    }
    let targets: Vec<String> = ids
        .iter()
        .chain(ids.iter())
        .cloned()
        .chain((0..20).map(|index| format!("ord_missing{index}")))
        .collect();
    let mut answers = std::collections::BTreeMap::new();
    for (status, _) in cancel_all_at_once(&app, &shop, targets).await {
        *answers.entry(status).or_insert(0) += 1;
    }
    assert_eq!(
        answers,
        std::collections::BTreeMap::from([(200, 40), (404, 20), (409, 40)])
    );
    for id in &ids {
        let order = app.order_now(&shop, id).await;
        assert_eq!(order["status"], "cancelled");
        assert_eq!(order["refunds"].as_array().unwrap().len(), 1, "{order}");
    }
}

/// Cancels each of `order_ids` from its own client, all at once: every client connects first and then
/// all send together, so the requests truly overlap. Answers each status and error code.
async fn cancel_all_at_once(app: &TestApp, shop: &TestShop, order_ids: Vec<String>) -> Vec<(u16, Option<String>)> {
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(order_ids.len()));
    let attempts: Vec<_> = order_ids
        .into_iter()
        .map(|id| {
            let client = reqwest::Client::new();
            let health = app.url("/healthz");
            let url = app.url(&format!("/api/v1/orders/{id}/cancel"));
            let token = shop.token.clone();
            let start = start.clone();
            tokio::spawn(async move {
                client.get(health).send().await.unwrap();
                start.wait().await;
                let response = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"refund_method": "store_credit"}))
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                (status, body["code"].as_str().map(str::to_owned))
            })
        })
        .collect();
    let mut answers = Vec::new();
    for attempt in attempts {
        answers.push(attempt.await.unwrap());
    }
    answers
}
