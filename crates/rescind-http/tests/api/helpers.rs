//! Starting the server for a test and talking to it.

use rescind_domain::RetryPolicy;
use rescind_http::{AppState, ServiceSettings};
use rescind_store::Store;
use rescind_workflow::{WorkerConfig, Workflow};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::Duration;

pub const ADMIN_TOKEN: &str = "test-platform-operator-token";

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Declares tests that run on both backends: for each `async fn name(app: TestApp)` of the module,
/// `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let app = $crate::helpers::spawn_app($crate::helpers::Backend::Sqlite).await.expect("SQLite always runs");
                    super::$name(app).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(app) = $crate::helpers::spawn_app($crate::helpers::Backend::Postgres).await else {
                        eprintln!("RESCIND_TEST_DATABASE_URL is not set: the PostgreSQL run of this test is skipped");
                        return;
                    };
                    super::$name(app).await;
                }
            )+
        }
    };
}

/// A running server on a fresh database.
pub struct TestApp {
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub store: Store,
    /// The server's handle on its worker (places in it, outcomes).
    pub workflow: Workflow,
    pub backend: Backend,
    database_url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _database: Option<Database>,
}

enum Database {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    /// The schema is dropped when the test ends.
    Postgres {
        url: String,
        schema: String,
    },
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Database::Postgres { url, schema } = self {
            let (url, schema) = (url.clone(), schema.clone());
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async move {
                    use sqlx::Connection;
                    let mut connection = sqlx::PgConnection::connect(&url).await?;
                    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .execute(&mut connection)
                        .await?;
                    connection.close().await
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop test schema {}", self.schema_name());
            }
        }
    }
}

impl Database {
    fn schema_name(&self) -> &str {
        match self {
            Database::Sqlite(_) => "",
            Database::Postgres { schema, .. } => schema,
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// Quick retries and short waits, so tests of flaky partners finish in seconds.
pub fn test_settings() -> ServiceSettings {
    ServiceSettings {
        cancel_wait: Duration::from_secs(2),
        worker: WorkerConfig {
            retry: RetryPolicy {
                attempts_max: 12,
                delay_base_ms: 20,
                delay_max_ms: 200,
            },
            lease: Duration::from_secs(5),
            concurrency: 32,
            partner_timeout: Duration::from_millis(500),
            idle_poll: Duration::from_millis(200),
        },
        // Tests poll channels through the API, when they mean to.
        channel_poll_interval: None,
        webhooks: rescind_workflow::webhooks::DeliveryConfig {
            retry: RetryPolicy {
                attempts_max: 4,
                delay_base_ms: 50,
                delay_max_ms: 200,
            },
            timeout: Duration::from_secs(2),
            lease: Duration::from_secs(5),
            poll: Duration::from_millis(50),
            // The tests' receivers listen on loopback.
            allow_private_targets: true,
        },
    }
}

/// Starts rescind on a fresh database of `backend`; `None` for PostgreSQL when no test database is set.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |state| state).await
}

/// [`spawn_app`] with the application's state adjusted first (an event stream, say).
pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(AppState) -> AppState) -> Option<TestApp> {
    let (database_url, database) = match backend {
        Backend::Sqlite => {
            let directory = tempfile::tempdir().expect("temporary directory");
            let url = format!("sqlite://{}", directory.path().join("rescind.db").display());
            (url, Database::Sqlite(directory))
        }
        Backend::Postgres => {
            let url = std::env::var("RESCIND_TEST_DATABASE_URL")
                .ok()
                .filter(|url| !url.is_empty())?;
            let schema = format!("rescind_test_{:016x}", rand::random::<u64>());
            {
                use sqlx::Connection;
                let mut connection = sqlx::PgConnection::connect(&url)
                    .await
                    .expect("RESCIND_TEST_DATABASE_URL is reachable");
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&mut connection)
                    .await
                    .expect("create test schema");
                connection.close().await.expect("close");
            }
            let separator = if url.contains('?') { '&' } else { '?' };
            let scoped = format!("{url}{separator}options[search_path]={schema}");
            (scoped, Database::Postgres { url, schema })
        }
    };
    Some(serve_on(backend, database_url, Some(database), adjust).await)
}

/// Serves rescind on `database_url`; the database is dropped with the app when `database` is given.
async fn serve_on(
    backend: Backend,
    database_url: String,
    database: Option<Database>,
    adjust: impl FnOnce(AppState) -> AppState,
) -> TestApp {
    let store = Store::open(&database_url).await.expect("the store opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let address = listener.local_addr().expect("address");
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let state = adjust(AppState::new(store.clone(), Some(ADMIN_TOKEN), test_settings()));
    let workflow = state.workflow.clone();
    tokio::spawn(async move {
        let _ = rescind_http::serve(listener, state, async move {
            let _ = stopped.await;
        })
        .await;
    });
    TestApp {
        address,
        client: reqwest::Client::new(),
        store,
        workflow,
        backend,
        database_url,
        shutdown: Some(shutdown),
        _database: database,
    }
}

impl TestApp {
    /// A second rescind on the same database, with its own worker: another process, as several
    /// processes share one PostgreSQL database.
    pub async fn another_process(&self) -> TestApp {
        serve_on(self.backend, self.database_url.clone(), None, |state| state).await
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }
}

/// A shop and its all-scopes token.
#[derive(Clone, Debug)]
pub struct TestShop {
    pub id: String,
    pub token: String,
    pub channel_id: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> Answer {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.send(reqwest::Method::GET, path, Some(token), None, None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.send(reqwest::Method::POST, path, Some(token), Some(body), None)
            .await
    }

    /// A new shop with an own-store channel.
    pub async fn shop(&self) -> TestShop {
        let created = self
            .post("/api/v1/shops", ADMIN_TOKEN, json!({"name": "Test shop"}))
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        let token = created.body["token"].as_str().expect("token").to_owned();
        let id = created.body["shop"]["id"].as_str().expect("shop id").to_owned();
        let channel = self
            .post(
                "/api/v1/channels",
                &token,
                json!({"kind": "own_store", "name": "Web store"}),
            )
            .await;
        assert_eq!(channel.status, 201, "{}", channel.text);
        TestShop {
            id,
            token,
            channel_id: channel.body["id"].as_str().expect("channel id").to_owned(),
        }
    }

    /// Imports an order of the shop's own store: `overrides` replace fields of a paid ¥3,000 order
    /// (two lines of ¥1,000 and ¥500×2… see [`order_body`]).
    pub async fn order(&self, shop: &TestShop, overrides: Value) -> Value {
        let imported = self
            .post("/api/v1/orders", &shop.token, order_body(&shop.channel_id, overrides))
            .await;
        assert_eq!(imported.status, 201, "{}", imported.text);
        imported.body
    }

    pub async fn cancel(&self, shop: &TestShop, order_id: &str, options: Value) -> Answer {
        self.post(&format!("/api/v1/orders/{order_id}/cancel"), &shop.token, options)
            .await
    }

    /// Sends a cancel on a task of its own, for a test to act while it runs; the task answers the
    /// status and the body.
    pub fn spawn_cancel(
        &self,
        shop: &TestShop,
        order_id: &str,
        options: Value,
    ) -> tokio::task::JoinHandle<(u16, Value)> {
        let (client, url, token) = (
            self.client.clone(),
            self.url(&format!("/api/v1/orders/{order_id}/cancel")),
            shop.token.clone(),
        );
        tokio::spawn(async move {
            let response = client.post(url).bearer_auth(token).json(&options).send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        })
    }

    pub async fn order_now(&self, shop: &TestShop, order_id: &str) -> Value {
        let answer = self.get(&format!("/api/v1/orders/{order_id}"), &shop.token).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.body
    }
}

/// A valid import body: ¥1,000 + ¥500×2 + ¥600 shipping = ¥2,600, paid by bank transfer, awaiting
/// shipment. `overrides` replace top-level fields.
pub fn order_body(channel_id: &str, overrides: Value) -> Value {
    let mut body = json!({
        "channel_id": channel_id,
        "currency": "JPY",
        "customer": {"name": "山田 太郎", "email": "taro@example.com", "phone": "090-1234-5678"},
        "shipping_address": {"name": "山田 太郎", "postcode": "150-0001", "prefecture": "東京都",
            "address1": "渋谷区神宮前1-2-3", "phone": "090-1234-5678"},
        "line_items": [
            {"sku": "TEA-001", "title": "Sencha", "quantity": 1, "price": "1000"},
            {"sku": "CUP-002", "title": "Yunomi", "quantity": 2, "price": "500"}
        ],
        "total_shipping": "600",
        "payment": {"method": "bank_transfer", "amount": "2600"},
        "financial_status": "paid",
        "fulfillment_status": "awaiting_shipment"
    });
    if let (Some(body), Some(overrides)) = (body.as_object_mut(), overrides.as_object()) {
        for (key, value) in overrides {
            if value.is_null() {
                body.remove(key);
            } else {
                body.insert(key.clone(), value.clone());
            }
        }
    }
    body
}

/// The step of `kind` in an order's cancellation.
pub fn step<'a>(order: &'a Value, kind: &str) -> &'a Value {
    order["cancellation"]["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|step| step["kind"] == kind))
        .unwrap_or_else(|| panic!("no {kind} step in {order}"))
}

/// The in-process simulator of a test, and how to reach it.
pub struct TestSim {
    pub address: SocketAddr,
    client: reqwest::Client,
}

impl TestSim {
    pub async fn start() -> TestSim {
        let (address, _) = rescind_sim::spawn().await;
        TestSim {
            address,
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A payment at the simulated Stripe: `succeeded` (captured) or `requires_capture` (authorized).
    pub async fn payment(&self, amount: i64, currency: &str, status: &str) -> String {
        let created: Value = self
            .client
            .post(format!("{}/_sim/payment_intents", self.url()))
            .json(&json!({"amount": amount, "currency": currency, "status": status}))
            .send()
            .await
            .expect("the simulator answers")
            .json()
            .await
            .expect("JSON");
        created["id"].as_str().expect("a payment intent id").to_owned()
    }

    pub async fn set_faults(&self, endpoint: &str, faults: Value) {
        let response = self
            .client
            .put(format!("{}/_sim/faults/{endpoint}", self.url()))
            .json(&faults)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    pub async fn clear_faults(&self) {
        self.client
            .delete(format!("{}/_sim/faults", self.url()))
            .send()
            .await
            .unwrap();
    }

    /// The simulated Stripe account's ledger: `payment_intents`, `refunds`, `calls`.
    pub async fn ledger(&self) -> Value {
        self.whole_ledger().await["stripe"].clone()
    }

    /// Every simulated system's ledger, by name (`stripe`, `shopify`, …, `openlogi`).
    pub async fn whole_ledger(&self) -> Value {
        self.client
            .get(format!("{}/_sim/ledger", self.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The refunds of one payment in the ledger.
    pub async fn refunds_of(&self, payment_intent: &str) -> Vec<Value> {
        let ledger = self.ledger().await;
        ledger["refunds"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|refund| refund["payment_intent"] == payment_intent)
            .cloned()
            .collect()
    }
}

/// Credentials the simulator accepts for a channel of `kind`.
pub fn sim_credentials(kind: &str) -> Value {
    rescind_sim::channel_credentials(kind).unwrap_or_else(|| panic!("no simulated channel {kind}"))
}

impl TestApp {
    /// Connects the shop to the simulated channel `kind`; answers the channel id.
    pub async fn sim_channel(&self, shop: &TestShop, sim: &TestSim, kind: &str) -> String {
        let created = self
            .post(
                "/api/v1/channels",
                &shop.token,
                json!({"kind": kind, "name": kind, "base_url": sim.url(), "credentials": sim_credentials(kind)}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        created.body["id"].as_str().unwrap().to_owned()
    }

    /// Turns on customer cancellation requests for the shop.
    pub async fn take_requests(&self, shop: &TestShop) {
        let patched = self
            .send(
                reqwest::Method::PATCH,
                "/api/v1/settings",
                Some(&shop.token),
                Some(json!({"customer_cancellation_requests": true})),
                None,
            )
            .await;
        assert_eq!(patched.status, 200, "{}", patched.text);
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Sets a SKU's stock (creating the SKU).
    pub async fn set_stock(&self, shop: &TestShop, sku: &str, available: i64) {
        let answer = self
            .send(
                reqwest::Method::PUT,
                &format!("/api/v1/inventory/{sku}"),
                Some(&shop.token),
                Some(json!({"available": available})),
                None,
            )
            .await;
        assert_eq!(answer.status, 200, "{}", answer.text);
    }

    /// A SKU's stock level.
    pub async fn stock(&self, shop: &TestShop, sku: &str) -> i64 {
        let answer = self.get(&format!("/api/v1/inventory/{sku}"), &shop.token).await;
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.body["available"].as_i64().unwrap()
    }

    /// Connects the shop to the simulated Stripe; returns the provider id.
    pub async fn stripe(&self, shop: &TestShop, sim: &TestSim) -> String {
        let created = self
            .post(
                "/api/v1/payment_providers",
                &shop.token,
                json!({"kind": "stripe", "name": "Stripe", "base_url": sim.url(),
                       "credentials": {"secret_key": rescind_sim::DEFAULT_SECRET_KEY}}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        created.body["id"].as_str().unwrap().to_owned()
    }

    /// Imports an order paid by card through `provider_id` with payment `reference`.
    pub async fn card_order(&self, shop: &TestShop, provider_id: &str, reference: &str, overrides: Value) -> Value {
        let mut body = json!({
            "payment": {"method": "credit_card", "amount": "2600", "provider_id": provider_id, "reference": reference},
        });
        if let (Some(body), Some(overrides)) = (body.as_object_mut(), overrides.as_object()) {
            body.extend(overrides.clone());
        }
        self.order(shop, body).await
    }

    /// Polls until `done` holds for the order, or panics after `seconds`.
    pub async fn wait_for_order(
        &self,
        shop: &TestShop,
        order_id: &str,
        seconds: u64,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
        loop {
            let order = self.order_now(shop, order_id).await;
            if done(&order) {
                return order;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "order {order_id} did not get there in {seconds} s: {order}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
