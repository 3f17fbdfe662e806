//! `rescind bench`: how many cancellations per second rescind carries out, and how fast each answers.
//!
//! It starts this very binary as `rescind serve` on a fresh database (an SQLite file in a temporary
//! folder, or a new database on the PostgreSQL server given), creates a shop, imports orders over HTTP
//! and cancels them with concurrent keep-alive clients, then prints cancellations per second, latency
//! percentiles and the server's peak memory. Next to each figure it prints the reference it is measured
//! against: pgbench's TPC-B-like transaction on the same PostgreSQL server at the same client count, or
//! on SQLite a loop committing one small transaction per cancellation with rescind's durability settings.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod wire;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Own-store orders cancelled as fast as the clients can: the core path.
    OwnStore,
    /// Own-store orders cancelled at a steady `--rate` per second: latency when not saturated.
    Steady,
    /// Marketplace orders paid by card, with stock: channel cancel, card refund and restock against
    /// `rescind-sim` on loopback.
    Workflow,
    /// One bulk request of 1000 orders.
    Bulk,
    /// The own-store scenario with `--large-orders` orders already stored.
    Large,
    /// `GET /healthz` (no database, no JSON body to read) from the same clients, `--orders` times:
    /// the most requests per second this machine's cores answer over HTTP at all, with the clients
    /// beside the server — the ceiling over every other scenario.
    HttpFloor,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// `sqlite` (a fresh file in a temporary folder) or a PostgreSQL server URL
    /// (`postgres://user@host:port/db`; a fresh database is created there and dropped afterwards).
    #[arg(long, default_value = SQLITE)]
    database_url: String,
    /// Orders cancelled per scenario.
    #[arg(long, default_value_t = 10_000)]
    orders: usize,
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Scenarios to run, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "own-store,steady,workflow,bulk"
    )]
    scenarios: Vec<Scenario>,
    /// Cancellations per second of the steady scenario.
    #[arg(long, default_value_t = 2_000)]
    rate: u32,
    /// Orders stored before the large scenario measures.
    #[arg(long, default_value_t = 1_000_000)]
    large_orders: usize,
    /// How long pgbench runs for the PostgreSQL reference.
    #[arg(long, default_value_t = 10)]
    reference_seconds: u64,
    /// Skip the reference measurements.
    #[arg(long)]
    no_reference: bool,
    /// `rescind serve` processes sharing the database (more than one needs PostgreSQL); the clients
    /// are spread over them in turn.
    #[arg(long, default_value_t = 1)]
    processes: usize,
    /// Steps each server runs at once (its `--worker-concurrency`).
    #[arg(long, default_value_t = 64)]
    worker_concurrency: usize,
    /// How long a cancel waits for its steps before answering 202 (the servers' `--cancel-wait-ms`);
    /// 0 answers at once, leaving the steps to run behind the answer.
    #[arg(long, default_value_t = 5_000)]
    cancel_wait_ms: u64,
    /// Send each cancel with an `Idempotency-Key` of its own, as API.md asks clients to (B3).
    #[arg(long)]
    idempotency_keys: bool,
}

/// The `--database-url` that means SQLite: a fresh file in a temporary folder.
const SQLITE: &str = "sqlite";

impl BenchArgs {
    /// Whether the benchmark runs on SQLite rather than on a PostgreSQL server.
    fn on_sqlite(&self) -> bool {
        self.database_url == SQLITE
    }
}

/// The figures of one measured run.
struct Run {
    done: usize,
    failed: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
    /// CPU time spent over the run: steadier than throughput on a machine whose speed drifts, and it
    /// counts the work, not the waiting.
    cpu: CpuTimes,
}

impl Run {
    fn per_second(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn percentile_ms(&self, percentile: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let index = ((self.latencies_us.len() as f64 * percentile / 100.0).ceil() as usize)
            .clamp(1, self.latencies_us.len())
            - 1;
        self.latencies_us[index] as f64 / 1000.0
    }

    fn summary(&self) -> String {
        let each = |spent: Duration| spent.as_secs_f64() * 1e6 / (self.done + self.failed).max(1) as f64;
        let postgres = self
            .cpu
            .postgres
            .map(|spent| format!(", PostgreSQL {:.0} µs", each(spent)))
            .unwrap_or_default();
        format!(
            "{:>9.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  ({} ok, {} failed, {:.2} s, server CPU {:.0} µs each (group writer {:.0}){postgres}, clients {:.0} µs)",
            self.per_second(),
            self.percentile_ms(50.0),
            self.percentile_ms(99.0),
            self.percentile_ms(99.9),
            self.done,
            self.failed,
            self.elapsed.as_secs_f64(),
            each(self.cpu.server),
            each(self.cpu.writer),
            each(self.cpu.clients)
        )
    }
}

/// CPU time (user and system) used so far, or over a run, by whom.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct CpuTimes {
    /// The servers, whole.
    server: Duration,
    /// The servers' group writer threads: the one stage every change passes in turn.
    writer: Duration,
    /// This machine's PostgreSQL processes, on a benchmark of a PostgreSQL server here; none
    /// otherwise (SQLite, or a server elsewhere).
    postgres: Option<Duration>,
    /// This process: the benchmark's clients, on the cores the servers run on.
    clients: Duration,
}

impl CpuTimes {
    fn now(server: &Server) -> CpuTimes {
        CpuTimes {
            server: server.cpu_time(),
            writer: server.writer_cpu_time(),
            postgres: server.on_postgres.then(postgres_cpu_time).flatten(),
            clients: cpu_time(Path::new("/proc/self/stat")),
        }
    }

    /// What was spent since `before`.
    fn since(self, before: CpuTimes) -> CpuTimes {
        CpuTimes {
            server: self.server.saturating_sub(before.server),
            writer: self.writer.saturating_sub(before.writer),
            postgres: self
                .postgres
                .zip(before.postgres)
                .map(|(now, then)| now.saturating_sub(then)),
            clients: self.clients.saturating_sub(before.clients),
        }
    }
}

pub async fn run(args: BenchArgs) -> Result<()> {
    anyhow::ensure!(
        args.orders > 0 && args.clients > 0 && args.processes > 0,
        "--orders, --clients and --processes must be at least 1"
    );
    anyhow::ensure!(
        args.processes == 1 || !args.on_sqlite(),
        "several processes share a PostgreSQL database; an SQLite file belongs to one process"
    );
    let backend = if args.on_sqlite() { "SQLite" } else { "PostgreSQL" };
    println!(
        "rescind bench: {backend}, {} orders per scenario, {} clients, {} process{}, {} cores",
        args.orders,
        args.clients,
        args.processes,
        if args.processes == 1 { "" } else { "es" },
        std::thread::available_parallelism().map_or(1, |cores| cores.get())
    );
    let reference = if args.no_reference {
        None
    } else {
        Some(reference(&args).await?)
    };
    if let Some(reference) = &reference {
        println!("reference: {}", reference.describe);
    }
    for scenario in &args.scenarios {
        let database = Database::create(&args.database_url).await?;
        let server = Server::start(&database.url, &args).await?;
        let outcome = run_scenario(*scenario, &args, &server).await;
        let peak = server.peak_rss_mb();
        server.stop().await;
        database.drop().await;
        let line = outcome?;
        let ratio = match (&reference, &line.run) {
            (Some(reference), Some(run)) if matches!(scenario, Scenario::OwnStore | Scenario::Large) => {
                format!("  = {:.2}× the reference", run.per_second() / reference.per_second)
            }
            _ => String::new(),
        };
        println!(
            "{:<10} {}{ratio}  server peak RSS {peak:.0} MB",
            format!("{scenario:?}"),
            line.text
        );
    }
    Ok(())
}

struct ScenarioLine {
    text: String,
    run: Option<Run>,
}

async fn run_scenario(scenario: Scenario, args: &BenchArgs, server: &Server) -> Result<ScenarioLine> {
    let client = http_client(args.clients);
    let shop = Shop::create(&client, server).await?;
    match scenario {
        Scenario::OwnStore | Scenario::Large => {
            if scenario == Scenario::Large {
                let started = Instant::now();
                import_orders(&client, server, &shop, args.large_orders, args.clients, "seed").await?;
                println!(
                    "  stored {} orders in {:.0} s",
                    args.large_orders,
                    started.elapsed().as_secs_f64()
                );
            }
            let run = import_and_cancel(&client, server, &shop, args, None).await?;
            Ok(ScenarioLine {
                text: run.summary(),
                run: Some(run),
            })
        }
        Scenario::Steady => {
            let run = import_and_cancel(&client, server, &shop, args, Some(args.rate)).await?;
            Ok(ScenarioLine {
                text: format!("at {}/s offered: {}", args.rate, run.summary()),
                run: Some(run),
            })
        }
        Scenario::Bulk => {
            let mut timings = Vec::new();
            for round in 0..3 {
                let (ids, _) =
                    import_orders(&client, server, &shop, 1000, args.clients, &format!("bulk{round}")).await?;
                let started = Instant::now();
                let answer = client
                    .post(server.url("/api/v1/orders/cancel"))
                    .bearer_auth(&shop.token)
                    .json(&json!({"order_ids": ids, "refund_method": "store_credit"}))
                    .send()
                    .await?;
                let status = answer.status();
                let body: Value = answer.json().await?;
                let elapsed = started.elapsed();
                let ok = body["results"].as_array().map_or(0, |results| {
                    results.iter().filter(|result| result["ok"] == true).count()
                });
                if !status.is_success() || ok != 1000 {
                    bail!("the bulk cancel answered {status} with {ok} of 1000 cancelled");
                }
                timings.push(elapsed.as_secs_f64());
            }
            Ok(ScenarioLine {
                text: format!(
                    "1000 orders in one request: {}",
                    timings
                        .iter()
                        .map(|seconds| format!("{seconds:.3} s"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                run: None,
            })
        }
        Scenario::Workflow => workflow(args, &client, server, &shop).await,
        Scenario::HttpFloor => {
            let run = run_calls(server, &shop, Call::Health(args.orders), args.clients, None).await?;
            Ok(ScenarioLine {
                text: format!("GET /healthz {}", run.summary()),
                run: Some(run),
            })
        }
    }
}

/// Imports `--orders` own-store orders (printing how that went) and cancels every one, at `rate` per
/// second or as fast as the clients go.
async fn import_and_cancel(
    client: &reqwest::Client,
    server: &Server,
    shop: &Shop,
    args: &BenchArgs,
    rate: Option<u32>,
) -> Result<Run> {
    let (ids, imported) = import_orders(client, server, shop, args.orders, args.clients, "bench").await?;
    println!("  imported {} orders: {}", ids.len(), imported.summary());
    run_calls(
        server,
        shop,
        Call::cancel(ids, own_store_cancel(), args),
        args.clients,
        rate,
    )
    .await
}

/// Marketplace orders with card payments and deducted stock, cancelled against the simulators.
async fn workflow(args: &BenchArgs, client: &reqwest::Client, server: &Server, shop: &Shop) -> Result<ScenarioLine> {
    let (sim_address, _sim) = rescind_sim::spawn().await;
    let sim_url = format!("http://{sim_address}");
    let post = |path: &str, body: Value| {
        client
            .post(server.url(path))
            .bearer_auth(&shop.token)
            .json(&body)
            .send()
    };
    let channel: Value = post(
        "/api/v1/channels",
        json!({"kind": "shopify", "name": "Shopify", "base_url": sim_url,
               "credentials": {"access_token": "shpat_bench", "webhook_secret": "bench"}}),
    )
    .await?
    .json()
    .await?;
    let provider: Value = post(
        "/api/v1/payment_providers",
        json!({"kind": "stripe", "name": "Stripe", "base_url": sim_url,
               "credentials": {"secret_key": rescind_sim::DEFAULT_SECRET_KEY}}),
    )
    .await?
    .json()
    .await?;
    // Every SKU the orders hold is stocked, so each restock succeeds (a SKU not stocked here would
    // fail its step and leave the cancellation needing attention, I4).
    for sku in ORDER_SKUS {
        client
            .put(server.url(&format!("/api/v1/inventory/{sku}")))
            .bearer_auth(&shop.token)
            .json(&json!({"available": 1_000_000_000}))
            .send()
            .await?
            .error_for_status()?;
    }
    let channel_id = channel["id"].as_str().context("channel id")?.to_owned();
    let provider_id = provider["id"].as_str().context("provider id")?.to_owned();

    let next = Arc::new(AtomicUsize::new(0));
    let orders = args.orders;
    let ids = Arc::new(std::sync::Mutex::new(Vec::with_capacity(orders)));
    let mut tasks = Vec::new();
    for number in 0..args.clients {
        let (client, next, ids, sim_url) = (client.clone(), next.clone(), ids.clone(), sim_url.clone());
        let (channel_id, provider_id, token, base) = (
            channel_id.clone(),
            provider_id.clone(),
            shop.token.clone(),
            server.base_for(number),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= orders {
                    return Ok::<(), anyhow::Error>(());
                }
                let external = format!("bench-{index}");
                client
                    .post(format!("{sim_url}/_sim/shopify/orders"))
                    .json(&json!({"id": external}))
                    .send()
                    .await?;
                let intent: Value = client
                    .post(format!("{sim_url}/_sim/payment_intents"))
                    .json(&json!({"amount": 2600, "currency": "jpy", "status": "succeeded"}))
                    .send()
                    .await?
                    .json()
                    .await?;
                let mut body = order_body(&channel_id, &format!("W{index}"));
                body["channel_order_id"] = json!(external);
                body["deduct_inventory"] = json!(true);
                body["payment"] = json!({"method": "credit_card", "amount": "2600", "provider_id": provider_id,
                                         "reference": intent["id"]});
                let imported: Value = client
                    .post(format!("{base}/api/v1/orders"))
                    .bearer_auth(&token)
                    .json(&body)
                    .send()
                    .await?
                    .json()
                    .await?;
                let id = imported["id"].as_str().context("imported order id")?.to_owned();
                ids.lock().expect("ids").push(id);
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let ids = std::mem::take(&mut *ids.lock().expect("ids"));
    let started = Instant::now();
    let run = run_calls(
        server,
        shop,
        Call::cancel(ids.clone(), json!({"reason_code": "CUSTOMER"}), args),
        args.clients,
        None,
    )
    .await?;
    // Every cancellation must have finished all its steps: wait for the ones answered 202.
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if first_listed(client, server, shop, "/api/v1/orders?cancellation_status=processing")
            .await?
            .is_none()
        {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "cancellations still processing after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled = started.elapsed();
    // Settled means every step done: none may have failed into needing attention.
    if let Some(first) = first_listed(client, server, shop, "/api/v1/cancellations?needs_attention=true").await? {
        anyhow::bail!(
            "cancellation {} settled needing attention: {}",
            first["id"],
            first["last_error"]
        );
    }
    Ok(ScenarioLine {
        text: format!(
            "answers {}; all {} settled (channel, refund, restock) at {:.0}/s",
            run.summary(),
            ids.len(),
            ids.len() as f64 / settled.as_secs_f64()
        ),
        run: Some(run),
    })
}

/// The first item of a list the shop reads (`path` with its query), if the list has any.
async fn first_listed(client: &reqwest::Client, server: &Server, shop: &Shop, path: &str) -> Result<Option<Value>> {
    let listed: Value = client
        .get(server.url(&format!("{path}&limit=1")))
        .bearer_auth(&shop.token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(listed["items"].as_array().and_then(|items| items.first()).cloned())
}

fn http_client(clients: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(clients * 2)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("an HTTP client")
}

/// The cancel of an own-store order: the money goes back as store credit.
fn own_store_cancel() -> Value {
    json!({"reason": "customer asked", "refund_method": "store_credit"})
}

/// The SKUs of [`order_body`]'s lines.
const ORDER_SKUS: [&str; 2] = ["TEA-001", "CUP-002"];

/// A valid own-store order of ¥2,600.
fn order_body(channel_id: &str, number: &str) -> Value {
    json!({
        "channel_id": channel_id,
        "number": number,
        "currency": "JPY",
        "customer": {"name": "山田 太郎", "email": "taro@example.com", "phone": "090-1234-5678"},
        "shipping_address": {"name": "山田 太郎", "postcode": "150-0001", "prefecture": "東京都",
            "address1": "渋谷区神宮前1-2-3", "phone": "090-1234-5678"},
        "line_items": [
            {"sku": ORDER_SKUS[0], "title": "Sencha", "quantity": 1, "price": "1000"},
            {"sku": ORDER_SKUS[1], "title": "Yunomi", "quantity": 2, "price": "500"}
        ],
        "total_shipping": "600",
        "payment": {"method": "bank_transfer", "amount": "2600"},
        "financial_status": "paid",
        "fulfillment_status": "awaiting_shipment"
    })
}

struct Shop {
    token: String,
    channel_id: String,
}

impl Shop {
    async fn create(client: &reqwest::Client, server: &Server) -> Result<Shop> {
        let created: Value = client
            .post(server.url("/api/v1/shops"))
            .bearer_auth(&server.admin_token)
            .json(&json!({"name": "Bench Tea"}))
            .send()
            .await?
            .json()
            .await?;
        let token = created["token"].as_str().context("shop token")?.to_owned();
        let channel: Value = client
            .post(server.url("/api/v1/channels"))
            .bearer_auth(&token)
            .json(&json!({"kind": "own_store", "name": "Own store"}))
            .send()
            .await?
            .json()
            .await?;
        Ok(Shop {
            token,
            channel_id: channel["id"].as_str().context("channel id")?.to_owned(),
        })
    }
}

/// Imports `count` own-store orders with `clients` concurrent clients; answers their ids and the run.
async fn import_orders(
    client: &reqwest::Client,
    server: &Server,
    shop: &Shop,
    count: usize,
    clients: usize,
    prefix: &str,
) -> Result<(Vec<String>, Run)> {
    let next = Arc::new(AtomicUsize::new(0));
    let cpu_before = CpuTimes::now(server);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for number in 0..clients {
        let (client, next, url, token) = (
            client.clone(),
            next.clone(),
            format!("{}/api/v1/orders", server.base_for(number)),
            shop.token.clone(),
        );
        let (channel_id, prefix) = (shop.channel_id.clone(), prefix.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut latencies = Vec::new();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    return Ok::<_, anyhow::Error>((ids, latencies));
                }
                let sent = Instant::now();
                let answer = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&order_body(&channel_id, &format!("{prefix}-{index}")))
                    .send()
                    .await?;
                let status = answer.status();
                let body: Value = answer.json().await?;
                latencies.push(sent.elapsed().as_micros() as u64);
                if status.as_u16() != 201 {
                    bail!("import answered {status}: {body}");
                }
                ids.push(body["id"].as_str().context("order id")?.to_owned());
            }
        }));
    }
    let mut ids = Vec::with_capacity(count);
    let mut latencies = Vec::with_capacity(count);
    for task in tasks {
        let (task_ids, task_latencies) = task.await??;
        ids.extend(task_ids);
        latencies.extend(task_latencies);
    }
    latencies.sort_unstable();
    let run = Run {
        done: ids.len(),
        failed: 0,
        elapsed: started.elapsed(),
        latencies_us: latencies,
        cpu: CpuTimes::now(server).since(cpu_before),
    };
    Ok((ids, run))
}

/// What each client request of a measured run is.
enum Call {
    /// `POST /api/v1/orders/{id}/cancel` with this JSON body, once per order; with an
    /// `Idempotency-Key` each when keys begin with the given text (`--idempotency-keys`).
    Cancel(Vec<String>, Vec<u8>, Option<String>),
    /// `GET /healthz`, this many times.
    Health(usize),
}

impl Call {
    fn cancel(ids: Vec<String>, body: Value, args: &BenchArgs) -> Call {
        let keys = args
            .idempotency_keys
            .then(|| format!("bench-{:016x}-", rand::random::<u64>()));
        Call::Cancel(ids, body.to_string().into_bytes(), keys)
    }

    fn count(&self) -> usize {
        match self {
            Call::Cancel(ids, ..) => ids.len(),
            Call::Health(count) => *count,
        }
    }

    /// Sends the `index`th request on `wire`.
    async fn send(&self, wire: &mut wire::Wire, token: &str, index: usize) -> Result<wire::Answer> {
        Ok(match self {
            Call::Cancel(ids, body, keys) => {
                let path = format!("/api/v1/orders/{}/cancel", ids[index]);
                let key = keys.as_ref().map(|keys| format!("{keys}{index}"));
                wire.send("POST", &path, Some(token), key.as_deref(), Some(body))
                    .await?
            }
            // The floor: no token to check either.
            Call::Health(_) => wire.send("GET", "/healthz", None, None, None).await?,
        })
    }
}

/// Sends every request of `call` (every order's cancel, or the health checks) with `clients`
/// concurrent clients, as fast as they can or, with `rate`, on a fixed schedule (latency then counts
/// from the scheduled moment, so queueing shows).
async fn run_calls(server: &Server, shop: &Shop, call: Call, clients: usize, rate: Option<u32>) -> Result<Run> {
    let count = call.count();
    let call = Arc::new(call);
    let cpu_before = CpuTimes::now(server);
    let started = Instant::now();
    let pace = Pace::start(count, rate, started);
    let mut tasks = Vec::new();
    for number in 0..clients {
        let (pace, call, token) = (pace.clone(), call.clone(), shop.token.clone());
        let mut wire = wire::Wire::to(&server.base_for(number))?;
        tasks.push(tokio::spawn(async move {
            let (mut latencies, mut failed, mut first_failure) = (Vec::new(), 0usize, None);
            loop {
                let Some((index, scheduled)) = pace.next(count).await else {
                    return Ok::<_, anyhow::Error>((latencies, failed, first_failure));
                };
                let answer = call.send(&mut wire, &token, index).await?;
                latencies.push(scheduled.elapsed().as_micros() as u64);
                if answer.status != 200 && answer.status != 202 {
                    failed += 1;
                    first_failure.get_or_insert(answer);
                }
            }
        }));
    }
    let mut latencies = Vec::with_capacity(count);
    let mut failed = 0;
    let mut first_failure = None;
    for task in tasks {
        let (task_latencies, task_failed, task_failure) = task.await??;
        latencies.extend(task_latencies);
        failed += task_failed;
        first_failure = first_failure.or(task_failure);
    }
    if let Some(failure) = first_failure {
        println!(
            "  {failed} requests failed; one answered {}: {}",
            failure.status,
            String::from_utf8_lossy(&failure.body)
        );
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Ok(Run {
        done: latencies.len() - failed,
        failed,
        elapsed,
        latencies_us: latencies,
        cpu: CpuTimes::now(server).since(cpu_before),
    })
}

/// Which order a client cancels next, and from when its latency counts.
#[derive(Clone)]
enum Pace {
    /// As fast as the clients can: each takes the next order as soon as it is free.
    Saturating(Arc<AtomicUsize>),
    /// At a steady rate: a thread of its own hands each order out at its scheduled time, sleeping
    /// with the operating system's timer. (Each client sleeping on tokio's timer, which rounds a
    /// deadline up to its next millisecond, added 0.5–1 ms to every latency counted from the
    /// schedule.) An order no client is free to take waits, and its latency still counts from the
    /// schedule (no coordinated omission).
    Steady(Arc<tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<(usize, Instant)>>>),
}

impl Pace {
    fn start(count: usize, rate: Option<u32>, started: Instant) -> Pace {
        let Some(rate) = rate else {
            return Pace::Saturating(Arc::new(AtomicUsize::new(0)));
        };
        let (schedule, scheduled) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for index in 0..count {
                let at = started + Duration::from_secs_f64(index as f64 / f64::from(rate.max(1)));
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                if schedule.send((index, at)).is_err() {
                    return;
                }
            }
        });
        Pace::Steady(Arc::new(tokio::sync::Mutex::new(scheduled)))
    }

    /// The next order's index and the time its latency counts from; `None` once all are taken.
    async fn next(&self, count: usize) -> Option<(usize, Instant)> {
        match self {
            Pace::Saturating(next) => {
                let index = next.fetch_add(1, Ordering::Relaxed);
                (index < count).then(Instant::now).map(|now| (index, now))
            }
            Pace::Steady(scheduled) => scheduled.lock().await.recv().await,
        }
    }
}

/// A fresh database for one scenario.
struct Database {
    url: String,
    /// The SQLite file's folder, removed on drop.
    folder: Option<PathBuf>,
    /// The PostgreSQL server URL and the database made on it.
    postgres: Option<(String, String)>,
}

impl Database {
    async fn create(database_url: &str) -> Result<Database> {
        if database_url == SQLITE {
            let folder = std::env::temp_dir().join(format!("rescind-bench-{:016x}", rand::random::<u64>()));
            std::fs::create_dir_all(&folder)?;
            return Ok(Database {
                url: format!("sqlite://{}", folder.join("rescind.db").display()),
                folder: Some(folder),
                postgres: None,
            });
        }
        let name = format!("rescind_bench_{:016x}", rand::random::<u64>());
        postgres_execute(database_url, &format!("CREATE DATABASE {name}")).await?;
        Ok(Database {
            url: with_database(database_url, &name)?,
            folder: None,
            postgres: Some((database_url.to_owned(), name)),
        })
    }

    async fn drop(self) {
        if let Some(folder) = &self.folder {
            let _ = std::fs::remove_dir_all(folder);
        }
        if let Some((server, name)) = &self.postgres {
            let _ = postgres_execute(server, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        }
    }
}

async fn postgres_execute(url: &str, statement: &str) -> Result<()> {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    sqlx::query(statement).execute(&mut connection).await?;
    connection.close().await?;
    Ok(())
}

/// `url` with its database name replaced by `name`.
fn with_database(url: &str, name: &str) -> Result<String> {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(base, query)| (base, Some(query)));
    let authority_end = base
        .find("://")
        .map(|scheme| scheme + 3)
        .and_then(|start| base[start..].find('/').map(|slash| start + slash))
        .unwrap_or(base.len());
    let mut replaced = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        replaced.push('?');
        replaced.push_str(query);
    }
    Ok(replaced)
}

/// `rescind serve` in child processes on one database.
struct Server {
    children: Vec<tokio::process::Child>,
    /// The first process's address: the setup goes there.
    base: String,
    /// Every process's address; clients take them in turn.
    bases: Vec<String>,
    admin_token: String,
    /// Whether the servers run on PostgreSQL.
    on_postgres: bool,
}

/// The `RUST_LOG` filter of the servers the benchmark starts, when set; their log then goes to the
/// benchmark's standard output (e.g. `warn,rescind_store=debug` for each group the writer commits).
const SERVER_LOG: &str = "RESCIND_BENCH_SERVER_LOG";

impl Server {
    async fn start(database_url: &str, args: &BenchArgs) -> Result<Server> {
        let processes = args.processes;
        let admin_token = format!("bench-{:016x}", rand::random::<u64>());
        let server_log = std::env::var(SERVER_LOG).ok();
        let mut children = Vec::with_capacity(processes);
        let mut bases = Vec::with_capacity(processes);
        // One after another: the first applies the migrations.
        for _ in 0..processes {
            let port = {
                let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
                listener.local_addr()?.port()
            };
            let child = tokio::process::Command::new(std::env::current_exe()?)
                .args([
                    "serve",
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--database-url",
                    database_url,
                ])
                .args(["--channel-poll-interval-s", "0"])
                .args(["--worker-concurrency", &args.worker_concurrency.to_string()])
                .args(["--cancel-wait-ms", &args.cancel_wait_ms.to_string()])
                .env("RESCIND_ADMIN_TOKEN", &admin_token)
                .env("RUST_LOG", server_log.as_deref().unwrap_or("warn"))
                // The server logs to its standard output: shown only when asked for.
                .stdout(if server_log.is_some() {
                    Stdio::inherit()
                } else {
                    Stdio::null()
                })
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .context("cannot start rescind serve")?;
            children.push(child);
            let base = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Ok(answer) = reqwest::get(format!("{base}/healthz")).await {
                    if answer.status().is_success() {
                        break;
                    }
                }
                anyhow::ensure!(Instant::now() < deadline, "rescind serve did not come up in 60 s");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            bases.push(base);
        }
        Ok(Server {
            children,
            base: bases[0].clone(),
            bases,
            admin_token,
            on_postgres: !args.on_sqlite(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The process a client takes, in turn.
    fn base_for(&self, client: usize) -> String {
        self.bases[client % self.bases.len()].clone()
    }

    /// The processes' peak resident memory (VmHWM), in MB: the largest one's.
    /// The CPU time the processes have used so far (user and system).
    fn cpu_time(&self) -> Duration {
        self.children
            .iter()
            .filter_map(|child| child.id())
            .map(|pid| cpu_time(Path::new(&format!("/proc/{pid}/stat"))))
            .sum()
    }

    /// The CPU time the processes' group writer threads have used so far.
    fn writer_cpu_time(&self) -> Duration {
        self.children
            .iter()
            .filter_map(|child| child.id())
            .filter_map(|pid| std::fs::read_dir(format!("/proc/{pid}/task")).ok())
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
            .filter_map(|stat| match stat_name_and_ticks(&stat) {
                Some((WRITER_THREAD, ticks)) => Some(ticks_to_duration(ticks)),
                _ => None,
            })
            .sum()
    }

    fn peak_rss_mb(&self) -> f64 {
        self.children
            .iter()
            .filter_map(|child| child.id())
            .map(|pid| peak_rss_kb(Path::new(&format!("/proc/{pid}/status"))) as f64 / 1024.0)
            .fold(0.0, f64::max)
    }

    async fn stop(self) {
        for mut child in self.children {
            if let Some(pid) = child.id() {
                // SIGTERM: a graceful stop.
                let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

/// Clock ticks per second of `/proc/PID/stat`'s times (`USER_HZ`, 100 on Linux).
const CLOCK_TICKS_PER_SECOND: u64 = 100;

/// The name the group writer's thread goes by (`rescind-store`'s writers, on either backend).
const WRITER_THREAD: &str = "rescind-writer";

/// A process's user and system CPU time from its `/proc/PID/stat` (zero when unreadable).
fn cpu_time(stat: &Path) -> Duration {
    let ticks = std::fs::read_to_string(stat)
        .ok()
        .and_then(|text| Some(stat_name_and_ticks(&text)?.1));
    ticks_to_duration(ticks.unwrap_or(0))
}

/// A process's or thread's name and its user and system CPU time in clock ticks, from its `stat`
/// line (`PID (NAME) STATE …`; the name may hold spaces and parentheses).
fn stat_name_and_ticks(stat: &str) -> Option<(&str, u64)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of the line, 12 and 13 after the name.
    Some((
        name,
        fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?,
    ))
}

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_millis(ticks * 1000 / CLOCK_TICKS_PER_SECOND)
}

/// The CPU time every process named `postgres` on this machine has used so far (the server and its
/// backends, the benchmark's own and any other's); none when there is none to read.
fn postgres_cpu_time() -> Option<Duration> {
    let mut ticks = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        if !entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.bytes().all(|byte| byte.is_ascii_digit()))
        {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some(("postgres", spent)) = stat_name_and_ticks(&stat) {
            *ticks.get_or_insert(0) += spent;
        }
    }
    ticks.map(ticks_to_duration)
}

fn peak_rss_kb(status: &Path) -> u64 {
    std::fs::read_to_string(status)
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse().ok())
        })
        .unwrap_or(0)
}

/// What rescind's cancellations are compared against.
struct Reference {
    per_second: f64,
    describe: String,
}

async fn reference(args: &BenchArgs) -> Result<Reference> {
    if args.on_sqlite() {
        sqlite_reference(args.orders).await
    } else {
        pgbench_reference(&args.database_url, args.clients, args.reference_seconds).await
    }
}

/// One small transaction per cancellation, committed one after another with rescind's durability
/// settings (WAL, synchronous=FULL): the most a single SQLite writer commits without grouping.
async fn sqlite_reference(count: usize) -> Result<Reference> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    use sqlx::ConnectOptions;
    let folder = std::env::temp_dir().join(format!("rescind-bench-ref-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&folder)?;
    let mut connection = SqliteConnectOptions::new()
        .filename(folder.join("reference.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .connect()
        .await?;
    sqlx::query("CREATE TABLE cancellations (id INTEGER PRIMARY KEY, status TEXT NOT NULL, at INTEGER NOT NULL)")
        .execute(&mut connection)
        .await?;
    let started = Instant::now();
    for index in 0..count as i64 {
        let mut tx = sqlx::Connection::begin(&mut connection).await?;
        sqlx::query("INSERT INTO cancellations (id, status, at) VALUES ($1, 'completed', $2)")
            .bind(index)
            .bind(index)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    let per_second = count as f64 / started.elapsed().as_secs_f64();
    drop(connection);
    let _ = std::fs::remove_dir_all(&folder);
    Ok(Reference {
        per_second,
        describe: format!(
            "SQLite, one INSERT committed per transaction (WAL, synchronous=FULL): {per_second:.0} commits/s"
        ),
    })
}

/// pgbench's built-in TPC-B-like transaction on a scratch database of the same server.
async fn pgbench_reference(server: &str, clients: usize, seconds: u64) -> Result<Reference> {
    let name = format!("rescind_pgbench_{:016x}", rand::random::<u64>());
    postgres_execute(server, &format!("CREATE DATABASE {name}")).await?;
    let url = with_database(server, &name)?;
    let outcome = async {
        let init = tokio::process::Command::new("pgbench")
            .args(["-i", "-q", "-s", "10", &url])
            .output()
            .await
            .context("pgbench is not installed")?;
        anyhow::ensure!(
            init.status.success(),
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let threads = clients.min(std::thread::available_parallelism().map_or(2, |cores| cores.get()));
        let run = tokio::process::Command::new("pgbench")
            .args([
                "-n",
                "-M",
                "prepared",
                "-c",
                &clients.to_string(),
                "-j",
                &threads.to_string(),
            ])
            .args(["-T", &seconds.to_string(), &url])
            .output()
            .await?;
        let out = String::from_utf8_lossy(&run.stdout).into_owned();
        anyhow::ensure!(
            run.status.success(),
            "pgbench failed: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let tps: f64 = out
            .lines()
            .find(|line| line.starts_with("tps = "))
            .and_then(|line| line.trim_start_matches("tps = ").split_whitespace().next())
            .and_then(|tps| tps.parse().ok())
            .context("pgbench printed no tps")?;
        Ok(Reference {
            per_second: tps,
            describe: format!("pgbench TPC-B-like (scale 10, prepared), {clients} clients, {seconds} s: {tps:.0} tps"),
        })
    }
    .await;
    let _ = postgres_execute(server, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_gets_the_new_database_name_and_keeps_its_parameters() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "bench").unwrap(),
            "postgres://postgres@127.0.0.1:5432/bench"
        );
        assert_eq!(
            with_database("postgres://u:p@db/x?sslmode=disable", "bench").unwrap(),
            "postgres://u:p@db/bench?sslmode=disable"
        );
        assert_eq!(with_database("postgres://db", "bench").unwrap(), "postgres://db/bench");
    }

    #[test]
    fn a_stat_line_gives_its_name_and_its_user_and_system_ticks_whatever_the_name_holds() {
        let writer = "4242 (rescind-writer) S 1 4240 4240 0 -1 4194368 1200 0 0 0 731 269 0 0 20 0 9 0 1234 0 0";
        assert_eq!(stat_name_and_ticks(writer), Some(("rescind-writer", 1000)));
        let odd = "77 (a (b) c) R 1 77 77 0 -1 0 0 0 0 0 5 7 0 0 20 0 1 0 1 0 0";
        assert_eq!(stat_name_and_ticks(odd), Some(("a (b) c", 12)));
        assert_eq!(stat_name_and_ticks("77 (cut short) R 1"), None);
        assert_eq!(ticks_to_duration(250), Duration::from_millis(2500));
    }

    #[test]
    fn cpu_spent_over_a_run_is_what_each_part_used_since_its_start() {
        let before = CpuTimes {
            server: Duration::from_millis(1000),
            writer: Duration::from_millis(400),
            postgres: Some(Duration::from_millis(5000)),
            clients: Duration::from_millis(300),
        };
        let after = CpuTimes {
            server: Duration::from_millis(1600),
            writer: Duration::from_millis(650),
            postgres: Some(Duration::from_millis(5900)),
            clients: Duration::from_millis(380),
        };
        let spent = after.since(before);
        assert_eq!(spent.server, Duration::from_millis(600));
        assert_eq!(spent.writer, Duration::from_millis(250));
        assert_eq!(spent.postgres, Some(Duration::from_millis(900)));
        assert_eq!(spent.clients, Duration::from_millis(80));
        // No PostgreSQL here to read: none, never a figure made up.
        let on_sqlite = CpuTimes {
            postgres: None,
            ..after
        }
        .since(CpuTimes {
            postgres: None,
            ..before
        });
        assert_eq!(on_sqlite.postgres, None);
    }

    #[test]
    fn percentiles_are_read_from_the_sorted_latencies() {
        let run = Run {
            done: 1000,
            failed: 0,
            elapsed: Duration::from_secs(2),
            latencies_us: (1..=1000).map(|ms| ms * 1000).collect(),
            cpu: CpuTimes {
                server: Duration::from_millis(300),
                writer: Duration::from_millis(120),
                postgres: None,
                clients: Duration::from_millis(100),
            },
        };
        assert_eq!(run.per_second(), 500.0);
        assert_eq!(run.percentile_ms(50.0), 500.0);
        assert_eq!(run.percentile_ms(99.0), 990.0);
        assert_eq!(run.percentile_ms(99.9), 999.0);
    }
}
