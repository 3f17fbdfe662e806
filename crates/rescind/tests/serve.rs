//! The `rescind serve` binary as a user runs it: creates its SQLite file, seeds the demo shop once,
//! keeps what it stored across a restart, and stops cleanly on SIGTERM.

mod common;

use common::{start, Server};
use serde_json::{json, Value};

async fn get(server: &Server, token: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("http://{}{path}", server.address))
        .bearer_auth(token)
        .send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("JSON")
}

async fn order_count(server: &Server, token: &str) -> usize {
    get(server, token, "/api/v1/orders").await["items"]
        .as_array()
        .expect("a list")
        .len()
}

/// Runs rescind twice on one database: the demo is seeded once, data survives, SIGTERM stops it.
async fn run_twice(database_url: &str) {
    let first = start(database_url, &["--demo"], &[]);
    let token = first.token().expect("the demo token is printed");
    assert_eq!(order_count(&first, &token).await, 9);
    let requests = get(&first, &token, "/api/v1/cancellation_requests?status=requested").await;
    assert_eq!(
        requests["items"].as_array().unwrap().len(),
        1,
        "the demo has a customer request waiting"
    );
    let stock = get(&first, &token, "/api/v1/inventory/TEA-002").await;
    assert_eq!(stock["available"], 18, "20 in stock, 2 deducted by the demo order");
    let health = reqwest::get(format!("http://{}/healthz", first.address)).await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let (status, rest) = first.terminate();
    assert!(status.success(), "exit status {status}");
    assert!(rest.iter().any(|line| line.contains("rescind stopped")), "{rest:?}");

    let second = start(database_url, &["--demo"], &[]);
    assert_eq!(second.token(), None, "the demo shop is created only once");
    assert_eq!(
        order_count(&second, &token).await,
        9,
        "what was stored survives a restart"
    );
    let (status, _) = second.terminate();
    assert!(status.success());
}

#[tokio::test]
async fn serve_on_sqlite_creates_its_file_seeds_the_demo_once_and_stops_cleanly_on_sigterm() {
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("rescind.db");
    assert!(!file.exists());
    run_twice(&format!("sqlite://{}", file.display())).await;
    assert!(file.exists(), "the SQLite file is created on first start");
}

#[tokio::test]
async fn serve_on_postgres_migrates_a_fresh_schema_seeds_the_demo_once_and_stops_cleanly_on_sigterm() {
    common::on_postgres_schema("rescind_serve", |url| async move { run_twice(&url).await }).await;
}

/// Credentials and token secrets never reach a log line, not even when a partner refuses them and
/// rescind logs the failure (B6). Debug logging on, every line read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_ever_carries_a_credential_or_a_token_secret() {
    const MARKER: &str = "s3cret-in-no-log-9c1d";
    const ADMIN: &str = "log-test-admin-secret";
    let directory = tempfile::tempdir().unwrap();
    let (sim_address, _sim) = rescind_sim::spawn().await;
    let sim = format!("http://{sim_address}");
    let server = common::start(
        &format!("sqlite://{}", directory.path().join("rescind.db").display()),
        &[
            "--cancel-wait-ms",
            "200",
            "--retry-attempts-max",
            "2",
            "--retry-delay-base-ms",
            "10",
        ],
        &[("RESCIND_ADMIN_TOKEN", ADMIN), ("RUST_LOG", "debug")],
    );
    let client = reqwest::Client::new();
    let post =
        |path: &str, token: &str, body: Value| client.post(server.url(path)).bearer_auth(token).json(&body).send();
    let shop: Value = post("/api/v1/shops", ADMIN, json!({"name": "Log test"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = shop["token"].as_str().unwrap().to_owned();
    // Wrong credentials: the simulated Shopify refuses them, and rescind logs its failed calls.
    let channel: Value = post(
        "/api/v1/channels",
        &token,
        json!({"kind": "shopify", "name": "Shopify", "base_url": sim,
               "credentials": {"access_token": MARKER, "webhook_secret": MARKER}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let provider: Value = post(
        "/api/v1/payment_providers",
        &token,
        json!({"kind": "stripe", "name": "Stripe", "base_url": sim, "credentials": {"secret_key": MARKER}}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let order: Value = post(
        "/api/v1/orders",
        &token,
        json!({
            "channel_id": channel["id"], "channel_order_id": "1001", "currency": "JPY", "customer": {"name": "Log Test"},
            "shipping_address": {"name": "Log Test", "postcode": "100-0001", "prefecture": "東京都", "address1": "千代田区1-1"},
            "line_items": [{"sku": "A", "title": "Tea", "quantity": 1, "price": "1000"}],
            "payment": {"method": "credit_card", "amount": "1000", "provider_id": provider["id"], "reference": "pi_unknown"},
            "financial_status": "paid", "fulfillment_status": "awaiting_shipment"
        }),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let id = order["id"].as_str().expect("imported");
    let cancel = post(
        &format!("/api/v1/orders/{id}/cancel"),
        &token,
        json!({"reason_code": "CUSTOMER"}),
    )
    .await
    .unwrap();
    // Shopify refuses the wrong token: the cancel is refused (502 channel_refused), never a 500.
    let status = cancel.status().as_u16();
    let answer: Value = cancel.json().await.unwrap();
    assert_eq!(
        (status, answer["code"].as_str()),
        (502, Some("channel_refused")),
        "{answer}"
    );
    let forged = client
        .post(server.url(&format!(
            "/api/v1/channels/{}/webhooks",
            channel["id"].as_str().unwrap()
        )))
        .header("X-Shopify-Hmac-Sha256", MARKER)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let printed = server.printed.clone();
    let (status, rest) = server.terminate();
    assert!(status.success());
    let lines: Vec<String> = printed.into_iter().chain(rest).collect();
    assert!(lines.len() > 10, "debug logging wrote lines: {lines:?}");
    for line in &lines {
        for secret in [MARKER, ADMIN, token.as_str()] {
            assert!(!line.contains(secret), "a log line carries a secret: {line}");
        }
    }
}

/// Each thread of process `pid` by name, with its nice value (`/proc/<pid>/task/*/stat`, field 19).
#[cfg(target_os = "linux")]
fn threads_nice(pid: u32) -> Vec<(String, i64)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's threads") {
        let Ok(stat) = std::fs::read_to_string(task.expect("a thread").path().join("stat")) else {
            continue; // a thread that ended meanwhile
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        let nice = stat[close + 1..]
            .split_whitespace()
            .nth(16)
            .and_then(|field| field.parse().ok())
            .expect("a nice value");
        threads.push((name, nice));
    }
    threads
}

/// The group writer, the one serial stage every change passes, runs at the process's own priority;
/// on PostgreSQL, where it waits for the database several times a group, the runtime's threads (HTTP
/// requests, workflow steps) run five nice steps below it, so that it never waits long for a core
/// after an answer. On SQLite every thread keeps the process's priority.
#[cfg(target_os = "linux")]
async fn the_group_writer_runs_at_the_process_s_priority(database_url: &str, workers_below: i64) {
    let server = start(database_url, &[], &[]);
    let health = reqwest::get(server.url("/healthz")).await.expect("the server answers");
    assert_eq!(health.status().as_u16(), 200);
    let own: i64 = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| stat[stat.rfind(')')? + 1..].split_whitespace().nth(16)?.parse().ok())
        .expect("this process's nice value");
    let threads = threads_nice(server.child.id());
    let of = |wanted: &str| -> Vec<i64> {
        threads
            .iter()
            .filter(|(name, _)| name == wanted)
            .map(|(_, nice)| *nice)
            .collect()
    };
    assert_eq!(
        of("rescind-writer"),
        [own],
        "one group writer at the process's priority: {threads:?}"
    );
    let workers = of("tokio-rt-worker");
    assert!(!workers.is_empty(), "{threads:?}");
    assert!(
        workers.iter().all(|nice| *nice == (own + workers_below).min(19)),
        "the runtime's threads {workers_below} steps below: {threads:?}"
    );
    let (status, _) = server.terminate();
    assert!(status.success(), "exit status {status}");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn on_sqlite_the_group_writer_and_the_runtime_threads_run_at_the_process_s_priority() {
    let directory = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", directory.path().join("rescind.db").display());
    the_group_writer_runs_at_the_process_s_priority(&url, 0).await;
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn on_postgres_the_runtime_threads_run_five_steps_below_the_group_writer() {
    common::on_postgres_schema("rescind_nice", |url| async move {
        the_group_writer_runs_at_the_process_s_priority(&url, 5).await
    })
    .await;
}

/// A connection of another program to the SQLite file at `file` (SQLite's own VFS, no rescind).
async fn open_as_another_program(file: &std::path::Path) -> sqlx::SqliteConnection {
    use sqlx::ConnectOptions;
    sqlx::sqlite::SqliteConnectOptions::new()
        .filename(file)
        .connect()
        .await
        .expect("another program opens the file")
}

async fn orders_stored(connection: &mut sqlx::SqliteConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(connection)
        .await
        .expect("the orders are counted")
}

/// Another program may read the SQLite file while rescind serves it (the `sqlite3` shell, a backup
/// with `VACUUM INTO`): its connection closing leaves rescind's write-ahead log in place, and a cancel after it is
/// answered 200 and still there after a restart. (While rescind's checkpoint opened and closed the
/// database file, which drops every POSIX lock the process holds on it, the reader took itself for
/// the file's last user and deleted the log under the running writer.)
#[tokio::test]
async fn another_program_reading_or_backing_up_the_sqlite_file_while_rescind_serves_it_loses_none_of_its_writes() {
    use sqlx::Connection;
    let directory = tempfile::tempdir().unwrap();
    let file = directory.path().join("rescind.db");
    let database_url = format!("sqlite://{}", file.display());
    let server = start(&database_url, &["--demo"], &[]);
    let token = server.token().expect("the demo token is printed");
    // The checkpoint runs beside the writer every 100 ms, the writer's own every 500: let both run.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;

    let mut reader = open_as_another_program(&file).await;
    assert_eq!(orders_stored(&mut reader).await, 9);
    let backup = directory.path().join("backup.db");
    sqlx::query(&format!("VACUUM INTO '{}'", backup.display()))
        .execute(&mut reader)
        .await
        .expect("and copies it for a backup");
    reader.close().await.expect("and closes it");
    let mut copy = open_as_another_program(&backup).await;
    assert_eq!(orders_stored(&mut copy).await, 9, "the backup holds every order");
    copy.close().await.expect("closed");
    assert!(
        directory.path().join("rescind.db-wal").exists(),
        "rescind's write-ahead log is still there"
    );

    let orders = get(&server, &token, "/api/v1/orders").await;
    let first = orders["items"]
        .as_array()
        .expect("a list")
        .iter()
        .find(|order| order["number"] == "#1001")
        .expect("the demo's first order (awaiting payment)");
    let order_id = first["id"].as_str().expect("an id").to_owned();
    let cancelled = reqwest::Client::new()
        .post(server.url(&format!("/api/v1/orders/{order_id}/cancel")))
        .bearer_auth(&token)
        .json(&json!({"reason": "customer_request"}))
        .send()
        .await
        .expect("the server answers");
    assert_eq!(cancelled.status().as_u16(), 200, "{:?}", cancelled.text().await);
    let (status, _) = server.terminate();
    assert!(status.success(), "exit status {status}");

    let again = start(&database_url, &[], &[]);
    let order = get(&again, &token, &format!("/api/v1/orders/{order_id}")).await;
    assert_eq!(order["status"], "cancelled", "the cancel survives a restart: {order}");
    let (status, _) = again.terminate();
    assert!(status.success(), "exit status {status}");
}
