//! Refunds and voids through the payment provider, the durable workflow around them, and undo
//! (PRODUCT.md W6, W7, §5), against the simulated Stripe.

use crate::helpers::{order_body, step, TestApp, TestShop, TestSim};
use serde_json::{json, Value};

crate::on_both_backends!(
    a_card_paid_order_is_refunded_through_the_provider_once_for_what_was_paid,
    amounts_reach_the_provider_in_the_currencys_smallest_unit,
    an_uncaptured_authorization_is_voided_instead_of_refunded,
    a_declined_refund_needs_attention_and_a_retry_after_the_fault_clears_refunds_exactly_once,
    five_hundred_concurrent_cancels_against_a_flaky_provider_all_complete_with_one_refund_each,
    a_cancel_answers_202_processing_while_the_provider_is_slow_and_completes_later,
    undoing_a_card_refund_authorizes_the_payment_again,
    an_undo_the_provider_declines_answers_payment_failed_and_changes_nothing,
    undoing_a_bank_transfer_refund_leaves_the_order_awaiting_payment,
    only_a_finished_cancellation_can_be_undone,
    a_payment_provider_needs_a_secret_key_and_is_never_shown_it_again,
    two_processes_on_one_database_never_run_the_same_refund_twice,
    a_marketplace_order_paid_by_card_is_cancelled_at_the_channel_then_refunded_each_once_in_turn,
    a_slow_refund_does_not_hide_that_the_channel_has_cancelled,
);

async fn a_card_paid_order_is_refunded_through_the_provider_once_for_what_was_paid(app: TestApp) {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    let provider = app.stripe(&shop, &sim).await;
    let payment = sim.payment(2600, "jpy", "succeeded").await;
    let order = app.card_order(&shop, &provider, &payment, json!({})).await;
    let id = order["id"].as_str().unwrap();

    let answer = app.cancel(&shop, id, json!({"reason": "customer asked"})).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["cancellation"]["status"], "completed");
    assert_eq!(answer.body["cancellation"]["refund_method"], "original_payment");
    assert_eq!(answer.body["financial_status"], "refunded");
    assert_eq!(answer.body["total_refund_price"], "2600");
    assert_eq!(step(&answer.body, "refund")["status"], "succeeded");
    assert_eq!(step(&answer.body, "refund")["attempts"], 1);

    let refunds = sim.refunds_of(&payment).await;
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0]["amount"], 2600);
    let cancellation_id = answer.body["cancellation"]["id"].as_str().unwrap();
    assert_eq!(
        refunds[0]["idempotency_key"],
        format!("rescind-{cancellation_id}-refund-0"),
        "W7: the key comes from the step"
    );
    assert_eq!(
        answer.body["refunds"][0]["note"],
        format!("payment provider refund {}", refunds[0]["id"].as_str().unwrap())
    );

    let again = app.cancel(&shop, id, json!({})).await;
    assert_eq!(again.code(), "already_cancelled");
    assert_eq!(sim.refunds_of(&payment).await.len(), 1, "C7: never a second refund");
}

async fn amounts_reach_the_provider_in_the_currencys_smallest_unit(app: TestApp) {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    let provider = app.stripe(&shop, &sim).await;
    let payment = sim.payment(2599, "usd", "succeeded").await;
    let order = app
        .card_order(
            &shop,
            &provider,
            &payment,
            json!({"currency": "USD", "line_items": [{"sku": "A", "title": "Tea", "quantity": 1, "price": "20.99"}],
                   "total_shipping": "5.00", "payment": {"method": "credit_card", "amount": "25.99", "provider_id": provider, "reference": payment}}),
        )
        .await;
    let answer = app.cancel(&shop, order["id"].as_str().unwrap(), json!({})).await;
    assert_eq!(answer.body["total_refund_price"], "25.99");
    assert_eq!(
        sim.refunds_of(&payment).await[0]["amount"],
        2599,
        "$25.99 is 2599 cents"
    );
}

async fn an_uncaptured_authorization_is_voided_instead_of_refunded(app: TestApp) {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    let provider = app.stripe(&shop, &sim).await;
    let payment = sim.payment(2600, "jpy", "requires_capture").await;
    let order = app
        .card_order(&shop, &provider, &payment, json!({"financial_status": "authorized"}))
        .await;
    assert_eq!(order["total_paid"], "0", "an authorization is not paid yet");
    let answer = app.cancel(&shop, order["id"].as_str().unwrap(), json!({})).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["financial_status"], "voided");
    assert_eq!(answer.body["cancellation"]["status"], "completed");
    assert_eq!(
        step(&answer.body, "refund")["message"],
        "voided the payment authorization"
    );
    let ledger = sim.ledger().await;
    let intent = ledger["payment_intents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|intent| intent["id"] == payment.as_str())
        .unwrap();
    assert_eq!(intent["status"], "canceled");
    assert!(ledger["refunds"].as_array().unwrap().is_empty());
}

async fn a_declined_refund_needs_attention_and_a_retry_after_the_fault_clears_refunds_exactly_once(app: TestApp) {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    let provider = app.stripe(&shop, &sim).await;
    let payment = sim.payment(2600, "jpy", "succeeded").await;
    let order = app.card_order(&shop, &provider, &payment, json!({})).await;
    let id = order["id"].as_str().unwrap();
    sim.set_faults("refunds.create", json!({"refuse_rate": 1.0})).await;

    let answer = app.cancel(&shop, id, json!({})).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["status"], "cancelled", "the order will not ship");
    let cancellation = &answer.body["cancellation"];
    assert_eq!(cancellation["needs_attention"], true);
    assert_eq!(cancellation["status"], "awaiting_refund");
    assert!(
        cancellation["last_error"].as_str().unwrap().contains("declined"),
        "{cancellation}"
    );
    assert_eq!(step(&answer.body, "refund")["status"], "failed");
    assert_eq!(
        answer.body["total_refund_price"], "0",
        "nothing is recorded as refunded"
    );
    assert!(sim.refunds_of(&payment).await.is_empty());

    let listed = app.get("/api/v1/cancellations?needs_attention=true", &shop.token).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["order_id"], id);
    assert_eq!(items[0]["id"], cancellation["id"]);

    // Retried while the provider still declines: still on the list, still nothing refunded.
    let cancellation_id = cancellation["id"].as_str().unwrap();
    let retry_path = format!("/api/v1/cancellations/{cancellation_id}/retry");
    let still = app.post(&retry_path, &shop.token, json!({})).await;
    assert_eq!(still.status, 200, "{}", still.text);
    assert_eq!(still.body["cancellation"]["needs_attention"], true);

    sim.clear_faults().await;
    let retried = app.post(&retry_path, &shop.token, json!({})).await;
    assert_eq!(retried.status, 200, "{}", retried.text);
    assert_eq!(retried.body["cancellation"]["status"], "completed");
    assert_eq!(retried.body["cancellation"]["needs_attention"], false);
    assert_eq!(retried.body["total_refund_price"], "2600");
    let refunds = sim.refunds_of(&payment).await;
    assert_eq!(refunds.len(), 1, "exactly one refund: {refunds:?}");
    assert_eq!(refunds[0]["amount"], 2600);
    assert_eq!(
        refunds[0]["idempotency_key"],
        format!("rescind-{cancellation_id}-refund-2"),
        "a declined call is retried under a new key, since the provider would replay the decline"
    );
    assert!(app
        .get("/api/v1/cancellations?needs_attention=true", &shop.token)
        .await
        .body["items"]
        .as_array()
        .unwrap()
        .is_empty());
    let not_needed = app.post(&retry_path, &shop.token, json!({})).await;
    assert_eq!((not_needed.status, not_needed.code()), (409, "not_needing_attention"));
    let history = app.get(&format!("/api/v1/orders/{id}/history"), &shop.token).await;
    let kinds: Vec<&str> = history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"cancellation.needs_attention") && kinds.contains(&"cancellation.retried"),
        "{kinds:?}"
    );
}

async fn five_hundred_concurrent_cancels_against_a_flaky_provider_all_complete_with_one_refund_each(app: TestApp) {
    const ORDERS: usize = 500;
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    let provider = app.stripe(&shop, &sim).await;
    let mut orders = Vec::new();
    for index in 0..ORDERS {
        let amount = 1000 + index as i64;
        let payment = sim.payment(amount, "jpy", "succeeded").await;
        let order = app
            .card_order(
                &shop,
                &provider,
                &payment,
                json!({"line_items": [{"sku": "A", "title": "Tea", "quantity": 1, "price": amount.to_string()}], "total_shipping": "0",
                       "payment": {"method": "credit_card", "amount": amount.to_string(), "provider_id": provider, "reference": payment}}),
            )
            .await;
        orders.push((order["id"].as_str().unwrap().to_owned(), payment, amount));
    }
    sim.set_faults(
        "refunds.create",
        json!({"error_rate": 0.3, "error_status": 503, "timeout_after_effect_rate": 0.1, "hang_ms": 1500, "seed": 7}),
    )
    .await;

    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let cancels: Vec<_> = orders
        .iter()
        .map(|(id, _, _)| {
            let (client, url, token, gate) = (
                app.client.clone(),
                app.url(&format!("/api/v1/orders/{id}/cancel")),
                shop.token.clone(),
                gate.clone(),
            );
            tokio::spawn(async move {
                let _permit = gate.acquire().await.unwrap();
                client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for cancel in cancels {
        let status = cancel.await.unwrap();
        assert!(status == 200 || status == 202, "a cancel answered {status}");
    }
    for (id, _, _) in &orders {
        app.wait_for_order(&shop, id, 60, |order| order["cancellation"]["status"] == "completed")
            .await;
    }

    let ledger = sim.ledger().await;
    let refunds = ledger["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), ORDERS, "exactly one refund per order");
    for (_, payment, amount) in &orders {
        let of_payment: Vec<&Value> = refunds
            .iter()
            .filter(|refund| refund["payment_intent"] == payment.as_str())
            .collect();
        assert_eq!(of_payment.len(), 1, "one refund for {payment}");
        assert_eq!(of_payment[0]["amount"], *amount, "exactly what was paid");
    }
    let calls = ledger["calls"]["refunds.create"].as_u64().unwrap();
    assert!(
        calls > ORDERS as u64,
        "the faults really struck: {calls} refund calls for {ORDERS} refunds"
    );
}

async fn a_cancel_answers_202_processing_while_the_provider_is_slow_and_completes_later(app: TestApp) {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    let provider = app.stripe(&shop, &sim).await;
    let payment = sim.payment(2600, "jpy", "succeeded").await;
    let order = app.card_order(&shop, &provider, &payment, json!({})).await;
    // The provider answers 503, slowly, until released: the step is still retrying when the
    // cancel's 2 s wait ends.
    sim.set_faults("refunds.create", json!({"error_rate": 1.0, "latency_ms": 400}))
        .await;
    let id = order["id"].as_str().unwrap().to_owned();
    let pending = app.spawn_cancel(&shop, &id, json!({}));
    let (status, body) = pending.await.unwrap();
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["cancellation"]["status"], "processing");
    assert_eq!(
        body["status"], "cancelled",
        "the order itself is cancelled: it will not ship"
    );
    assert!(step(&body, "refund")["last_error"].as_str().unwrap().contains("503"));
    sim.clear_faults().await;
    let done = app
        .wait_for_order(&shop, &id, 20, |order| order["cancellation"]["status"] == "completed")
        .await;
    assert_eq!(done["total_refund_price"], "2600");
    assert_eq!(sim.refunds_of(&payment).await.len(), 1);
}

async fn undoing_a_card_refund_authorizes_the_payment_again(app: TestApp) {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    let provider = app.stripe(&shop, &sim).await;
    let payment = sim.payment(2600, "jpy", "succeeded").await;
    let order = app.card_order(&shop, &provider, &payment, json!({})).await;
    let id = order["id"].as_str().unwrap();
    app.cancel(&shop, id, json!({})).await;

    let undone = app
        .post(&format!("/api/v1/orders/{id}/uncancel"), &shop.token, json!({}))
        .await;
    assert_eq!(undone.status, 200, "{}", undone.text);
    assert_eq!(undone.body["status"], "open");
    assert_eq!(
        undone.body["fulfillment_status"], "awaiting_shipment",
        "back where it was before the cancel"
    );
    assert_eq!(undone.body["financial_status"], "authorized");
    assert_eq!(undone.body["canceled_at"], Value::Null);
    assert_eq!(undone.body["cancellation"]["status"], "undone");
    assert_eq!(undone.body["line_items"][1]["cancelled_quantity"], 0);
    let new_reference = undone.body["payment"]["reference"].as_str().unwrap();
    assert_ne!(new_reference, payment);
    let ledger = sim.ledger().await;
    let intent = ledger["payment_intents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|intent| intent["id"] == new_reference)
        .unwrap();
    assert_eq!(
        (intent["status"].as_str(), intent["amount"].as_i64()),
        (Some("requires_capture"), Some(2600))
    );

    // Cancelled again, the new authorization is voided, and the first refund is not repeated.
    let again = app.cancel(&shop, id, json!({})).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.body["financial_status"], "voided");
    assert_eq!(sim.refunds_of(&payment).await.len(), 1);
}

async fn an_undo_the_provider_declines_answers_payment_failed_and_changes_nothing(app: TestApp) {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    let provider = app.stripe(&shop, &sim).await;
    let payment = sim.payment(2600, "jpy", "requires_capture").await;
    let order = app
        .card_order(&shop, &provider, &payment, json!({"financial_status": "authorized"}))
        .await;
    let id = order["id"].as_str().unwrap();
    let cancelled = app.cancel(&shop, id, json!({})).await;
    assert_eq!(cancelled.body["financial_status"], "voided");
    sim.set_faults("payment_intents.create", json!({"refuse_rate": 1.0}))
        .await;

    let undo = app
        .post(&format!("/api/v1/orders/{id}/uncancel"), &shop.token, json!({}))
        .await;
    assert_eq!((undo.status, undo.code()), (409, "payment_failed"), "{}", undo.text);
    let after = app.order_now(&shop, id).await;
    assert_eq!(after["status"], "cancelled");
    assert_eq!(after["cancellation"]["status"], "completed");
    assert_eq!(after["payment"]["reference"], payment.as_str());
    sim.clear_faults().await;
    let undone = app
        .post(&format!("/api/v1/orders/{id}/uncancel"), &shop.token, json!({}))
        .await;
    assert_eq!(undone.status, 200, "{}", undone.text);
    assert_eq!(undone.body["financial_status"], "authorized");
}

async fn undoing_a_bank_transfer_refund_leaves_the_order_awaiting_payment(app: TestApp) {
    let shop = app.shop().await;
    let refunded = app.order(&shop, json!({})).await;
    let id = refunded["id"].as_str().unwrap();
    app.cancel(&shop, id, json!({"refund_method": "bank_transfer"})).await;
    app.post(
        &format!("/api/v1/orders/{id}/refunds"),
        &shop.token,
        json!({"amount": "2600", "method": "bank_transfer"}),
    )
    .await;
    let undone = app
        .post(&format!("/api/v1/orders/{id}/uncancel"), &shop.token, json!({}))
        .await;
    assert_eq!(undone.status, 200, "{}", undone.text);
    assert_eq!(undone.body["status"], "open");
    assert_eq!(
        undone.body["fulfillment_status"], "awaiting_payment",
        "U3: the customer must pay again"
    );
    assert_eq!(undone.body["financial_status"], "pending");

    let unpaid_back = app.order(&shop, json!({})).await;
    let id = unpaid_back["id"].as_str().unwrap();
    app.cancel(&shop, id, json!({"refund_method": "bank_transfer"})).await;
    let undone = app
        .post(&format!("/api/v1/orders/{id}/uncancel"), &shop.token, json!({}))
        .await;
    assert_eq!(
        undone.body["fulfillment_status"], "awaiting_shipment",
        "no money went back: it simply ships"
    );
    assert_eq!(undone.body["financial_status"], "paid");
}

async fn only_a_finished_cancellation_can_be_undone(app: TestApp) {
    let shop = app.shop().await;
    let open = app.order(&shop, json!({})).await;
    let id = open["id"].as_str().unwrap();
    let undo = app
        .post(&format!("/api/v1/orders/{id}/uncancel"), &shop.token, json!({}))
        .await;
    assert_eq!((undo.status, undo.code()), (409, "not_cancelled"));
    app.cancel(&shop, id, json!({"refund_method": "store_credit"})).await;
    assert_eq!(
        app.post(&format!("/api/v1/orders/{id}/uncancel"), &shop.token, json!({}))
            .await
            .status,
        200
    );
    let twice = app
        .post(&format!("/api/v1/orders/{id}/uncancel"), &shop.token, json!({}))
        .await;
    assert_eq!(twice.code(), "not_cancelled");
    let bad = app
        .post(
            &format!("/api/v1/orders/{id}/uncancel"),
            &shop.token,
            json!({"force": "yes"}),
        )
        .await;
    assert_eq!(bad.status, 400);
}

async fn a_payment_provider_needs_a_secret_key_and_is_never_shown_it_again(app: TestApp) {
    let shop = app.shop().await;
    let missing = app
        .post(
            "/api/v1/payment_providers",
            &shop.token,
            json!({"kind": "stripe", "name": "Stripe", "base_url": "http://127.0.0.1:9"}),
        )
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(
        missing.body["errors"],
        json!(["credentials.secret_key: is required for Stripe"])
    );
    let sim = TestSim::start().await;
    let id = app.stripe(&shop, &sim).await;
    let read = app.get(&format!("/api/v1/payment_providers/{id}"), &shop.token).await;
    assert_eq!(read.status, 200);
    assert!(
        !read.text.contains(rescind_sim::DEFAULT_SECRET_KEY),
        "credentials are write-only"
    );
    let unknown = app
        .post(
            "/api/v1/orders",
            &shop.token,
            crate::helpers::order_body(
                &shop.channel_id,
                json!({"payment": {"method": "credit_card", "amount": "2600", "provider_id": "pp_nope", "reference": "pi_1"}}),
            ),
        )
        .await;
    assert_eq!(
        unknown.body["errors"],
        json!(["payment.provider_id: no payment provider `pp_nope` in this shop"])
    );
    let no_reference = app
        .post(
            "/api/v1/orders",
            &shop.token,
            crate::helpers::order_body(
                &shop.channel_id,
                json!({"payment": {"method": "credit_card", "amount": "2600", "provider_id": id}}),
            ),
        )
        .await;
    assert_eq!(no_reference.status, 400);
    assert!(no_reference.body["errors"][0]
        .as_str()
        .unwrap()
        .starts_with("payment.reference:"));
}

async fn two_processes_on_one_database_never_run_the_same_refund_twice(app: TestApp) {
    if matches!(app.backend, crate::helpers::Backend::Sqlite) {
        // One process owns an SQLite file; several processes are a PostgreSQL deployment.
        return;
    }
    const ORDERS: usize = 100;
    let second = app.another_process().await;
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    let provider = app.stripe(&shop, &sim).await;
    // Slow enough that both workers are busy at once; no faults, so every call is a first attempt.
    sim.set_faults("refunds.create", json!({"latency_ms": 20})).await;
    let mut orders = Vec::new();
    for _ in 0..ORDERS {
        let payment = sim.payment(2600, "jpy", "succeeded").await;
        let order = app.card_order(&shop, &provider, &payment, json!({})).await;
        orders.push((order["id"].as_str().unwrap().to_owned(), payment));
    }
    let cancels: Vec<_> = orders
        .iter()
        .enumerate()
        .map(|(index, (id, _))| {
            let via = if index % 2 == 0 {
                app.url(&format!("/api/v1/orders/{id}/cancel"))
            } else {
                second.url(&format!("/api/v1/orders/{id}/cancel"))
            };
            let (client, token) = (app.client.clone(), shop.token.clone());
            tokio::spawn(async move {
                client
                    .post(via)
                    .bearer_auth(token)
                    .json(&json!({}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for cancel in cancels {
        assert!(matches!(cancel.await.unwrap(), 200 | 202));
    }
    for (id, _) in &orders {
        app.wait_for_order(&shop, id, 30, |order| order["cancellation"]["status"] == "completed")
            .await;
    }
    let ledger = sim.ledger().await;
    assert_eq!(
        ledger["refunds"].as_array().unwrap().len(),
        ORDERS,
        "one refund per order across both processes"
    );
    assert_eq!(
        ledger["calls"]["refunds.create"].as_u64(),
        Some(ORDERS as u64),
        "no step ran twice: the leases kept the two workers apart (idempotent replays would show here)"
    );
    for (_, payment) in &orders {
        assert_eq!(sim.refunds_of(payment).await.len(), 1);
    }
}

/// A Shopify order (known to the simulator) paid by card through the simulated Stripe: its
/// cancellation calls the channel, then the provider (W2). Answers the order's id and the payment.
async fn shopify_card_order(app: &TestApp, sim: &TestSim, shop: &TestShop) -> (String, String) {
    let provider = app.stripe(shop, sim).await;
    let channel_id = app.sim_channel(shop, sim, "shopify").await;
    let created = app
        .client
        .post(format!("{}/_sim/shopify/orders", sim.url()))
        .json(&json!({"id": "shopify-order-1", "items": ["item-1", "item-2"]}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success());
    let payment = sim.payment(2600, "jpy", "succeeded").await;
    let body = order_body(
        &channel_id,
        json!({
            "channel_order_id": "shopify-order-1",
            "line_items": [
                {"sku": "TEA-001", "title": "Sencha", "quantity": 1, "price": "1000", "channel_line_item_id": "item-1"},
                {"sku": "CUP-002", "title": "Yunomi", "quantity": 2, "price": "500", "channel_line_item_id": "item-2"}],
            "payment": {"method": "credit_card", "amount": "2600", "provider_id": provider, "reference": payment},
        }),
    );
    let imported = app.post("/api/v1/orders", &shop.token, body).await;
    assert_eq!(imported.status, 201, "{}", imported.text);
    (imported.body["id"].as_str().unwrap().to_owned(), payment)
}

async fn a_marketplace_order_paid_by_card_is_cancelled_at_the_channel_then_refunded_each_once_in_turn(app: TestApp) {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    let (id, payment) = shopify_card_order(&app, &sim, &shop).await;

    let answer = app.cancel(&shop, &id, json!({"reason_code": "CUSTOMER"})).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.body["status"], "cancelled");
    assert_eq!(answer.body["cancellation"]["status"], "completed");
    assert_eq!(step(&answer.body, "channel_cancel")["status"], "succeeded");
    assert_eq!(step(&answer.body, "refund")["status"], "succeeded");
    assert_eq!(answer.body["total_refund_price"], "2600");

    let cancellation_id = answer.body["cancellation"]["id"].as_str().unwrap();
    let ledger = sim.whole_ledger().await;
    let cancels = ledger["shopify"]["cancels"].as_array().unwrap();
    assert_eq!(cancels.len(), 1, "one cancel at the channel: {cancels:?}");
    assert_eq!(
        cancels[0]["idempotency_key"],
        format!("rescind-{cancellation_id}-channel_cancel-0")
    );
    let refunds = sim.refunds_of(&payment).await;
    assert_eq!(refunds.len(), 1, "one refund: {refunds:?}");
    assert_eq!(
        refunds[0]["idempotency_key"],
        format!("rescind-{cancellation_id}-refund-0")
    );

    // W2: each step recorded with its outcome, the channel's before the refund's, each at its time.
    let history = app.get(&format!("/api/v1/orders/{id}/history"), &shop.token).await;
    assert_eq!(history.status, 200, "{}", history.text);
    let items = history.body["items"].as_array().unwrap();
    let position = |kind: &str, words: &str| {
        items
            .iter()
            .position(|line| line["kind"] == kind && line["message"].as_str().unwrap().contains(words))
            .unwrap_or_else(|| panic!("no {kind} line saying {words:?}: {items:#?}"))
    };
    let cancelled_at_channel = position("step.channel_cancel", "cancelled at shopify");
    let refunded = position("step.refund", "refunded");
    assert!(cancelled_at_channel < refunded, "{items:#?}");
    assert!(items[cancelled_at_channel]["at"].as_str() <= items[refunded]["at"].as_str());
    let order_cancelled = position("order.cancelled", "");
    assert!(
        cancelled_at_channel < order_cancelled,
        "W4: cancelled once the channel confirmed"
    );
}

async fn a_slow_refund_does_not_hide_that_the_channel_has_cancelled(app: TestApp) {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    let (id, payment) = shopify_card_order(&app, &sim, &shop).await;
    // Longer than the worker keeps the channel's outcome unwritten while the refund is called
    // (250 ms), within the tests' partner timeout (500 ms).
    sim.set_faults("refunds.create", json!({"latency_ms": 400})).await;
    let cancel = app.spawn_cancel(&shop, &id, json!({"reason_code": "CUSTOMER"}));
    let seen = app
        .wait_for_order(&shop, &id, 10, |order| {
            order["status"] == "cancelled" || order["cancellation"]["status"] == "completed"
        })
        .await;
    assert_eq!(
        step(&seen, "channel_cancel")["status"],
        "succeeded",
        "W4: the channel's cancel is recorded as soon as it is made"
    );
    assert_eq!(
        step(&seen, "refund")["status"],
        "pending",
        "seen while the provider is still answering: {seen}"
    );
    assert_eq!(seen["cancellation"]["status"], "processing");
    assert!(matches!(cancel.await.unwrap().0, 200 | 202));
    let done = app
        .wait_for_order(&shop, &id, 20, |order| order["cancellation"]["status"] == "completed")
        .await;
    assert_eq!(done["total_refund_price"], "2600");
    assert_eq!(sim.refunds_of(&payment).await.len(), 1, "the refund made once");
}
