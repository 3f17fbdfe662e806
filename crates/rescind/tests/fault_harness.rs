//! The fault harness (W7, C3, I2, R1): the real `rescind` binary and the simulators, a mixed workload
//! of cancellations across every channel and the card provider, the simulators injecting errors,
//! latency, refusals and timeouts after the effect, while rescind is killed with SIGKILL at random
//! moments and started again. At the end an invariant checker compares rescind's orders with the
//! simulators' ledgers.
//!
//! The size is set by the environment: `RESCIND_FAULT_ORDERS` (default 300), `RESCIND_FAULT_KILLS`
//! (default 3) and `RESCIND_FAULT_SEED` (default: drawn, and printed so a run can be repeated):
//!
//! ```sh
//! RESCIND_FAULT_ORDERS=3000 RESCIND_FAULT_KILLS=10 cargo nextest run -p rescind --test fault_harness --no-capture
//! ```

mod common;

use common::{start, Server};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

const ADMIN_TOKEN: &str = "fault-harness-admin";
const WAREHOUSE_SECRET: &str = "fault-harness-openlogi";
/// The share of orders the warehouse moves along (picked, packed, shipped) while cancels run.
const WAREHOUSE_MOVES_SHARE: f64 = 0.15;
const CHANNELS: [&str; 6] = ["own_store", "shopify", "rakuten", "yahoo", "amazon", "shoplazza"];
/// Cancels in flight at once.
const CLIENTS: usize = 16;
/// How long every cancellation has, after the last kill, to reach an end.
const SETTLE_DEADLINE: Duration = Duration::from_secs(180);

/// Quick retries and short leases, so that a run takes seconds; a partner timeout shorter than the
/// simulators' hangs, so timeouts after the effect happen.
const FLAGS: &[&str] = &[
    "--cancel-wait-ms",
    "100",
    "--partner-timeout-ms",
    "800",
    "--worker-lease-ms",
    "1500",
    "--retry-delay-base-ms",
    "20",
    "--retry-delay-max-ms",
    "300",
    "--worker-concurrency",
    "16",
];

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The running rescind, replaced by a new process after each kill.
struct Rescind {
    database_url: String,
    server: Mutex<Option<Server>>,
    base: RwLock<String>,
    /// The simulator and rescind's warehouse, whose callbacks must follow rescind to its new port.
    callbacks: RwLock<Option<(String, String)>>,
}

impl Rescind {
    fn boot(database_url: &str) -> Server {
        start(database_url, FLAGS, &[("RESCIND_ADMIN_TOKEN", ADMIN_TOKEN)])
    }

    async fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.read().await)
    }

    /// SIGKILL, then a new process on the same database.
    async fn kill_and_restart(&self) {
        let mut server = self.server.lock().await;
        if let Some(running) = server.take() {
            running.kill();
        }
        let database_url = self.database_url.clone();
        let started = tokio::task::spawn_blocking(move || Rescind::boot(&database_url))
            .await
            .unwrap();
        *self.base.write().await = format!("http://{}", started.address);
        *server = Some(started);
        if let Some((sim, warehouse_id)) = self.callbacks.read().await.clone() {
            self.point_callbacks(&sim, &warehouse_id).await;
        }
    }

    /// Tells the simulated OpenLogi where to send its status reports.
    async fn point_callbacks(&self, sim: &str, warehouse_id: &str) {
        let callback_url = self.url(&format!("/api/v1/warehouses/{warehouse_id}/events")).await;
        let configured = reqwest::Client::new()
            .put(format!("{sim}/_sim/openlogi/config"))
            .json(&json!({"rate_limit": 100000, "window_ms": 1000, "callback_url": callback_url, "callback_secret": WAREHOUSE_SECRET}))
            .send()
            .await
            .unwrap();
        assert!(configured.status().is_success());
    }
}

/// Sends a request until some process of rescind answers it (the one asked may be killed meanwhile).
async fn send(
    rescind: &Rescind,
    client: &reqwest::Client,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    for _ in 0..600 {
        let mut request = client
            .request(method.clone(), rescind.url(path).await)
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Ok(response) = request.send().await {
            let status = response.status().as_u16();
            if let Ok(text) = response.text().await {
                return (status, serde_json::from_str(&text).unwrap_or(Value::Null));
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no process of rescind answered {path} for 30 s");
}

/// [`send`] for a GET.
async fn get(rescind: &Rescind, client: &reqwest::Client, path: &str, token: &str) -> (u16, Value) {
    send(rescind, client, reqwest::Method::GET, path, token, None).await
}

/// One order of the workload and what the harness knows of it.
#[derive(Debug)]
struct Planned {
    id: String,
    kind: &'static str,
    /// The card payment at the simulated Stripe (own-store orders), with its amount.
    payment: Option<(String, i64)>,
    channel_order_id: Option<String>,
    amount: i64,
    /// The outbound request at the simulated OpenLogi.
    shipment: String,
}

async fn run(database_url: String) {
    let orders_wanted = setting("RESCIND_FAULT_ORDERS", 300) as usize;
    let kills = setting("RESCIND_FAULT_KILLS", 3) as usize;
    let seed = setting("RESCIND_FAULT_SEED", rand::random::<u32>() as u64);
    eprintln!(
        "fault harness: {orders_wanted} orders, {kills} kills, seed {seed} (RESCIND_FAULT_SEED={seed} repeats it)"
    );
    let mut random = StdRng::seed_from_u64(seed);
    let client = reqwest::Client::new();
    let (sim_address, _sim) = rescind_sim::spawn().await;
    let sim = format!("http://{sim_address}");

    let first = Rescind::boot(&database_url);
    let rescind = Arc::new(Rescind {
        database_url: database_url.clone(),
        base: RwLock::new(format!("http://{}", first.address)),
        server: Mutex::new(Some(first)),
        callbacks: RwLock::new(None),
    });
    let post = |path: &str, token: &str, body: Value| {
        let (rescind, client, path, token) = (rescind.clone(), client.clone(), path.to_owned(), token.to_owned());
        async move { send(&rescind, &client, reqwest::Method::POST, &path, &token, Some(&body)).await }
    };

    // The shop: every channel, the card provider, one SKU every order takes one of.
    let (status, shop) = post("/api/v1/shops", ADMIN_TOKEN, json!({"name": "Fault harness"})).await;
    assert_eq!(status, 201, "{shop}");
    let token = shop["token"].as_str().unwrap().to_owned();
    let mut channels: HashMap<&str, (String, Option<String>)> = HashMap::new();
    for kind in CHANNELS {
        let body = match kind {
            "own_store" => json!({"kind": kind, "name": kind}),
            _ => {
                json!({"kind": kind, "name": kind, "base_url": sim, "credentials": rescind_sim::channel_credentials(kind)})
            }
        };
        let (status, channel) = post("/api/v1/channels", &token, body).await;
        assert_eq!(status, 201, "{channel}");
        let id = channel["id"].as_str().unwrap().to_owned();
        let (_, reasons) = get(
            &rescind,
            &client,
            &format!("/api/v1/channels/{id}/cancel_reasons"),
            &token,
        )
        .await;
        let reason = reasons["items"][0]["code"].as_str().map(str::to_owned);
        channels.insert(kind, (id, reason));
    }
    let (status, provider) = post(
        "/api/v1/payment_providers",
        &token,
        json!({"kind": "stripe", "name": "Stripe", "base_url": sim, "credentials": {"secret_key": rescind_sim::DEFAULT_SECRET_KEY}}),
    )
    .await;
    assert_eq!(status, 201, "{provider}");
    // The shop's only warehouse: every order ships from it, so every cancel has to stop it there.
    let (status, warehouse) = post(
        "/api/v1/warehouses",
        &token,
        json!({"kind": "openlogi", "name": "OpenLogi", "base_url": format!("{sim}/api"),
               "credentials": {"access_token": "openlogi-token", "webhook_secret": WAREHOUSE_SECRET, "account_id": "TS001"},
               "settings": {"rate_limit": 10000, "rate_limit_window_ms": 1000}}),
    )
    .await;
    assert_eq!(status, 201, "{warehouse}");
    let warehouse_id = warehouse["id"].as_str().unwrap().to_owned();
    *rescind.callbacks.write().await = Some((sim.clone(), warehouse_id.clone()));
    rescind.point_callbacks(&sim, &warehouse_id).await;
    let stock_before = 2 * orders_wanted as i64;
    let (status, _) = send(
        &rescind,
        &client,
        reqwest::Method::PUT,
        "/api/v1/inventory/A",
        &token,
        Some(&json!({"available": stock_before})),
    )
    .await;
    assert_eq!(status, 200);

    let mut planned = Vec::with_capacity(orders_wanted);
    for index in 0..orders_wanted {
        let kind = CHANNELS[random.gen_range(0..CHANNELS.len())];
        let amount = 1000 + random.gen_range(0..9000_i64);
        let (payment, channel_order_id, payment_body) = if kind == "own_store" {
            let reference = common::payment_intent(&client, &sim, amount).await;
            let body = json!({"method": "credit_card", "amount": amount.to_string(), "provider_id": provider["id"], "reference": reference});
            (Some((reference, amount)), None, body)
        } else {
            let external = format!("{kind}-{seed}-{index}");
            let created = client
                .post(format!("{sim}/_sim/{kind}/orders"))
                .json(&json!({"id": external, "items": ["item-1"]}))
                .send()
                .await
                .unwrap();
            assert!(created.status().is_success());
            (
                None,
                Some(external),
                json!({"method": "channel", "amount": amount.to_string()}),
            )
        };
        let (status, order) = post(
            "/api/v1/orders",
            &token,
            json!({
                "channel_id": channels[kind].0, "channel_order_id": channel_order_id, "currency": "JPY",
                "customer": {"name": "Fault Harness"},
                "shipping_address": {"name": "Fault Harness", "postcode": "100-0001", "prefecture": "東京都", "address1": "千代田区1-1"},
                "line_items": [{"sku": "A", "title": "Tea", "quantity": 1, "price": amount.to_string(), "channel_line_item_id": "item-1"}],
                "payment": payment_body,
                "financial_status": "paid", "fulfillment_status": "awaiting_shipment", "deduct_inventory": true
            }),
        )
        .await;
        assert_eq!(status, 201, "{order}");
        planned.push(Planned {
            id: order["id"].as_str().unwrap().to_owned(),
            kind,
            payment,
            channel_order_id,
            amount,
            shipment: String::new(),
        });
    }
    // The worker asks the warehouse to ship each order.
    let deadline = Instant::now() + SETTLE_DEADLINE;
    for order in &mut planned {
        loop {
            let (_, now) = get(&rescind, &client, &format!("/api/v1/orders/{}", order.id), &token).await;
            if let Some(external) = now["outbound"]["external_id"].as_str() {
                order.shipment = external.to_owned();
                break;
            }
            assert!(Instant::now() < deadline, "no outbound request: {now}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // The faults, each endpoint seeded from the run's seed.
    for (offset, endpoint) in [
        "refunds.create",
        "shopify.orderCancel",
        "shopify.query",
        "rakuten.cancelOrder",
        "yahoo.orderStatusChange",
        "amazon.createFeed",
        "amazon.getFeed",
        "shoplazza.cancel",
        "openlogi.delete",
        "openlogi.get",
    ]
    .into_iter()
    .enumerate()
    {
        let refuse_rate = if endpoint.ends_with("ancel") || endpoint.ends_with("Change") {
            0.03
        } else {
            0.0
        };
        let faults = json!({"error_rate": 0.1, "refuse_rate": refuse_rate, "timeout_after_effect_rate": 0.05,
                            "hang_ms": 1200, "latency_ms": 15, "seed": seed + offset as u64});
        let set = client
            .put(format!("{sim}/_sim/faults/{endpoint}"))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert!(set.status().is_success(), "{endpoint}");
    }

    // The workload: every order cancelled, CLIENTS at a time, in a random order, while the killer
    // kills and restarts rescind `kills` times at random moments.
    let mut order_of_cancels: Vec<usize> = (0..planned.len()).collect();
    for index in (1..order_of_cancels.len()).rev() {
        order_of_cancels.swap(index, random.gen_range(0..=index));
    }
    let kill_after: Vec<u64> = (0..kills).map(|_| random.gen_range(150..900)).collect();
    // Meanwhile the warehouse works on some orders: a move may come before the cancel (which must then
    // be refused or warn) or after it (too late: the order must carry the warning).
    let mut moves: Vec<(u64, String, &str)> = Vec::new();
    for order in &planned {
        if random.gen_bool(WAREHOUSE_MOVES_SHARE) {
            let status = ["picked", "packed", "shipped"][random.gen_range(0..3)];
            moves.push((random.gen_range(0..40), order.shipment.clone(), status));
        }
    }
    let moves_made = moves.len();
    let warehouse_work = {
        let (client, sim) = (client.clone(), sim.clone());
        tokio::spawn(async move {
            for (pause, shipment, status) in moves {
                tokio::time::sleep(Duration::from_millis(pause)).await;
                let _ = client
                    .post(format!("{sim}/_sim/openlogi/shipments/{shipment}/status"))
                    .json(&json!({"status": status}))
                    .send()
                    .await;
            }
        })
    };
    let started = Instant::now();
    let killer = {
        let rescind = rescind.clone();
        tokio::spawn(async move {
            for pause in kill_after {
                tokio::time::sleep(Duration::from_millis(pause)).await;
                rescind.kill_and_restart().await;
            }
        })
    };
    let queue = Arc::new(std::sync::Mutex::new(order_of_cancels));
    let mut workers = Vec::new();
    for _ in 0..CLIENTS {
        let (queue, rescind, client, token) = (queue.clone(), rescind.clone(), client.clone(), token.clone());
        let plan: Vec<(String, Value)> = planned
            .iter()
            .map(|order| {
                let reason = channels[order.kind].1.clone();
                (
                    order.id.clone(),
                    json!({"reason_code": reason, "reason_detail": "The customer asked to cancel."}),
                )
            })
            .collect();
        workers.push(tokio::spawn(async move {
            let mut answers: HashMap<String, usize> = HashMap::new();
            loop {
                let Some(next) = queue.lock().unwrap().pop() else { break };
                let (id, body) = &plan[next];
                let (status, answer) = send(
                    &rescind,
                    &client,
                    reqwest::Method::POST,
                    &format!("/api/v1/orders/{id}/cancel"),
                    &token,
                    Some(body),
                )
                .await;
                assert!(status < 500 || status == 502, "a cancel answered {status}: {answer}");
                let code = answer["code"].as_str().map_or(String::new(), |code| format!(" {code}"));
                *answers.entry(format!("{status}{code}")).or_default() += 1;
            }
            answers
        }));
    }
    let mut answers: HashMap<String, usize> = HashMap::new();
    for worker in workers {
        for (status, count) in worker.await.unwrap() {
            *answers.entry(status).or_default() += count;
        }
    }
    killer.await.unwrap();
    warehouse_work.await.unwrap();
    eprintln!(
        "workload done in {:.1} s; answers {answers:?}",
        started.elapsed().as_secs_f64()
    );

    // A cancel whose request died with a process before it was stored is sent again, as a client
    // would; then every cancellation has until the deadline to reach an end.
    let deadline = Instant::now() + SETTLE_DEADLINE;
    let mut settled: Vec<Value> = Vec::with_capacity(planned.len());
    for order in &planned {
        loop {
            let (status, now) = get(&rescind, &client, &format!("/api/v1/orders/{}", order.id), &token).await;
            assert_eq!(status, 200, "{now}");
            let cancellation = &now["cancellation"];
            let status = cancellation["status"].as_str().unwrap_or("none");
            let at_an_end = matches!(status, "completed" | "failed") || cancellation["needs_attention"] == true;
            if at_an_end {
                settled.push(now);
                break;
            }
            if status == "none" {
                let reason = channels[order.kind].1.clone();
                let (answered, answer) = send(
                    &rescind,
                    &client,
                    reqwest::Method::POST,
                    &format!("/api/v1/orders/{}/cancel", order.id),
                    &token,
                    Some(&json!({"reason_code": reason, "reason_detail": "The customer asked to cancel."})),
                )
                .await;
                // The warehouse has the goods already: refused, and nothing changed — an end too.
                let too_late = matches!(
                    answer["code"].as_str(),
                    Some("order_not_cancellable" | "return_required")
                );
                if answered == 409 && too_late {
                    settled.push(now);
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "not at an end {SETTLE_DEADLINE:?} after the workload: {now}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // The invariants.
    let ledger: Value = common::get_json(&client, format!("{sim}/_sim/ledger")).await;
    let injected: Value = common::get_json(&client, format!("{sim}/_sim/faults")).await;
    let faults: u64 = injected
        .as_object()
        .unwrap()
        .values()
        .map(|endpoint| endpoint["injected"].as_u64().unwrap_or(0))
        .sum();
    let mut violations: Vec<String> = Vec::new();
    let deletes: Vec<&str> = ledger["openlogi"]["deletes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let shipments: HashMap<&str, &str> = ledger["openlogi"]["shipments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|shipment| (shipment["id"].as_str().unwrap(), shipment["status"].as_str().unwrap()))
        .collect();
    let refunds = ledger["stripe"]["refunds"].as_array().cloned().unwrap_or_default();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    let (mut completed, mut failed, mut attention) = (0, 0, 0);
    for (order, now) in planned.iter().zip(&settled) {
        // No cancellation at all: the warehouse already had the goods, and the cancel was refused.
        let status = now["cancellation"]["status"]
            .as_str()
            .unwrap_or("refused_by_the_warehouse");
        *counts
            .entry(if now["cancellation"]["needs_attention"] == true {
                "needs_attention"
            } else {
                status
            })
            .or_default() += 1;
        let done = status == "completed";
        completed += usize::from(done);
        failed += usize::from(status == "failed");
        attention += usize::from(now["cancellation"]["needs_attention"] == true);
        if let Some((reference, amount)) = &order.payment {
            let at_stripe: Vec<&Value> = refunds
                .iter()
                .filter(|refund| refund["payment_intent"] == reference.as_str())
                .collect();
            if at_stripe.len() > 1 {
                violations.push(format!("{}: refunded {} times at Stripe", order.id, at_stripe.len()));
            }
            if done && (at_stripe.len() != 1 || at_stripe[0]["amount"] != *amount) {
                violations.push(format!(
                    "{}: completed, yet Stripe holds {at_stripe:?} for {amount}",
                    order.id
                ));
            }
            if status == "failed" && !at_stripe.is_empty() {
                violations.push(format!("{}: failed, yet refunded at Stripe", order.id));
            }
        }
        if let Some(external) = &order.channel_order_id {
            let cancels = ledger[order.kind]["cancels"].as_array().cloned().unwrap_or_default();
            let of_order = cancels
                .iter()
                .filter(|cancel| cancel["order_id"] == external.as_str())
                .count();
            if of_order > 1 {
                violations.push(format!("{}: cancelled {of_order} times at {}", order.id, order.kind));
            }
            if done && of_order != 1 {
                violations.push(format!(
                    "{}: completed, yet {} holds {of_order} cancels",
                    order.id, order.kind
                ));
            }
        }
        // The warehouse (F2, F3, C5): deleted at most once; a cancelled order whose goods go anyway
        // says so; a cancellation completed without that warning stopped the goods.
        let deleted = deletes.iter().filter(|id| **id == order.shipment).count();
        if deleted > 1 {
            violations.push(format!("{}: outbound deleted {deleted} times", order.id));
        }
        let goods_go = matches!(shipments.get(order.shipment.as_str()), Some(&("packed" | "shipped")));
        let warned = now["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|warning| warning == "shipped_after_cancel");
        if goods_go && now["status"] == "cancelled" && !warned {
            violations.push(format!("{}: cancelled here, shipped there, and no warning", order.id));
        }
        if done && !warned && deleted != 1 {
            violations.push(format!(
                "{}: completed, yet its outbound request was not deleted",
                order.id
            ));
        }
        if done {
            let refunded: i64 = now["refunds"]
                .as_array()
                .unwrap()
                .iter()
                .map(|refund| refund["amount"].as_str().unwrap().parse::<i64>().unwrap())
                .sum();
            if refunded != order.amount {
                violations.push(format!("{}: refunded {refunded} of {}", order.id, order.amount));
            }
            if now["status"] != "cancelled" {
                violations.push(format!("{}: completed, yet the order is {}", order.id, now["status"]));
            }
        }
        let (_, history) = get(
            &rescind,
            &client,
            &format!("/api/v1/orders/{}/history", order.id),
            &token,
        )
        .await;
        let kinds: Vec<&str> = history["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|entry| entry["kind"].as_str())
            .collect();
        let once = |kind: &str| kinds.iter().filter(|seen| **seen == kind).count();
        if now["cancellation"].is_object() && once("cancellation.created") < 1 {
            violations.push(format!("{}: no cancellation.created in the history", order.id));
        }
        if done && (once("order.cancelled") != 1 || once("step.refund") < 1 || once("step.restock") < 1) {
            violations.push(format!("{}: the history misses a step: {kinds:?}", order.id));
        }
    }
    let (_, stock) = get(&rescind, &client, "/api/v1/inventory/A", &token).await;
    let expected_stock = stock_before - planned.len() as i64 + completed as i64;
    if stock["available"] != expected_stock {
        violations.push(format!(
            "stock is {}, expected {expected_stock}: each completed cancellation restocks once",
            stock["available"]
        ));
    }
    eprintln!(
        "fault harness (seed {seed}): {} orders, {kills} kills, {faults} faults injected, {moves_made} warehouse moves; \
         {completed} completed, {failed} failed, {attention} need attention ({counts:?}); {} invariant violations",
        planned.len(),
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "invariant violations:\n{}",
        violations.join("\n")
    );
    assert!(faults > 0, "the simulators injected faults");
    let last = rescind.server.lock().await.take();
    if let Some(server) = last {
        let (status, _) = server.terminate();
        assert!(status.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_kills_and_partner_faults_every_cancellation_ends_and_nothing_is_lost_or_doubled_on_sqlite() {
    let directory = tempfile::tempdir().unwrap();
    run(format!("sqlite://{}", directory.path().join("rescind.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_kills_and_partner_faults_every_cancellation_ends_and_nothing_is_lost_or_doubled_on_postgres() {
    common::on_postgres_schema("rescind_faults", |url| async move { run(url).await }).await;
}
