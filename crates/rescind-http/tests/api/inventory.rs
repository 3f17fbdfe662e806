//! Stock and restock (PRODUCT.md I1–I4, U2): deducted at import, put back once from the snapshot,
//! taken out again by an undo, adjusted by hand.

use crate::helpers::{step, TestApp, TestShop, TestSim};
use reqwest::Method;
use serde_json::{json, Value};

crate::on_both_backends!(
    a_cancel_puts_back_the_deducted_stock_and_each_condition_says_why_not,
    a_restock_of_one_cancellation_adds_the_stock_once_however_often_it_runs,
    twenty_concurrent_cancels_restock_once,
    an_undo_takes_the_stock_out_again_and_refuses_when_it_is_gone_unless_forced,
    stock_is_read_set_and_adjusted_by_hand_within_its_scopes,
    a_dry_run_and_the_real_cancel_that_follows_agree_on_every_number,
    stock_levels_are_listed_by_sku_a_page_at_a_time_and_found_by_part_of_the_sku,
    a_cancel_handed_to_this_process_s_worker_runs_once_handed_and_no_claim_takes_it_before,
);

async fn stock_levels_are_listed_by_sku_a_page_at_a_time_and_found_by_part_of_the_sku(app: TestApp) {
    let shop = app.shop().await;
    for (sku, available) in [("TEA-002", 4), ("CUP-001", 7), ("TEA-001", 3), ("TEA_100%", 1)] {
        app.set_stock(&shop, sku, available).await;
    }
    let other = app.shop().await;
    app.set_stock(&other, "TEA-999", 9).await;
    let first = app.get("/api/v1/inventory?limit=2", &shop.token).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let skus = |answer: &crate::helpers::Answer| -> Vec<String> {
        answer.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["sku"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(skus(&first), ["CUP-001", "TEA-001"]);
    assert_eq!(first.body["items"][1]["available"], 3);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = app
        .get(&format!("/api/v1/inventory?limit=2&cursor={cursor}"), &shop.token)
        .await;
    assert_eq!(skus(&second), ["TEA-002", "TEA_100%"], "another shop's SKU never shows");
    assert!(second.body["next_cursor"].is_null());
    let found = app.get("/api/v1/inventory?q=tea-00", &shop.token).await;
    assert_eq!(
        skus(&found),
        ["TEA-001", "TEA-002"],
        "case-insensitive, part of the SKU"
    );
    let wildcard = app.get("/api/v1/inventory?q=_1", &shop.token).await;
    assert_eq!(
        skus(&wildcard),
        ["TEA_100%"],
        "LIKE's wildcards are matched as themselves"
    );
    let too_many = app.get("/api/v1/inventory?limit=501", &shop.token).await;
    assert_eq!((too_many.status, too_many.code()), (400, "invalid_request"));
}

/// A cancel request hands its order's first step to the worker of its own process: the job is
/// written leased to that worker, so no claim (every 200 ms in the tests) takes it meanwhile, and
/// the worker runs it from the order the change left, once, when handed. The worker's places bound
/// the hand-offs.
async fn a_cancel_handed_to_this_process_s_worker_runs_once_handed_and_no_claim_takes_it_before(app: TestApp) {
    use rescind_domain::{cancel::cancel_order, Actor, CancelOptions, RefundMethod, WorkflowSchedule};
    let shop = app.shop().await;
    // The worker takes hand-offs once it has started (on SQLite, after freeing the last run's leases).
    for _ in 0..100 {
        if app.workflow.reserve().is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let places: Vec<_> = std::iter::from_fn(|| app.workflow.reserve()).collect();
    assert_eq!(places.len(), 32, "as many places as the worker runs steps at once");
    drop(places);

    app.set_stock(&shop, "TEA-001", 10).await;
    app.set_stock(&shop, "CUP-002", 10).await;
    let order = deducted_order(&app, &shop).await;
    let order_id = order["id"].as_str().unwrap();
    let place = app.workflow.reserve().expect("a free place in the worker");
    let options = CancelOptions {
        refund_method: Some(RefundMethod::StoreCredit),
        ..CancelOptions::default()
    };
    let (change, kept) = app
        .store
        .change_order_leased(&shop.id, order_id, place.lease(), move |order, _| {
            cancel_order(
                order,
                &options,
                &Actor::System,
                &mut rescind_store::RandomIds,
                rescind_store::now(),
            )
            .map(|(_, change)| change)
        })
        .await
        .expect("the cancel is written");
    assert!(kept, "the restock is due now, so the job stays the worker's");
    let WorkflowSchedule::DueAt(due_at) = change.workflow else {
        panic!("the cancel schedules its restock: {:?}", change.workflow)
    };

    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let waiting = app.order_now(&shop, order_id).await;
    assert_eq!(
        waiting["cancellation"]["status"], "processing",
        "no claim took the leased job"
    );
    assert_eq!(app.stock(&shop, "TEA-001").await, 9);

    place.hand_off(app.store.clone(), change.order, due_at);
    let settled = app
        .wait_for_order(&shop, order_id, 3, |order| {
            order["cancellation"]["status"] == "completed"
        })
        .await;
    assert_eq!(
        step(&settled, "restock")["message"],
        "restocked TEA-001 × 1, CUP-002 × 2"
    );
    assert_eq!(
        (app.stock(&shop, "TEA-001").await, app.stock(&shop, "CUP-002").await),
        (10, 10),
        "I2: put back once"
    );
}

async fn deducted_order(app: &TestApp, shop: &TestShop) -> Value {
    app.order(shop, json!({"deduct_inventory": true})).await
}

async fn a_cancel_puts_back_the_deducted_stock_and_each_condition_says_why_not(app: TestApp) {
    let shop = app.shop().await;
    app.set_stock(&shop, "TEA-001", 10).await;
    app.set_stock(&shop, "CUP-002", 10).await;
    let order = deducted_order(&app, &shop).await;
    assert_eq!(
        (app.stock(&shop, "TEA-001").await, app.stock(&shop, "CUP-002").await),
        (9, 8),
        "I1: deducted at import"
    );
    let id = order["id"].as_str().unwrap();
    let plan = app
        .cancel(&shop, id, json!({"dry_run": true, "refund_method": "store_credit"}))
        .await;
    assert_eq!(
        plan.body["plan"]["restock"],
        json!([{"sku": "TEA-001", "quantity": 1}, {"sku": "CUP-002", "quantity": 2}]),
        "B2 shows the restock"
    );
    let answer = app.cancel(&shop, id, json!({"refund_method": "store_credit"})).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["cancellation"]["status"], "completed");
    assert_eq!(
        step(&answer.body, "restock")["message"],
        "restocked TEA-001 × 1, CUP-002 × 2"
    );
    assert_eq!(
        (app.stock(&shop, "TEA-001").await, app.stock(&shop, "CUP-002").await),
        (10, 10),
        "I3: the snapshot's quantities"
    );

    let not_asked = deducted_order(&app, &shop).await;
    let answer = app
        .cancel(
            &shop,
            not_asked["id"].as_str().unwrap(),
            json!({"refund_method": "store_credit", "restock": false}),
        )
        .await;
    assert_eq!(step(&answer.body, "restock")["message"], "skipped: not requested");
    assert_eq!(app.stock(&shop, "TEA-001").await, 9, "not put back");

    let never_deducted = app.order(&shop, json!({})).await;
    let answer = app
        .cancel(
            &shop,
            never_deducted["id"].as_str().unwrap(),
            json!({"refund_method": "store_credit"}),
        )
        .await;
    assert_eq!(
        step(&answer.body, "restock")["message"],
        "not run: stock was never deducted for this order"
    );

    let unknown = app
        .order(&shop, json!({"deduct_inventory": true, "line_items": [{"sku": "GHOST-9", "title": "Ghost", "quantity": 1, "price": "2000"}]}))
        .await;
    let answer = app
        .cancel(
            &shop,
            unknown["id"].as_str().unwrap(),
            json!({"refund_method": "store_credit"}),
        )
        .await;
    assert_eq!(
        step(&answer.body, "restock")["message"],
        "failed: SKU GHOST-9 does not exist — adjust stock by hand"
    );
    let bulk_order = deducted_order(&app, &shop).await;
    let bulk = app
        .post(
            "/api/v1/orders/cancel",
            &shop.token,
            json!({"order_ids": [bulk_order["id"]], "refund_method": "store_credit"}),
        )
        .await;
    assert_eq!(
        bulk.body["results"][0]["messages"][1], "restock: restocked TEA-001 × 1, CUP-002 × 2",
        "W8/I4: {}",
        bulk.text
    );
    let sync = app.get("/api/v1/sync_history?kind=restock", &shop.token).await;
    let entries = sync.body["items"].as_array().unwrap();
    let summary: Vec<(&str, &str)> = entries
        .iter()
        .map(|entry| (entry["result"].as_str().unwrap(), entry["message"].as_str().unwrap()))
        .collect();
    assert_eq!(summary.len(), 3, "one per restock that ran: {summary:?}");
    assert!(summary.contains(&("error", "failed: SKU GHOST-9 does not exist — adjust stock by hand")));
    assert_eq!(
        summary
            .iter()
            .filter(|(result, message)| *result == "ok" && *message == "restocked TEA-001 × 1, CUP-002 × 2")
            .count(),
        2,
        "{summary:?}"
    );
    assert!(entries.iter().all(|entry| entry["kind"] == "restock"));
    let errors = app
        .get("/api/v1/sync_history?kind=restock&result=error", &shop.token)
        .await;
    let messages: Vec<&str> = errors.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        ["failed: SKU GHOST-9 does not exist — adjust stock by hand"],
        "F5: filtered by result"
    );
    let unknown = app.get("/api/v1/sync_history?result=maybe", &shop.token).await;
    assert_eq!((unknown.status, unknown.code()), (400, "invalid_request"));
}

async fn a_restock_of_one_cancellation_adds_the_stock_once_however_often_it_runs(app: TestApp) {
    let shop = app.shop().await;
    app.set_stock(&shop, "TEA-001", 10).await;
    app.set_stock(&shop, "CUP-002", 10).await;
    let order = deducted_order(&app, &shop).await;
    let id = order["id"].as_str().unwrap();
    app.cancel(&shop, id, json!({"refund_method": "store_credit"})).await;
    assert_eq!(app.stock(&shop, "TEA-001").await, 10);
    // The worker runs the same restock again (a retry after a crash before its outcome was seen).
    for _ in 0..3 {
        let again = app
            .store
            .restock(&shop.id, id, |order, report| {
                assert!(report.restocked.is_empty(), "nothing goes back twice: {report:?}");
                assert_eq!(report.already, ["TEA-001", "CUP-002"]);
                Ok::<_, ()>(rescind_domain::OrderChange::new(order.clone(), Vec::new(), Vec::new()))
            })
            .await;
        assert!(again.is_ok());
    }
    assert_eq!(
        (app.stock(&shop, "TEA-001").await, app.stock(&shop, "CUP-002").await),
        (10, 10)
    );
}

async fn twenty_concurrent_cancels_restock_once(app: TestApp) {
    let shop = app.shop().await;
    app.set_stock(&shop, "TEA-001", 10).await;
    app.set_stock(&shop, "CUP-002", 10).await;
    let order = deducted_order(&app, &shop).await;
    let id = order["id"].as_str().unwrap().to_owned();
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(20));
    let cancels: Vec<_> = (0..20)
        .map(|_| {
            let (client, url, token, start) = (
                reqwest::Client::new(),
                app.url(&format!("/api/v1/orders/{id}/cancel")),
                shop.token.clone(),
                start.clone(),
            );
            tokio::spawn(async move {
                start.wait().await;
                client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"refund_method": "store_credit"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut won = 0;
    for cancel in cancels {
        if cancel.await.unwrap() == 200 {
            won += 1;
        }
    }
    assert_eq!(won, 1);
    app.wait_for_order(&shop, &id, 10, |order| order["cancellation"]["status"] == "completed")
        .await;
    assert_eq!(
        (app.stock(&shop, "TEA-001").await, app.stock(&shop, "CUP-002").await),
        (10, 10),
        "restocked once"
    );
}

async fn an_undo_takes_the_stock_out_again_and_refuses_when_it_is_gone_unless_forced(app: TestApp) {
    let shop = app.shop().await;
    app.set_stock(&shop, "TEA-001", 10).await;
    app.set_stock(&shop, "CUP-002", 10).await;
    let order = deducted_order(&app, &shop).await;
    let id = order["id"].as_str().unwrap();
    app.cancel(&shop, id, json!({"refund_method": "store_credit"})).await;
    app.set_stock(&shop, "CUP-002", 1).await;
    let refused = app
        .post(&format!("/api/v1/orders/{id}/uncancel"), &shop.token, json!({}))
        .await;
    assert_eq!(
        (refused.status, refused.code()),
        (409, "insufficient_stock"),
        "{}",
        refused.text
    );
    assert!(refused.body["errors"][0].as_str().unwrap().starts_with("CUP-002"));
    assert_eq!(app.order_now(&shop, id).await["status"], "cancelled", "nothing changed");
    let forced = app
        .post(
            &format!("/api/v1/orders/{id}/uncancel"),
            &shop.token,
            json!({"force": true}),
        )
        .await;
    assert_eq!(forced.status, 200, "{}", forced.text);
    assert_eq!(
        (app.stock(&shop, "TEA-001").await, app.stock(&shop, "CUP-002").await),
        (9, -1),
        "U2: taken out again"
    );
    let again = app.cancel(&shop, id, json!({"refund_method": "store_credit"})).await;
    assert_eq!(
        step(&again.body, "restock")["status"],
        "succeeded",
        "a new cancellation restocks again: {}",
        again.text
    );
    assert_eq!(
        (app.stock(&shop, "TEA-001").await, app.stock(&shop, "CUP-002").await),
        (10, 1)
    );
}

async fn stock_is_read_set_and_adjusted_by_hand_within_its_scopes(app: TestApp) {
    let shop = app.shop().await;
    assert_eq!(
        app.get("/api/v1/inventory/TEA-001", &shop.token).await.code(),
        "not_found"
    );
    app.set_stock(&shop, "TEA-001", 5).await;
    let adjusted = app
        .post(
            "/api/v1/inventory/TEA-001/adjust",
            &shop.token,
            json!({"delta": -2, "reason": "棚卸し"}),
        )
        .await;
    assert_eq!(
        (adjusted.status, adjusted.body["available"].as_i64()),
        (200, Some(3)),
        "{}",
        adjusted.text
    );
    let unknown = app
        .post(
            "/api/v1/inventory/NOPE/adjust",
            &shop.token,
            json!({"delta": 1, "reason": "x"}),
        )
        .await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
    let bad = app
        .post("/api/v1/inventory/TEA-001/adjust", &shop.token, json!({"delta": 0}))
        .await;
    assert_eq!(
        bad.body["errors"],
        json!(["delta: must not be zero", "reason: is required"])
    );
    let negative = app
        .send(
            Method::PUT,
            "/api/v1/inventory/TEA-001",
            Some(&shop.token),
            Some(json!({"available": -1})),
            None,
        )
        .await;
    assert_eq!(negative.status, 400);
    let reader = app
        .post(
            &format!("/api/v1/shops/{}/tokens", shop.id),
            crate::helpers::ADMIN_TOKEN,
            json!({"scopes": ["read_inventory"]}),
        )
        .await;
    let reader = reader.body["token"].as_str().unwrap();
    assert_eq!(app.get("/api/v1/inventory/TEA-001", reader).await.body["available"], 3);
    let forbidden = app
        .send(
            Method::PUT,
            "/api/v1/inventory/TEA-001",
            Some(reader),
            Some(json!({"available": 9})),
            None,
        )
        .await;
    assert_eq!((forbidden.status, forbidden.code()), (403, "forbidden"));
}

async fn a_dry_run_and_the_real_cancel_that_follows_agree_on_every_number(app: TestApp) {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    let provider = app.stripe(&shop, &sim).await;
    app.set_stock(&shop, "TEA-001", 5).await;
    app.set_stock(&shop, "CUP-002", 5).await;
    let payment = sim.payment(4637, "usd", "succeeded").await;
    let order = app
        .card_order(
            &shop,
            &provider,
            &payment,
            json!({"currency": "USD", "deduct_inventory": true,
                   "line_items": [{"sku": "TEA-001", "title": "Tea", "quantity": 3, "price": "10.99"},
                                  {"sku": "CUP-002", "title": "Cup", "quantity": 1, "price": "7.40"}],
                   "total_shipping": "5.00", "total_tax": "2.00", "total_discount": "1.00",
                   "payment": {"method": "credit_card", "amount": "46.37", "provider_id": provider, "reference": payment}}),
        )
        .await;
    let id = order["id"].as_str().unwrap();
    let options = json!({"reason": "customer asked", "refund_method": "original_payment"});
    let mut dry = options.clone();
    dry["dry_run"] = json!(true);
    let plan = app.cancel(&shop, id, dry).await;
    assert_eq!(plan.status, 200, "{}", plan.text);
    let plan = &plan.body["plan"];
    assert_eq!(app.order_now(&shop, id).await, order, "B2: the dry run changed nothing");
    assert_eq!(
        (app.stock(&shop, "TEA-001").await, app.stock(&shop, "CUP-002").await),
        (2, 4)
    );

    let real = app.cancel(&shop, id, options).await;
    assert_eq!(real.status, 200, "{}", real.text);
    assert_eq!(plan["refund_amount"], "46.37");
    assert_eq!(plan["refund_amount"], real.body["total_refund_price"], "the refund");
    assert_eq!(
        sim.refunds_of(&payment).await[0]["amount"],
        4637,
        "to the cent at the provider"
    );
    assert_eq!(
        (
            plan["cancellation_status"].as_str(),
            real.body["cancellation"]["status"].as_str()
        ),
        (Some("processing"), Some("completed")),
        "the plan says the worker still calls the provider; the cancel answers once it has"
    );
    let kinds = |steps: &Value| -> Vec<String> {
        steps
            .as_array()
            .unwrap()
            .iter()
            .map(|step| step["kind"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        kinds(&plan["steps"]),
        kinds(&real.body["cancellation"]["steps"]),
        "the steps"
    );
    assert_eq!(plan["warnings"], real.body["warnings"], "the warnings");
    let restocked: Vec<(String, i64)> = plan["restock"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            (
                line["sku"].as_str().unwrap().to_owned(),
                line["quantity"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(restocked, [("TEA-001".to_owned(), 3), ("CUP-002".to_owned(), 1)]);
    assert_eq!(
        (app.stock(&shop, "TEA-001").await, app.stock(&shop, "CUP-002").await),
        (5, 5),
        "the stock moved by the planned quantities"
    );
    assert_eq!(
        step(&real.body, "restock")["message"],
        "restocked TEA-001 × 3, CUP-002 × 1"
    );
}
