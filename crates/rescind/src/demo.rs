//! `rescind demo`: rescind on a fresh SQLite file with the simulators of every partner in the same
//! process, and a shop wired to all of them — every channel, an OpenLogi warehouse, Stripe — holding a
//! few dozen orders in the states an operator meets: waiting to ship, picking, packed, shipped, paid
//! by card or at the marketplace, cancelled, partly cancelled, asked to cancel by the customer,
//! refused by the channel, needing attention. Everything is created through the API, as a merchant's
//! systems would.

use anyhow::{bail, Context, Result};
use rescind_http::{AppState, ServiceSettings};
use rescind_store::Store;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The SQLite file of the demo; replaced at every start, so the demo always begins the same way.
    #[arg(long, default_value = "rescind-demo.db")]
    database_file: String,
}

/// The shop's SKUs, with the stock each starts with.
const SKUS: [(&str, &str, i64); 8] = [
    ("TEA-001", "Sencha 100g", 40),
    ("TEA-002", "Gyokuro 50g", 25),
    ("TEA-003", "Matcha 30g", 30),
    ("TEA-004", "Hojicha 200g", 35),
    ("TEA-005", "Genmaicha 200g", 50),
    ("CUP-001", "Yunomi cup", 20),
    ("POT-001", "Kyusu teapot", 8),
    ("SET-001", "Gift set", 12),
];

const CUSTOMERS: [(&str, &str); 12] = [
    ("山田 太郎", "150-0001"),
    ("佐藤 花子", "530-0001"),
    ("鈴木 一郎", "060-0001"),
    ("高橋 美咲", "810-0001"),
    ("田中 健", "460-0008"),
    ("伊藤 さくら", "980-0021"),
    ("渡辺 翔", "220-0011"),
    ("中村 愛", "600-8216"),
    ("小林 大輔", "730-0011"),
    ("加藤 結衣", "900-0015"),
    ("Emma Clarke", "106-0032"),
    ("Liam Wong", "105-0011"),
];

/// One order of the demo: where it comes from, how it is paid, and where it stands.
struct Planned {
    channel: &'static str,
    fulfillment: &'static str,
    financial: &'static str,
    payment: Payment,
    /// What happens to it after the import.
    then: Then,
}

#[derive(Clone, Copy, PartialEq)]
enum Payment {
    Card,
    BankTransfer,
    Cod,
    Marketplace,
    Points,
}

#[derive(Clone, Copy, PartialEq)]
enum Then {
    Nothing,
    Cancel,
    CancelLines,
    CustomerRequest,
    /// Shipped at the channel already: the channel refuses a cancel.
    ShippedAtChannel,
    /// The warehouse starts on it.
    WarehouseMoves(&'static str),
    /// The card refund is refused: the cancellation needs attention.
    RefundRefused,
}

fn plan() -> Vec<Planned> {
    use Payment::*;
    use Then::*;
    let order = |channel, fulfillment, financial, payment, then| Planned {
        channel,
        fulfillment,
        financial,
        payment,
        then,
    };
    vec![
        order("own_store", "awaiting_shipment", "paid", Card, Nothing),
        order("own_store", "awaiting_shipment", "paid", Card, Nothing),
        order("own_store", "awaiting_shipment", "paid", BankTransfer, Nothing),
        order("own_store", "awaiting_payment", "pending", BankTransfer, Nothing),
        order("own_store", "awaiting_allocation", "paid", Card, Nothing),
        order("own_store", "awaiting_confirmation", "paid", Points, Nothing),
        order("own_store", "awaiting_shipment", "paid", Card, CustomerRequest),
        order("own_store", "awaiting_confirmation", "paid", Card, CancelLines),
        order("own_store", "awaiting_shipment", "paid", Card, Cancel),
        order("own_store", "awaiting_shipment", "paid", BankTransfer, Cancel),
        order("own_store", "awaiting_shipment", "paid", Card, RefundRefused),
        order(
            "own_store",
            "awaiting_shipment",
            "paid",
            Card,
            WarehouseMoves("picking"),
        ),
        order("own_store", "awaiting_shipment", "paid", Cod, WarehouseMoves("packed")),
        order("own_store", "shipped", "paid", Card, Nothing),
        order("own_store", "delivered", "paid", Cod, Nothing),
        order("shopify", "awaiting_shipment", "paid", Card, Nothing),
        order("shopify", "awaiting_shipment", "paid", Card, Nothing),
        order("shopify", "awaiting_shipment", "paid", Card, ShippedAtChannel),
        order("shopify", "awaiting_shipment", "paid", Card, CustomerRequest),
        order("shopify", "shipped", "paid", Card, Nothing),
        order("rakuten", "awaiting_shipment", "paid", Marketplace, Nothing),
        order("rakuten", "awaiting_shipment", "paid", Marketplace, Nothing),
        order("rakuten", "awaiting_shipment", "paid", Marketplace, Cancel),
        order(
            "rakuten",
            "awaiting_shipment",
            "paid",
            Marketplace,
            WarehouseMoves("picking"),
        ),
        order("yahoo", "awaiting_shipment", "paid", Marketplace, Nothing),
        order("yahoo", "awaiting_shipment", "paid", Marketplace, Nothing),
        order("yahoo", "awaiting_payment", "pending", BankTransfer, Nothing),
        order("yahoo", "delivered", "paid", Marketplace, Nothing),
        order("amazon", "awaiting_shipment", "paid", Marketplace, Nothing),
        order("amazon", "awaiting_shipment", "paid", Marketplace, Nothing),
        order("amazon", "awaiting_shipment", "paid", Marketplace, Cancel),
        order("amazon", "shipped", "paid", Marketplace, Nothing),
        order("shoplazza", "awaiting_shipment", "paid", Card, Nothing),
        order("shoplazza", "awaiting_shipment", "paid", Card, Nothing),
        order("shoplazza", "awaiting_confirmation", "paid", Card, Nothing),
        order("shoplazza", "shipped", "paid", Card, Nothing),
    ]
}

/// The demo shop as the operator uses it.
pub struct Demo {
    pub token: String,
    pub orders: usize,
}

/// Runs the demo until SIGINT or SIGTERM.
pub async fn run(args: DemoArgs, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", args.database_file);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).with_context(|| format!("cannot replace {path}")),
        }
    }
    let (sim_address, _sim) = rescind_sim::spawn().await;
    let store = Store::open(&format!("sqlite://{}", args.database_file)).await?;
    let admin_token = rescind_http::auth::new_secret();
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    let settings = ServiceSettings {
        channel_poll_interval: None,
        ..ServiceSettings::default()
    };
    let state = AppState::new(store, Some(&admin_token), settings);
    let server = tokio::spawn(rescind_http::serve(listener, state, shutdown));
    let base = format!("http://{address}");
    let sim = format!("http://{sim_address}");
    let started = Instant::now();
    let demo = seed(&base, &sim, &admin_token)
        .await
        .context("failed to create the demo shop")?;
    println!(
        "rescind demo: {} orders in a shop with every channel, OpenLogi and Stripe (simulated at {sim}), in {:.1} s",
        demo.orders,
        started.elapsed().as_secs_f64()
    );
    println!("Database: {}", args.database_file);
    println!("Console: {base}/console");
    println!("Token: {}", demo.token);
    println!(
        "API: curl -H 'Authorization: Bearer {}' {base}/api/v1/orders",
        demo.token
    );
    server.await??;
    Ok(())
}

/// A client of the demo's own API and of the simulators.
struct Client {
    http: reqwest::Client,
    base: String,
    sim: String,
    token: String,
}

impl Client {
    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value> {
        let answer = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = answer.status();
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path} answered {status}: {body}");
        }
        Ok(body)
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.send(reqwest::Method::POST, path, body).await
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let answer = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?;
        Ok(answer.error_for_status()?.json().await?)
    }

    async fn sim(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value> {
        let answer = self
            .http
            .request(method, format!("{}{path}", self.sim))
            .json(&body)
            .send()
            .await?;
        Ok(answer.error_for_status()?.json().await?)
    }

    /// Waits until the order satisfies `ready` (the worker and the simulators run meanwhile).
    async fn wait_for(&self, order_id: &str, ready: impl Fn(&Value) -> bool) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let order = self.get(&format!("/api/v1/orders/{order_id}")).await?;
            if ready(&order) {
                return Ok(order);
            }
            if Instant::now() > deadline {
                bail!("order {order_id} did not get ready: {order}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The channel's own order number, in its own format.
fn channel_order_id(kind: &str, index: usize) -> String {
    match kind {
        "rakuten" => format!("354396-20261130-00{:08}", 36_329_794 + index),
        "yahoo" => format!("rescind-store-{}", 10_000 + index),
        "amazon" => format!("503-{:07}-{:07}", 1_234_567 + index, 7_654_321 - index),
        "shopify" => format!("{}", 5_123_456_789_000_u64 + index as u64),
        _ => format!("LZ{}", 880_000 + index),
    }
}

async fn seed(base: &str, sim: &str, admin_token: &str) -> Result<Demo> {
    let mut client = Client {
        http: reqwest::Client::new(),
        base: base.to_owned(),
        sim: sim.to_owned(),
        token: admin_token.to_owned(),
    };
    let shop = client
        .post(
            "/api/v1/shops",
            json!({"name": "お茶の山田園", "settings": {"customer_cancellation_requests": true, "inventory_push_interval_s": 60}}),
        )
        .await?;
    client.token = shop["token"].as_str().context("shop token")?.to_owned();

    let mut channels = std::collections::HashMap::new();
    for (kind, name) in [
        ("own_store", "山田園 公式オンラインストア"),
        ("shopify", "Shopify"),
        ("rakuten", "楽天市場店"),
        ("yahoo", "Yahoo!ショッピング店"),
        ("amazon", "Amazon.co.jp"),
        ("shoplazza", "Shoplazza"),
    ] {
        let mut body = json!({"kind": kind, "name": name});
        if let Some(credentials) = rescind_sim::channel_credentials(kind) {
            body["base_url"] = json!(sim);
            body["credentials"] = credentials;
        }
        let channel = client.post("/api/v1/channels", body).await?;
        channels.insert(kind, channel["id"].as_str().context("channel id")?.to_owned());
    }
    let provider = client
        .post(
            "/api/v1/payment_providers",
            json!({"kind": "stripe", "name": "Stripe", "base_url": sim, "credentials": {"secret_key": rescind_sim::DEFAULT_SECRET_KEY}}),
        )
        .await?;
    let webhook_secret = rescind_http::auth::new_secret();
    let warehouse = client
        .post(
            "/api/v1/warehouses",
            json!({"kind": "openlogi", "name": "OpenLogi 東京倉庫", "base_url": format!("{sim}/api"),
                   "credentials": {"access_token": "openlogi-token", "webhook_secret": webhook_secret, "account_id": "TS001"},
                   "settings": {"cancel_after_confirmation": true, "rate_limit": 10000, "rate_limit_window_ms": 1000}}),
        )
        .await?;
    let warehouse_id = warehouse["id"].as_str().context("warehouse id")?;
    client
        .sim(
            reqwest::Method::PUT,
            "/_sim/openlogi/config",
            json!({"rate_limit": 10000, "window_ms": 1000, "fee": 330,
                   "callback_url": format!("{base}/api/v1/warehouses/{warehouse_id}/events"), "callback_secret": webhook_secret}),
        )
        .await?;
    for (sku, _, available) in SKUS {
        client
            .send(
                reqwest::Method::PUT,
                &format!("/api/v1/inventory/{sku}"),
                json!({"available": available}),
            )
            .await?;
    }

    let planned = plan();
    let mut imported = Vec::with_capacity(planned.len());
    for (index, order) in planned.iter().enumerate() {
        let (customer, postcode) = CUSTOMERS[index % CUSTOMERS.len()];
        let first = SKUS[index % SKUS.len()];
        let second = SKUS[(index * 3 + 1) % SKUS.len()];
        let lines = [
            (first, 1 + (index % 2) as i64, 1200 + 100 * (index as i64 % 5)),
            (second, 1, 800),
        ];
        let total: i64 = lines.iter().map(|(_, quantity, price)| quantity * price).sum::<i64>() + 600;
        let external = (order.channel != "own_store").then(|| channel_order_id(order.channel, index));
        let line_items: Vec<Value> = lines
            .iter()
            .enumerate()
            .map(|(line, ((sku, title, _), quantity, price))| {
                let mut item = json!({"sku": sku, "title": title, "quantity": quantity, "price": price.to_string()});
                if order.channel == "amazon" {
                    item["channel_line_item_id"] = json!(format!("{:014}", 10_000_000 * index + line));
                }
                item
            })
            .collect();
        if let Some(external) = &external {
            let status = match (order.channel, order.fulfillment, order.then) {
                ("shopify", _, Then::ShippedAtChannel) | ("shopify", "shipped" | "delivered", _) => json!("fulfilled"),
                _ => Value::Null,
            };
            let items: Vec<&Value> = line_items
                .iter()
                .filter_map(|item| item.get("channel_line_item_id"))
                .collect();
            let mut body = json!({"id": external, "items": items});
            if !status.is_null() {
                body["status"] = status;
            }
            client
                .sim(reqwest::Method::POST, &format!("/_sim/{}/orders", order.channel), body)
                .await?;
        }
        let payment = match order.payment {
            Payment::Card => {
                let intent = client
                    .sim(
                        reqwest::Method::POST,
                        "/_sim/payment_intents",
                        json!({"amount": total, "currency": "jpy"}),
                    )
                    .await?;
                json!({"method": "credit_card", "amount": total.to_string(), "provider_id": provider["id"], "reference": intent["id"]})
            }
            Payment::BankTransfer => json!({"method": "bank_transfer", "amount": total.to_string()}),
            Payment::Cod => json!({"method": "cod", "amount": total.to_string()}),
            Payment::Marketplace => json!({"method": "channel", "amount": total.to_string()}),
            Payment::Points => json!({"method": "points", "amount": "0", "points_amount": total.to_string()}),
        };
        let address = json!({"name": customer, "postcode": postcode, "prefecture": "東京都",
                             "address1": format!("渋谷区神宮前{}-{}-{}", 1 + index % 6, 1 + index % 9, 1 + index % 20),
                             "phone": format!("090-{:04}-{:04}", 1000 + index, 5678)});
        let mut body = json!({
            "channel_id": channels[order.channel],
            "currency": "JPY",
            "customer": {"name": customer, "email": format!("customer{index}@example.jp"), "phone": address["phone"]},
            "shipping_address": address,
            "line_items": line_items,
            "total_shipping": "600",
            "payment": payment,
            "financial_status": order.financial,
            "fulfillment_status": order.fulfillment,
            "deduct_inventory": true,
        });
        if let Some(external) = external {
            body["channel_order_id"] = json!(external);
        }
        let created = client.post("/api/v1/orders", body).await?;
        imported.push(created["id"].as_str().context("order id")?.to_owned());
    }

    for (order, order_id) in planned.iter().zip(&imported) {
        match order.then {
            Then::Nothing | Then::ShippedAtChannel => {}
            Then::Cancel => {
                let mut body = json!({"reason": "お客様のご都合によるキャンセル", "restock": true});
                match order.channel {
                    "rakuten" => body["reason_code"] = json!("1"),
                    "amazon" => body["reason_code"] = json!("BuyerCanceled"),
                    _ => {}
                }
                if order.payment == Payment::BankTransfer {
                    body["refund_method"] = json!("bank_transfer");
                }
                client.post(&format!("/api/v1/orders/{order_id}/cancel"), body).await?;
            }
            Then::CancelLines => {
                let current = client.get(&format!("/api/v1/orders/{order_id}")).await?;
                let line = &current["line_items"][1];
                client
                    .post(
                        &format!("/api/v1/orders/{order_id}/cancel"),
                        json!({"reason": "一部商品の欠品", "line_items": [{"line_item_id": line["id"], "quantity": 1}]}),
                    )
                    .await?;
            }
            Then::CustomerRequest => {
                client
                    .post(
                        &format!("/api/v1/orders/{order_id}/cancellation_requests"),
                        json!({"reason": "注文内容を間違えたのでキャンセルしたいです。"}),
                    )
                    .await?;
            }
            Then::WarehouseMoves(status) => {
                let order = client
                    .wait_for(order_id, |order| order["outbound"]["external_id"].is_string())
                    .await?;
                let shipment = order["outbound"]["external_id"].as_str().context("shipment id")?;
                client
                    .sim(
                        reqwest::Method::POST,
                        &format!("/_sim/openlogi/shipments/{shipment}/status"),
                        json!({"status": status}),
                    )
                    .await?;
            }
            Then::RefundRefused => {
                client
                    .sim(
                        reqwest::Method::PUT,
                        "/_sim/faults/refunds.create",
                        json!({"refuse_rate": 1.0}),
                    )
                    .await?;
                client
                    .post(
                        &format!("/api/v1/orders/{order_id}/cancel"),
                        json!({"reason": "在庫切れ"}),
                    )
                    .await?;
                client
                    .wait_for(order_id, |order| order["cancellation"]["needs_attention"] == true)
                    .await?;
                client.sim(reqwest::Method::DELETE, "/_sim/faults", json!({})).await?;
            }
        }
    }
    Ok(Demo {
        token: client.token,
        orders: imported.len(),
    })
}
