//! The warehouse (PRODUCT.md §7, C4, C5): outbound requests created at OpenLogi, stopped by status
//! and settings, cancellation requests answered by the warehouse, the rate limit, and the race of a
//! warehouse report against a running cancel. Against the OpenLogi simulator.

use crate::helpers::{step, TestApp, TestShop, TestSim};
use serde_json::{json, Value};
use std::time::Duration;

crate::on_both_backends!(
    every_outbound_status_and_setting_decides_what_a_cancel_does,
    a_cancellation_request_completes_when_the_warehouse_accepts_it,
    a_rejected_cancellation_request_needs_attention_and_the_goods_ship,
    two_hundred_cancels_under_the_warehouses_rate_limit_all_arrive_once,
    a_warehouse_report_racing_a_cancel_never_leaves_a_silent_shipped_cancellation,
    warehouse_events_need_the_warehouses_signature,
    a_recipient_change_reaches_the_warehouse_by_status_and_settings_and_never_with_items,
    a_warehouse_resending_its_cancel_answer_a_thousand_times_restocks_once_and_never_below_zero,
    the_warehouses_part_of_cancels_and_changes_is_announced_as_events,
);

/// B4 with F2, C4 and F4: what happened at the warehouse reaches other systems as events.
async fn the_warehouses_part_of_cancels_and_changes_is_announced_as_events(app: TestApp) {
    let sim = TestSim::start().await;
    sim_config(&app, &sim, json!({"rate_limit": 10000, "window_ms": 1000})).await;
    let (shop, _) = warehouse_shop(&app, &sim, true, (10000, 1000)).await;
    let (deleted, _) = shipping_order(&app, &shop).await;
    let (requested, shipment) = shipping_order(&app, &shop).await;
    let (changed, _) = shipping_order(&app, &shop).await;
    app.cancel(&shop, &deleted, json!({"refund_method": "store_credit"}))
        .await;
    move_to(&app, &sim, &shipment, "picking").await;
    app.wait_for_order(&shop, &requested, 20, |order| {
        order["fulfillment_status"] == "in_progress"
    })
    .await;
    let asked = app
        .cancel(&shop, &requested, json!({"refund_method": "store_credit"}))
        .await;
    assert_eq!(asked.status, 202, "C4: the warehouse is asked: {}", asked.text);
    let patched = app
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/orders/{changed}"),
            Some(&shop.token),
            Some(json!({"customer": {"name": "山田 花子"}})),
            None,
        )
        .await;
    assert_eq!(
        patched.body["modification_sync"]["status"], "applied",
        "{}",
        patched.text
    );
    let events = app.get("/api/v1/events?limit=500", &shop.token).await;
    let of = |order_id: &str| -> Vec<String> {
        events.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|event| event["data"]["order_id"] == order_id)
            .map(|event| event["type"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        of(&deleted).contains(&"outbound.deleted".to_owned()),
        "{:?}",
        of(&deleted)
    );
    assert!(
        of(&requested).contains(&"outbound.cancel_requested".to_owned()),
        "{:?}",
        of(&requested)
    );
    assert!(
        of(&requested).contains(&"outbound.status_changed".to_owned()),
        "{:?}",
        of(&requested)
    );
    assert!(
        !of(&requested).contains(&"order.cancelled".to_owned()),
        "not cancelled until the warehouse answers"
    );
    assert!(
        of(&changed).contains(&"order.modification_synced".to_owned()),
        "{:?}",
        of(&changed)
    );
}

const SECRET: &str = "openlogi-webhook-secret";

async fn sim_config(app: &TestApp, sim: &TestSim, config: Value) {
    let response = app
        .client
        .put(format!("{}/_sim/openlogi/config", sim.url()))
        .json(&config)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
}

/// A shop whose only warehouse is the simulated OpenLogi, calling rescind back with its events.
async fn warehouse_shop(
    app: &TestApp,
    sim: &TestSim,
    cancel_after_confirmation: bool,
    rate: (u32, u64),
) -> (TestShop, String) {
    let settings = json!({"cancel_after_confirmation": cancel_after_confirmation, "rate_limit": rate.0, "rate_limit_window_ms": rate.1});
    warehouse_shop_with(app, sim, settings).await
}

/// The same, with the warehouse integration's `settings` as given.
async fn warehouse_shop_with(app: &TestApp, sim: &TestSim, settings: Value) -> (TestShop, String) {
    let shop = app.shop().await;
    let created = app
        .post(
            "/api/v1/warehouses",
            &shop.token,
            json!({"kind": "openlogi", "name": "OpenLogi", "base_url": format!("{}/api", sim.url()),
                   "credentials": {"access_token": "openlogi-token", "webhook_secret": SECRET, "account_id": "TS001"},
                   "settings": settings}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let warehouse_id = created.body["id"].as_str().unwrap().to_owned();
    sim_config(
        app,
        sim,
        json!({"callback_url": app.url(&format!("/api/v1/warehouses/{warehouse_id}/events")), "callback_secret": SECRET}),
    )
    .await;
    (shop, warehouse_id)
}

/// An order of the shop, ready to ship: the worker creates its outbound request at the warehouse.
async fn shipping_order(app: &TestApp, shop: &TestShop) -> (String, String) {
    shipping_order_with(app, shop, json!({})).await
}

/// The same, with `overrides` of the order's fields.
async fn shipping_order_with(app: &TestApp, shop: &TestShop, overrides: Value) -> (String, String) {
    let order = app.order(shop, overrides).await;
    let id = order["id"].as_str().unwrap().to_owned();
    let created = app
        .wait_for_order(shop, &id, 20, |order| order["outbound"]["external_id"].is_string())
        .await;
    assert_eq!(created["outbound"]["status"], "waiting");
    (id, created["outbound"]["external_id"].as_str().unwrap().to_owned())
}

async fn move_to(app: &TestApp, sim: &TestSim, external_id: &str, status: &str) -> Value {
    app.client
        .post(format!("{}/_sim/openlogi/shipments/{external_id}/status", sim.url()))
        .json(&json!({"status": status}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Value::Null)
}

async fn openlogi_ledger(sim: &TestSim) -> Value {
    let ledger = sim.whole_ledger().await;
    ledger["openlogi"].clone()
}

fn contains(list: &Value, id: &str) -> bool {
    list.as_array()
        .unwrap()
        .iter()
        .any(|entry| entry == id || entry["id"] == id)
}

async fn every_outbound_status_and_setting_decides_what_a_cancel_does(app: TestApp) {
    let sim = TestSim::start().await;
    sim_config(&app, &sim, json!({"rate_limit": 10000, "window_ms": 1000})).await;
    for cancel_after_confirmation in [false, true] {
        let (shop, _) = warehouse_shop(&app, &sim, cancel_after_confirmation, (1000, 1000)).await;
        for status in [
            "waiting",
            "backordered",
            "allocating",
            "working",
            "picking",
            "picked",
            "packed",
            "shipped",
        ] {
            let case = format!("{status} with cancel_after_confirmation {cancel_after_confirmation}");
            let (id, external_id) = shipping_order(&app, &shop).await;
            if status != "waiting" {
                let moved = move_to(&app, &sim, &external_id, status).await;
                assert_eq!(
                    moved["callback_status"], 200,
                    "{case}: the warehouse's report reached rescind: {moved}"
                );
            }
            let before = app.order_now(&shop, &id).await;
            let expected_fulfillment = match status {
                "waiting" => "awaiting_shipment",
                "backordered" | "allocating" => "awaiting_allocation",
                "working" | "picking" | "picked" => "in_progress",
                other => other,
            };
            assert_eq!(
                before["fulfillment_status"], expected_fulfillment,
                "{case}: the shipment status follows the outbound"
            );
            let answer = app.cancel(&shop, &id, json!({"refund_method": "store_credit"})).await;
            let ledger = openlogi_ledger(&sim).await;
            match status {
                "waiting" | "backordered" | "allocating" => {
                    assert_eq!(answer.status, 200, "{case}: {}", answer.text);
                    assert_eq!(answer.body["status"], "cancelled");
                    assert_eq!(answer.body["outbound"]["status"], "deleted");
                    assert_eq!(step(&answer.body, "warehouse_cancel")["status"], "succeeded");
                    assert!(
                        contains(&ledger["deletes"], &external_id),
                        "{case}: deleted at the warehouse"
                    );
                }
                "picking" | "picked" if cancel_after_confirmation => {
                    assert_eq!(answer.status, 202, "{case}: {}", answer.text);
                    assert_eq!(
                        answer.body["status"], "open",
                        "{case}: not cancelled until the warehouse accepts"
                    );
                    assert_eq!(answer.body["cancellation"]["status"], "processing");
                    assert_eq!(
                        answer.body["warnings"],
                        json!(["cancel_requested_may_ship"]),
                        "{case}: {}",
                        answer.text
                    );
                    assert_eq!(answer.body["outbound"]["fee"], "300", "{case}: the fee is recorded");
                    assert_eq!(
                        answer.body["cancellation"]["fee"], "300",
                        "{case}: on the cancellation too"
                    );
                    let message = step(&answer.body, "warehouse_cancel")["message"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    assert!(message.contains("may still ship"), "{case}: {message}");
                    assert!(contains(&ledger["cancel_requests"], &external_id), "{case}");
                }
                "working" | "picking" | "picked" => {
                    assert_eq!(
                        (answer.status, answer.code()),
                        (409, "order_not_cancellable"),
                        "{case}: {}",
                        answer.text
                    );
                    assert!(
                        !contains(&ledger["cancel_requests"], &external_id)
                            && !contains(&ledger["deletes"], &external_id)
                    );
                }
                "packed" => {
                    assert_eq!((answer.status, answer.code()), (409, "order_not_cancellable"), "{case}");
                    assert!(
                        answer.body["error"].as_str().unwrap().contains("refuse delivery"),
                        "{case}: C5 explains"
                    );
                    assert!(
                        !contains(&ledger["cancel_requests"], &external_id),
                        "{case}: nothing is asked after packing"
                    );
                }
                _ => assert_eq!((answer.status, answer.code()), (409, "return_required"), "{case}"),
            }
            let history = app.get(&format!("/api/v1/orders/{id}/history"), &shop.token).await;
            assert!(
                history.body["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|entry| entry["kind"] == "outbound.created"),
                "{case}: the outbound request's creation is in the history"
            );
        }
        let sync = app.get("/api/v1/sync_history?kind=cancel", &shop.token).await;
        let fees: Vec<&Value> = sync.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|entry| !entry["fee"].is_null())
            .collect();
        assert_eq!(
            fees.len(),
            if cancel_after_confirmation { 2 } else { 0 },
            "F5: requests with their fee: {}",
            sync.text
        );
    }
}

async fn a_cancellation_request_completes_when_the_warehouse_accepts_it(app: TestApp) {
    let sim = TestSim::start().await;
    sim_config(&app, &sim, json!({"rate_limit": 10000, "window_ms": 1000})).await;
    let (shop, _) = warehouse_shop(&app, &sim, true, (1000, 1000)).await;
    let (id, external_id) = shipping_order(&app, &shop).await;
    move_to(&app, &sim, &external_id, "picking").await;
    let answer = app.cancel(&shop, &id, json!({"refund_method": "store_credit"})).await;
    assert_eq!(answer.status, 202, "{}", answer.text);
    let accepted: Value = app
        .client
        .post(format!(
            "{}/_sim/openlogi/shipments/{external_id}/cancel_request",
            sim.url()
        ))
        .json(&json!({"answer": "accepted"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(accepted["callback_status"], 200, "{accepted}");
    let order = app
        .wait_for_order(&shop, &id, 10, |order| order["cancellation"]["status"] == "completed")
        .await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(
        order["warnings"],
        json!([]),
        "the goods will not ship: the warning is gone"
    );
    assert_eq!(step(&order, "warehouse_cancel")["status"], "succeeded");
    assert_eq!(order["total_refund_price"], "2600");
}

async fn a_rejected_cancellation_request_needs_attention_and_the_goods_ship(app: TestApp) {
    let sim = TestSim::start().await;
    sim_config(&app, &sim, json!({"rate_limit": 10000, "window_ms": 1000})).await;
    let (shop, _) = warehouse_shop(&app, &sim, true, (1000, 1000)).await;
    let (id, external_id) = shipping_order(&app, &shop).await;
    move_to(&app, &sim, &external_id, "picked").await;
    assert_eq!(
        app.cancel(&shop, &id, json!({"refund_method": "store_credit"}))
            .await
            .status,
        202
    );
    app.client
        .post(format!(
            "{}/_sim/openlogi/shipments/{external_id}/cancel_request",
            sim.url()
        ))
        .json(&json!({"answer": "rejected", "message": "already packed on the line"}))
        .send()
        .await
        .unwrap();
    let order = app
        .wait_for_order(&shop, &id, 10, |order| order["cancellation"]["needs_attention"] == true)
        .await;
    assert_eq!(order["status"], "open", "not cancelled: the goods ship");
    assert_eq!(step(&order, "warehouse_cancel")["status"], "failed");
    assert_eq!(order["refunds"], json!([]));
    let listed = app.get("/api/v1/cancellations?needs_attention=true", &shop.token).await;
    assert_eq!(listed.body["items"][0]["order_id"], id.as_str());
}

async fn two_hundred_cancels_under_the_warehouses_rate_limit_all_arrive_once(app: TestApp) {
    const ORDERS: usize = 200;
    let sim = TestSim::start().await;
    sim_config(&app, &sim, json!({"rate_limit": 10000, "window_ms": 1000})).await;
    // A short simulated window: 20 requests per 250 ms; rescind paces at 25 and meets the 429s.
    let (shop, _) = warehouse_shop(&app, &sim, false, (25, 250)).await;
    let mut orders = Vec::new();
    for _ in 0..ORDERS {
        let order = app.order(&shop, json!({})).await;
        orders.push(order["id"].as_str().unwrap().to_owned());
    }
    let mut externals = Vec::new();
    for id in &orders {
        let created = app
            .wait_for_order(&shop, id, 60, |order| order["outbound"]["external_id"].is_string())
            .await;
        externals.push(created["outbound"]["external_id"].as_str().unwrap().to_owned());
    }
    sim_config(&app, &sim, json!({"rate_limit": 20, "window_ms": 250})).await;
    let answer = app
        .post(
            "/api/v1/orders/cancel",
            &shop.token,
            json!({"order_ids": orders, "refund_method": "store_credit"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    for id in &orders {
        app.wait_for_order(&shop, id, 90, |order| order["status"] == "cancelled")
            .await;
    }
    let ledger = openlogi_ledger(&sim).await;
    let mut deletes: Vec<String> = ledger["deletes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deletes.len(), ORDERS, "every cancel reached the warehouse once");
    deletes.sort();
    deletes.dedup();
    assert_eq!(deletes.len(), ORDERS, "none twice");
    externals.sort();
    assert_eq!(deletes, externals);
    assert!(
        ledger["throttled"].as_u64().unwrap() > 0,
        "the rate limit was met: {}",
        ledger["throttled"]
    );
}

async fn a_warehouse_report_racing_a_cancel_never_leaves_a_silent_shipped_cancellation(app: TestApp) {
    const ROUNDS: usize = 12;
    let sim = TestSim::start().await;
    sim_config(&app, &sim, json!({"rate_limit": 10000, "window_ms": 1000})).await;
    let (shop, _) = warehouse_shop(&app, &sim, true, (1000, 1000)).await;
    for round in 0..ROUNDS {
        let (id, external_id) = shipping_order(&app, &shop).await;
        let late_status = if round % 2 == 0 { "packed" } else { "shipped" };
        let delay = Duration::from_millis(rand::random::<u64>() % 15);
        let cancel = app.spawn_cancel(&shop, &id, json!({"refund_method": "store_credit"}));
        tokio::time::sleep(delay).await;
        // Through picking to the late status, as a warehouse moves.
        move_to(&app, &sim, &external_id, "picking").await;
        move_to(&app, &sim, &external_id, late_status).await;
        let (status, _) = cancel.await.unwrap();
        assert!(matches!(status, 200 | 202 | 409 | 502), "round {round}: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let order = app.order_now(&shop, &id).await;
        let ledger = openlogi_ledger(&sim).await;
        let at_warehouse = ledger["shipments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|shipment| shipment["id"] == external_id.as_str())
            .map(|shipment| shipment["status"].as_str().unwrap().to_owned());
        let ships = matches!(at_warehouse.as_deref(), Some("packed" | "shipped"));
        if order["status"] == "cancelled" && ships {
            let warned = order["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|warning| warning == "shipped_after_cancel");
            assert!(
                warned && order["cancellation"]["needs_attention"] == true,
                "round {round}: cancelled here, shipping there, silently: {order}"
            );
        }
        if order["status"] == "open" && order["cancellation"]["status"] == "processing" && ships {
            assert!(
                order["warnings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|warning| warning == "shipped_after_cancel" || warning == "cancel_requested_may_ship"),
                "round {round}: {order}"
            );
        }
    }
}

async fn warehouse_events_need_the_warehouses_signature(app: TestApp) {
    let sim = TestSim::start().await;
    sim_config(&app, &sim, json!({"rate_limit": 10000, "window_ms": 1000})).await;
    let (shop, warehouse_id) = warehouse_shop(&app, &sim, false, (1000, 1000)).await;
    let (id, external_id) = shipping_order(&app, &shop).await;
    let body = json!({"external_id": external_id, "status": "shipped"}).to_string();
    let url = app.url(&format!("/api/v1/warehouses/{warehouse_id}/events"));
    let forged = app
        .client
        .post(&url)
        .header("X-Rescind-Signature", "sha256=00")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    assert_eq!(
        app.order_now(&shop, &id).await["fulfillment_status"],
        "awaiting_shipment"
    );
    let signature =
        rescind_connectors::encoding::hex(&rescind_http::auth::hmac_sha256(SECRET.as_bytes(), body.as_bytes()));
    let signed = app
        .client
        .post(&url)
        .header("X-Rescind-Signature", format!("sha256={signature}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status().as_u16(), 200);
    assert_eq!(app.order_now(&shop, &id).await["fulfillment_status"], "shipped");
    let with_token = app
        .client
        .post(&url)
        .bearer_auth(&shop.token)
        .json(&json!({"external_id": "unknown", "status": "packed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.json::<Value>().await.unwrap()["status"], "ignored");
}

async fn a_recipient_change_reaches_the_warehouse_by_status_and_settings_and_never_with_items(app: TestApp) {
    let sim = TestSim::start().await;
    sim_config(&app, &sim, json!({"rate_limit": 10000, "window_ms": 1000})).await;
    let new_address = json!({"name": "山田 花子", "postcode": "160-0022", "prefecture": "東京都", "address1": "新宿区新宿3-3-3", "phone": "0312345678"});
    let cases = [
        // (sync_modifications, modify_after_confirmation, status, expected modification_sync)
        (true, false, "waiting", "applied"),
        (false, false, "waiting", "not_synced"),
        (true, false, "picking", "not_synced"),
        (true, true, "picking", "requested"),
        (true, true, "packed", "not_synced"),
    ];
    for (sync_modifications, modify_after_confirmation, status, expected) in cases {
        let case = format!(
            "{status}, sync_modifications {sync_modifications}, modify_after_confirmation {modify_after_confirmation}"
        );
        let (shop, _) = warehouse_shop_with(
            &app,
            &sim,
            json!({"sync_modifications": sync_modifications, "modify_after_confirmation": modify_after_confirmation, "rate_limit": 1000, "rate_limit_window_ms": 1000}),
        )
        .await;
        let (id, external_id) = shipping_order(&app, &shop).await;
        if status != "waiting" {
            move_to(&app, &sim, &external_id, status).await;
        }
        let answer = app
            .send(
                reqwest::Method::PATCH,
                &format!("/api/v1/orders/{id}"),
                Some(&shop.token),
                Some(json!({"shipping_address": new_address})),
                None,
            )
            .await;
        assert_eq!(answer.status, 200, "{case}: {}", answer.text);
        assert_eq!(
            answer.body["modification_sync"]["status"], expected,
            "{case}: {}",
            answer.text
        );
        assert_eq!(
            answer.body["shipping_address"]["address1"], "新宿区新宿3-3-3",
            "{case}: the change is kept here"
        );
        let ledger = openlogi_ledger(&sim).await;
        let updated = ledger["updates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|update| update["id"] == external_id.as_str())
            .cloned();
        let requested = ledger["modifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|request| request["id"] == external_id.as_str())
            .cloned();
        match expected {
            "applied" => assert_eq!(
                updated.unwrap()["fields"],
                json!(["recipient"]),
                "{case}: the recipient only, never items"
            ),
            "requested" => {
                let requested = requested.unwrap();
                assert_eq!(
                    (requested["fields"].clone(), requested["fee"].clone()),
                    (json!(["recipient"]), json!(300)),
                    "{case}"
                );
                assert_eq!(answer.body["outbound"]["status"], "modify_request");
            }
            _ => assert!(updated.is_none() && requested.is_none(), "{case}: nothing was sent"),
        }
        let history = app.get("/api/v1/sync_history?kind=modify", &shop.token).await;
        assert_eq!(
            history.body["items"].as_array().unwrap().len(),
            1,
            "{case}: F5 keeps the modification: {}",
            history.text
        );
    }
    let shop = app.shop().await;
    let order = app.order(&shop, json!({})).await;
    let id = order["id"].as_str().unwrap();
    let without_warehouse = app
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/orders/{id}"),
            Some(&shop.token),
            Some(json!({"shipping_address": new_address})),
            None,
        )
        .await;
    assert_eq!(without_warehouse.body["modification_sync"]["status"], "not_applicable");
    let items = app
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/orders/{id}"),
            Some(&shop.token),
            Some(json!({"line_items": []})),
            None,
        )
        .await;
    assert_eq!(
        (items.status, items.code()),
        (400, "invalid_request"),
        "items are never changed this way"
    );
}

/// Medusa #5158: a warehouse partner re-sent the same cancel thousands of times and drove stock
/// negative. Here the warehouse's "accepted" arrives 1000 times, 50 at once (C5, I2).
async fn a_warehouse_resending_its_cancel_answer_a_thousand_times_restocks_once_and_never_below_zero(app: TestApp) {
    const RESENT: usize = 1000;
    const AT_ONCE: usize = 50;
    let sim = TestSim::start().await;
    sim_config(&app, &sim, json!({"rate_limit": 10000, "window_ms": 1000})).await;
    let (shop, warehouse_id) = warehouse_shop(&app, &sim, true, (1000, 1000)).await;
    app.set_stock(&shop, "TEA-001", 5).await;
    app.set_stock(&shop, "CUP-002", 5).await;
    let (id, external_id) = shipping_order_with(&app, &shop, json!({"deduct_inventory": true})).await;
    assert_eq!(
        (app.stock(&shop, "TEA-001").await, app.stock(&shop, "CUP-002").await),
        (4, 3)
    );
    move_to(&app, &sim, &external_id, "picked").await;
    let cancel = app.cancel(&shop, &id, json!({"refund_method": "store_credit"})).await;
    assert_eq!(cancel.status, 202, "the warehouse has to answer first: {}", cancel.text);

    let body = json!({"external_id": external_id, "cancel_request": "accepted"}).to_string();
    let signature =
        rescind_connectors::encoding::hex(&rescind_http::auth::hmac_sha256(SECRET.as_bytes(), body.as_bytes()));
    let url = app.url(&format!("/api/v1/warehouses/{warehouse_id}/events"));
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for _ in 0..RESENT / AT_ONCE {
        let sends: Vec<_> = (0..AT_ONCE)
            .map(|_| {
                let send = app
                    .client
                    .post(&url)
                    .header("X-Rescind-Signature", format!("sha256={signature}"))
                    .body(body.clone())
                    .send();
                tokio::spawn(async move { send.await.unwrap().status().as_u16() })
            })
            .collect();
        for send in sends {
            *statuses.entry(send.await.unwrap()).or_default() += 1;
        }
        let (tea, cup) = (app.stock(&shop, "TEA-001").await, app.stock(&shop, "CUP-002").await);
        assert!(
            (0..=5).contains(&tea) && (0..=5).contains(&cup),
            "stock stays within what exists: {tea}, {cup}"
        );
    }
    assert_eq!(
        statuses,
        [(200, 1), (409, RESENT - 1)].into(),
        "one answer applies; the rest find no request waiting"
    );
    let order = app
        .wait_for_order(&shop, &id, 20, |order| order["cancellation"]["status"] == "completed")
        .await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(step(&order, "restock")["status"], "succeeded");
    assert_eq!(
        (app.stock(&shop, "TEA-001").await, app.stock(&shop, "CUP-002").await),
        (5, 5),
        "put back once"
    );
    let ledger = app.get("/api/v1/inventory/TEA-001", &shop.token).await;
    assert_eq!(ledger.body["available"], 5, "{}", ledger.text);
}
