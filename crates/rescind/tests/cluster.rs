//! Several rescind processes on one PostgreSQL database (B7): three `rescind serve` share a burst of
//! cancellations — Shopify orders (channel cancel, card refund, restock) and own-store orders (card
//! refund, restock) — through all three at once, and one is killed with SIGKILL midway. Its claimed
//! steps go to the others when their lease expires; every cancellation completes once, and the
//! simulators' ledgers show one refund per payment and one cancel per Shopify order. Every webhook
//! event is delivered, none twice with a different id.

mod common;

use common::{on_postgres_schema, start, Server};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ADMIN_TOKEN: &str = "cluster-admin";
const ORDERS: usize = 150;
/// Cancels in flight at once, over the three processes.
const CLIENTS: usize = 24;
/// A short lease, so the dead process's steps are taken over within seconds.
const FLAGS: &[&str] = &[
    "--cancel-wait-ms",
    "200",
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
    "--channel-poll-interval-s",
    "0",
    "--webhook-retry-delay-base-ms",
    "50",
    // The test's receiver listens on loopback.
    "--webhook-allow-private-targets",
];

async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), reqwest::Error> {
    let mut request = client.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

/// A webhook receiver that keeps every event id it is sent.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |body: axum::Json<Value>| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(body.0);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_share_a_burst_and_one_killed_midway_loses_nothing_and_repeats_nothing() {
    on_postgres_schema("rescind_cluster", |database_url| async move {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
        let (sim_address, _sim) = rescind_sim::spawn().await;
        let sim = format!("http://{sim_address}");
        // Slow partners, so that many steps are in flight when a process dies.
        for endpoint in ["refunds.create", "shopify.orderCancel"] {
            client
                .put(format!("{sim}/_sim/faults/{endpoint}"))
                .json(&json!({"latency_ms": 120}))
                .send()
                .await
                .unwrap();
        }
        let envs = [("RESCIND_ADMIN_TOKEN", ADMIN_TOKEN)];
        // The first applies the migrations; the others find them applied.
        let first = start(&database_url, FLAGS, &envs);
        let mut servers: Vec<Option<Server>> = vec![
            Some(first),
            Some(start(&database_url, FLAGS, &envs)),
            Some(start(&database_url, FLAGS, &envs)),
        ];
        let bases: Vec<String> = servers.iter().map(|server| server.as_ref().unwrap().url("")).collect();
        let setup = &bases[1];
        let post = |path: &str, token: &str, body: Value| {
            let (client, url, token) = (client.clone(), format!("{setup}{path}"), token.to_owned());
            async move { send(&client, reqwest::Method::POST, url, &token, Some(&body)).await.unwrap() }
        };
        let (status, shop) = post("/api/v1/shops", ADMIN_TOKEN, json!({"name": "Cluster shop"})).await;
        assert_eq!(status, 201, "{shop}");
        let token = shop["token"].as_str().unwrap().to_owned();
        let (_, own) = post("/api/v1/channels", &token, json!({"kind": "own_store", "name": "Web"})).await;
        let (_, shopify) = post(
            "/api/v1/channels",
            &token,
            json!({"kind": "shopify", "name": "Shopify", "base_url": sim, "credentials": rescind_sim::channel_credentials("shopify")}),
        )
        .await;
        let (_, provider) = post(
            "/api/v1/payment_providers",
            &token,
            json!({"kind": "stripe", "name": "Stripe", "base_url": sim, "credentials": {"secret_key": rescind_sim::DEFAULT_SECRET_KEY}}),
        )
        .await;
        let (hook_url, received) = receiver().await;
        let (status, hook) = post(
            "/api/v1/webhooks",
            &token,
            json!({"url": hook_url, "events": ["order.cancelled", "cancellation.completed", "refund.created"]}),
        )
        .await;
        assert_eq!(status, 201, "{hook}");
        let stocked = client
            .put(format!("{setup}/api/v1/inventory/A"))
            .bearer_auth(&token)
            .json(&json!({"available": ORDERS}))
            .send()
            .await
            .unwrap();
        assert_eq!(stocked.status(), 200);

        let mut orders: Vec<(String, String, i64, bool)> = Vec::with_capacity(ORDERS);
        for index in 0..ORDERS {
            let amount = 1500 + index as i64;
            let reference = common::payment_intent(&client, &sim, amount).await;
            let at_shopify = index % 2 == 0;
            let mut body = json!({
                "channel_id": if at_shopify { &shopify["id"] } else { &own["id"] }, "currency": "JPY",
                "customer": {"name": "Cluster"},
                "shipping_address": {"name": "Cluster", "postcode": "100-0001", "prefecture": "東京都", "address1": "千代田区1-1"},
                "line_items": [{"sku": "A", "title": "Tea", "quantity": 1, "price": amount.to_string()}],
                "payment": {"method": "credit_card", "amount": amount.to_string(), "provider_id": provider["id"], "reference": reference},
                "financial_status": "paid", "fulfillment_status": "awaiting_shipment", "deduct_inventory": true
            });
            if at_shopify {
                let external = format!("cluster-{index}");
                client.post(format!("{sim}/_sim/shopify/orders")).json(&json!({"id": external})).send().await.unwrap();
                body["channel_order_id"] = json!(external);
            }
            // Imports go through every process too.
            let (status, order) = send(
                &client,
                reqwest::Method::POST,
                format!("{}/api/v1/orders", bases[index % 3]),
                &token,
                Some(&body),
            )
            .await
            .unwrap();
            assert_eq!(status, 201, "{order}");
            orders.push((order["id"].as_str().unwrap().to_owned(), reference, amount, at_shopify));
        }

        // The burst: CLIENTS at a time, each cancel to the next process in turn; the third dies after
        // a third of the cancels were sent. A cancel whose process died is sent to another, as a
        // client would.
        let next = Arc::new(AtomicUsize::new(0));
        let dead = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let answered_by: Arc<Mutex<HashMap<usize, usize>>> = Arc::default();
        let ids: Arc<Vec<(String, &'static str)>> = Arc::new(
            orders
                .iter()
                .map(|(id, _, _, at_shopify)| (id.clone(), if *at_shopify { "CUSTOMER" } else { "customer" }))
                .collect(),
        );
        let mut workers = Vec::new();
        for _ in 0..CLIENTS {
            let (client, next, dead, answered_by, ids, bases, token) =
                (client.clone(), next.clone(), dead.clone(), answered_by.clone(), ids.clone(), bases.clone(), token.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some((id, reason_code)) = ids.get(index) else { return };
                    let mut process = index % 3;
                    let body = json!({"reason_code": reason_code, "reason": "customer asked"});
                    loop {
                        if process == 2 && dead.load(Ordering::Relaxed) {
                            process = index % 2;
                        }
                        let url = format!("{}/api/v1/orders/{id}/cancel", bases[process]);
                        match send(&client, reqwest::Method::POST, url, &token, Some(&body)).await {
                            Ok((status, answer)) => {
                                let done = matches!(status, 200 | 202) || answer["code"] == "already_cancelled";
                                assert!(done, "a cancel answered {status}: {answer}");
                                *answered_by.lock().unwrap().entry(process).or_default() += 1;
                                break;
                            }
                            Err(_) => {
                                // The process died with the request: another one takes it.
                                process = (process + 1) % 2;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                }
            }));
        }
        while next.load(Ordering::Relaxed) < ORDERS / 3 {
            assert!(!workers.iter().all(|worker| worker.is_finished()), "the clients stopped early");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        dead.store(true, Ordering::Relaxed);
        servers[2].take().unwrap().kill();
        let killed_at = Instant::now();
        for worker in workers {
            worker.await.unwrap();
        }
        let answered_by = answered_by.lock().unwrap().clone();
        eprintln!("cancels answered per process (0, 1 alive; 2 killed): {answered_by:?}");
        assert!(answered_by.get(&2).copied().unwrap_or(0) > 0, "the killed process took part before it died");

        // Every cancellation completes, through the processes left.
        let deadline = Instant::now() + Duration::from_secs(90);
        for (index, (id, ..)) in orders.iter().enumerate() {
            loop {
                let url = format!("{}/api/v1/orders/{id}", bases[index % 2]);
                let (_, order) = send(&client, reqwest::Method::GET, url, &token, None).await.unwrap();
                if order["cancellation"]["status"] == "completed" {
                    assert_eq!(order["status"], "cancelled");
                    assert_eq!(order["total_refund_price"], order["total_paid"], "{order}");
                    break;
                }
                assert!(order["cancellation"]["needs_attention"] != true, "{order}");
                assert!(Instant::now() < deadline, "not completed 90 s after the kill: {order}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        eprintln!("all {ORDERS} cancellations completed {:.1} s after the kill", killed_at.elapsed().as_secs_f64());

        // The ledgers: one refund per payment, of its whole amount; one cancel per Shopify order.
        let ledger = common::get_json(&client, format!("{sim}/_sim/ledger")).await;
        let mut refunds: HashMap<String, Vec<i64>> = HashMap::new();
        for refund in ledger["stripe"]["refunds"].as_array().unwrap() {
            refunds
                .entry(refund["payment_intent"].as_str().unwrap().to_owned())
                .or_default()
                .push(refund["amount"].as_i64().unwrap());
        }
        for (_, reference, amount, _) in &orders {
            assert_eq!(refunds.get(reference), Some(&vec![*amount]), "one refund of the whole amount for {reference}");
        }
        let mut cancels: HashMap<String, usize> = HashMap::new();
        for cancel in ledger["shopify"]["cancels"].as_array().unwrap() {
            *cancels.entry(cancel["order_id"].as_str().unwrap().to_owned()).or_default() += 1;
        }
        let shopify_orders = orders.iter().filter(|(.., at_shopify)| *at_shopify).count();
        assert_eq!(cancels.len(), shopify_orders);
        assert!(cancels.values().all(|count| *count == 1), "one cancel per order at Shopify: {cancels:?}");
        let (_, stock) = send(&client, reqwest::Method::GET, format!("{}/api/v1/inventory/A", bases[0]), &token, None)
            .await
            .unwrap();
        assert_eq!(stock["available"], ORDERS as i64, "every unit back once");

        // The webhook: each of the orders' events arrives (at least once; a process that died between
        // sending and recording sends again, with the same event id).
        let (_, events) = send(&client, reqwest::Method::GET, format!("{}/api/v1/events?limit=500", bases[0]), &token, None)
            .await
            .unwrap();
        let mut expected: HashSet<String> = HashSet::new();
        let mut after = 0;
        let mut page = events;
        loop {
            let items = page["items"].as_array().unwrap().clone();
            if items.is_empty() {
                break;
            }
            for event in &items {
                if ["order.cancelled", "cancellation.completed", "refund.created"].contains(&event["type"].as_str().unwrap()) {
                    expected.insert(event["id"].as_str().unwrap().to_owned());
                }
                after = event["sequence"].as_i64().unwrap();
            }
            page = send(&client, reqwest::Method::GET, format!("{}/api/v1/events?limit=500&after={after}", bases[0]), &token, None)
                .await
                .unwrap()
                .1;
        }
        assert_eq!(expected.len(), 3 * ORDERS, "three events per order, each written once");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let seen: HashSet<String> = received
                .lock()
                .unwrap()
                .iter()
                .map(|event| event["id"].as_str().unwrap().to_owned())
                .collect();
            if seen == expected {
                break;
            }
            assert!(seen.is_subset(&expected), "no event is invented");
            assert!(Instant::now() < deadline, "{} of {} events delivered", seen.len(), expected.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let deliveries = received.lock().unwrap().len();
        eprintln!("{} events delivered in {deliveries} deliveries", expected.len());
        drop(servers);
    })
    .await;
}
