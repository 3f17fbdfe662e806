//! The reads every cancel makes go by an index, whatever the tables hold: on SQLite (whose planner
//! answers the same for an empty table as for a full one) the store's own statements are explained.

use rescind_store::Store;
use sqlx::{Connection, Row};

/// Asserts that SQLite's plan for `statement` reads `table` through `index` and never scans it.
async fn assert_reads_by(url: &str, statement: &str, table: &str, index: &str) {
    let steps = plan(url, statement).await;
    assert!(
        steps.iter().any(|step| step.contains(&format!("INDEX {index}"))),
        "{steps:?}"
    );
    assert!(
        !steps.iter().any(|step| step.starts_with(&format!("SCAN {table}"))),
        "{steps:?}"
    );
}

/// SQLite's plan for `statement`, one line per step.
async fn plan(url: &str, statement: &str) -> Vec<String> {
    let mut raw = sqlx::SqliteConnection::connect(url).await.expect("the file opens");
    let steps = sqlx::query(&format!("EXPLAIN QUERY PLAN {statement}"))
        .bind("ord_1")
        .fetch_all(&mut raw)
        .await
        .expect("the statement is explained");
    raw.close().await.expect("closed");
    steps.iter().map(|step| step.get::<String, _>("detail")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_s_cancellation_requests_are_read_by_its_id_not_by_scanning_every_shop_s_requests() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}", folder.path().join("rescind.db").display());
    let store = Store::open(&url).await.expect("the store opens");
    // The statement the group writer and every read of an order run (the latest request wins), and the
    // flag a change's load reads beside the order.
    for statement in [
        "SELECT id, status FROM cancellation_requests WHERE order_id = $1 ORDER BY created_at, id",
        "SELECT EXISTS (SELECT 1 FROM cancellation_requests WHERE cancellation_requests.order_id = $1)",
    ] {
        assert_reads_by(
            &url,
            statement,
            "cancellation_requests",
            "cancellation_requests_by_order",
        )
        .await;
    }
    store.close().await;
}
