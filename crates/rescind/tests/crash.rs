//! Crash recovery (W7): rescind is killed with SIGKILL in the middle of a batch of card-refund
//! cancellations, started again on the same database, and every cancellation finishes with exactly
//! one refund per order at the (simulated) payment provider. On SQLite, and on PostgreSQL when
//! `RESCIND_TEST_DATABASE_URL` is set.

mod common;

use common::{start, Server};
use serde_json::{json, Value};
use std::time::Duration;

const ADMIN_TOKEN: &str = "crash-test-admin";
const ORDERS: usize = 60;

/// Quick retries; a lease of 2 s so PostgreSQL (which keeps leases across a restart) resumes soon.
const FLAGS: &[&str] = &[
    "--cancel-wait-ms",
    "50",
    "--partner-timeout-ms",
    "1000",
    "--worker-lease-ms",
    "2000",
    "--retry-delay-base-ms",
    "20",
    "--retry-delay-max-ms",
    "200",
    "--worker-concurrency",
    "8",
];

fn boot(database_url: &str) -> Server {
    start(database_url, FLAGS, &[("RESCIND_ADMIN_TOKEN", ADMIN_TOKEN)])
}

async fn post(client: &reqwest::Client, url: String, token: &str, body: Value) -> (u16, Value) {
    let response = client
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("rescind answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get_order(client: &reqwest::Client, server: &Server, token: &str, id: &str) -> Value {
    client
        .get(server.url(&format!("/api/v1/orders/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn crash_and_recover(database_url: &str) {
    let client = reqwest::Client::new();
    let (sim_address, _sim) = rescind_sim::spawn().await;
    let sim = format!("http://{sim_address}");
    // Slow refunds, so that many are in flight when the process dies.
    client
        .put(format!("{sim}/_sim/faults/refunds.create"))
        .json(&json!({"latency_ms": 150}))
        .send()
        .await
        .unwrap();

    let server = boot(database_url);
    let (status, shop) = post(
        &client,
        server.url("/api/v1/shops"),
        ADMIN_TOKEN,
        json!({"name": "Crash shop"}),
    )
    .await;
    assert_eq!(status, 201, "{shop}");
    let token = shop["token"].as_str().unwrap().to_owned();
    let (_, channel) = post(
        &client,
        server.url("/api/v1/channels"),
        &token,
        json!({"kind": "own_store", "name": "Web"}),
    )
    .await;
    let (_, provider) = post(
        &client,
        server.url("/api/v1/payment_providers"),
        &token,
        json!({"kind": "stripe", "name": "Stripe", "base_url": sim, "credentials": {"secret_key": rescind_sim::DEFAULT_SECRET_KEY}}),
    )
    .await;
    let stock_url = server.url("/api/v1/inventory/A");
    let stocked = client
        .put(&stock_url)
        .bearer_auth(&token)
        .json(&json!({"available": ORDERS}))
        .send()
        .await
        .unwrap();
    assert_eq!(stocked.status(), 200);
    let mut orders = Vec::new();
    for index in 0..ORDERS {
        let amount = 2000 + index as i64;
        let reference = common::payment_intent(&client, &sim, amount).await;
        let (status, order) = post(
            &client,
            server.url("/api/v1/orders"),
            &token,
            json!({
                "channel_id": channel["id"], "currency": "JPY",
                "customer": {"name": "Crash Test"},
                "shipping_address": {"name": "Crash Test", "postcode": "100-0001", "prefecture": "東京都", "address1": "千代田区1-1"},
                "line_items": [{"sku": "A", "title": "Tea", "quantity": 1, "price": amount.to_string()}],
                "payment": {"method": "credit_card", "amount": amount.to_string(), "provider_id": provider["id"], "reference": reference},
                "financial_status": "paid", "fulfillment_status": "awaiting_shipment", "deduct_inventory": true
            }),
        )
        .await;
        assert_eq!(status, 201, "{order}");
        orders.push((order["id"].as_str().unwrap().to_owned(), reference, amount));
    }

    // The batch: every cancel at once; the process dies while they are being worked on.
    let batch: Vec<_> = orders
        .iter()
        .map(|(id, _, _)| {
            let (client, url, token) = (
                client.clone(),
                server.url(&format!("/api/v1/orders/{id}/cancel")),
                token.clone(),
            );
            tokio::spawn(async move {
                client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({}))
                    .send()
                    .await
                    .is_ok()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.kill();
    for request in batch {
        let _ = request.await;
    }
    let ledger: Value = common::get_json(&client, format!("{sim}/_sim/ledger")).await;
    let refunded_before_restart = ledger["stripe"]["refunds"].as_array().unwrap().len();
    assert!(
        refunded_before_restart < ORDERS,
        "the kill came in the middle of the batch ({refunded_before_restart} refunds)"
    );

    let server = boot(database_url);
    let mut resumed = 0;
    for (id, _, _) in &orders {
        let order = get_order(&client, &server, &token, id).await;
        match order["cancellation"]["status"].as_str() {
            Some("processing") => resumed += 1,
            Some("completed") => {}
            // The request died before its cancellation was stored: the client sends it again.
            _ => {
                let (status, body) = post(
                    &client,
                    server.url(&format!("/api/v1/orders/{id}/cancel")),
                    &token,
                    json!({}),
                )
                .await;
                assert!(status == 200 || status == 202, "{status} {body}");
            }
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for (id, _, _) in &orders {
        loop {
            let order = get_order(&client, &server, &token, id).await;
            if order["cancellation"]["status"] == "completed" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not completed after the restart: {order}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let ledger: Value = common::get_json(&client, format!("{sim}/_sim/ledger")).await;
    let refunds = ledger["stripe"]["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), ORDERS, "one refund per order, none twice");
    for (_, reference, amount) in &orders {
        let of_payment: Vec<&Value> = refunds
            .iter()
            .filter(|refund| refund["payment_intent"] == reference.as_str())
            .collect();
        assert_eq!(of_payment.len(), 1, "{reference}");
        assert_eq!(of_payment[0]["amount"], *amount);
    }
    let stock: Value = client
        .get(server.url("/api/v1/inventory/A"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stock["available"], ORDERS,
        "I2: every order's stock came back once, none twice"
    );
    eprintln!("{refunded_before_restart} refunds before the kill; {resumed} cancellations resumed after the restart");
    let (status, _) = server.terminate();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_in_the_middle_of_a_batch_loses_no_cancellation_and_refunds_or_restocks_nothing_twice_on_sqlite() {
    let directory = tempfile::tempdir().unwrap();
    crash_and_recover(&format!("sqlite://{}", directory.path().join("rescind.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_in_the_middle_of_a_batch_loses_no_cancellation_and_refunds_or_restocks_nothing_twice_on_postgres() {
    common::on_postgres_schema("rescind_crash", |url| async move { crash_and_recover(&url).await }).await;
}
