//! The `rescind serve` binary as a user runs it: creates its SQLite file, seeds the demo shop once,
//! keeps what it stored across a restart, and stops cleanly on SIGTERM.

mod common;

use common::{start, Server};
use serde_json::Value;

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
