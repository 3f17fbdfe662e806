//! C7 held by the database itself, beside the decisions that enforce it: whatever a writer gets wrong,
//! an order has at most one whole-order cancellation in effect (`processing`, `awaiting_refund` or
//! `completed`) — the partial unique index `cancellations_one_in_effect`, whose condition migration
//! 0015 spells out status by status on SQLite — while rejected and partial cancellations beside it are
//! kept. On both backends, rows written straight into the table.

mod common;

use common::{import_an_order, open_shop, sqlite_url, PostgresSchema};
use rescind_store::Store;
use sqlx::Connection;

/// The cancellation row `id` of `order_id` with `status`, partial or not, as an `INSERT`.
fn cancellation(id: &str, order_id: &str, status: &str, partial: bool) -> String {
    format!(
        "INSERT INTO cancellations (id, order_id, shop_id, status, requested_by, refund, restock, notify_customer, \
         needs_attention, steps, fulfillment_status_before, financial_status_before, reauthorization_generation, \
         created_at, updated_at, partial) VALUES ('{id}', '{order_id}', 'shop_in_effect', '{status}', 'staff', TRUE, \
         TRUE, FALSE, FALSE, '[]', 'unfulfilled', 'paid', 0, 0, 0, {partial})"
    )
}

/// Each statement the checks run, and whether the database must take it.
fn statements(order_id: &str) -> Vec<(String, bool)> {
    vec![
        (cancellation("can_first", order_id, "completed", false), true),
        (cancellation("can_second", order_id, "awaiting_refund", false), false),
        (cancellation("can_third", order_id, "processing", false), false),
        (cancellation("can_rejected", order_id, "rejected", false), true),
        (cancellation("can_partial", order_id, "completed", true), true),
        (
            "UPDATE cancellations SET status = 'completed' WHERE id = 'can_rejected'".to_owned(),
            false,
        ),
        (
            "UPDATE cancellations SET status = 'undone' WHERE id = 'can_first'".to_owned(),
            true,
        ),
        (
            "UPDATE cancellations SET status = 'processing' WHERE id = 'can_rejected'".to_owned(),
            true,
        ),
    ]
}

/// Runs [`statements`] on `$raw`, a connection to a store's database holding `$order_id`.
macro_rules! only_one_in_effect {
    ($raw:expr, $order_id:expr) => {
        for (statement, taken) in statements($order_id) {
            let outcome = sqlx::raw_sql(&statement).execute(&mut $raw).await;
            assert_eq!(outcome.is_ok(), taken, "{statement}: {outcome:?}");
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_whole_order_cancellation_in_effect_is_refused_by_the_database_itself_on_sqlite() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let url = sqlite_url(&folder);
    let store = Store::open(&url).await.expect("the store opens");
    let shop_id = open_shop(&store, "shop_in_effect").await;
    let order_id = import_an_order(&store, &shop_id).await;
    let mut raw = sqlx::SqliteConnection::connect(&url).await.expect("the file opens");
    only_one_in_effect!(raw, &order_id);
    raw.close().await.expect("closed");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_whole_order_cancellation_in_effect_is_refused_by_the_database_itself_on_postgres() {
    let Some(schema) = PostgresSchema::create().await else {
        return;
    };
    let store = Store::open(&schema.url).await.expect("the store opens");
    let shop_id = open_shop(&store, "shop_in_effect").await;
    let order_id = import_an_order(&store, &shop_id).await;
    let mut raw = sqlx::PgConnection::connect(&schema.url).await.expect("connected");
    only_one_in_effect!(raw, &order_id);
    raw.close().await.expect("closed");
    store.close().await;
    schema.drop().await;
}
