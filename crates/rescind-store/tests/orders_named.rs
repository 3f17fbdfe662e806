//! Every cancellation, refund, history row, restock, sync history row and workflow job names an order
//! that is there, and the database itself refuses one that does not, whatever a writer gets wrong: on
//! SQLite by foreign keys, on PostgreSQL (migration 0016) by triggers that check a statement's new rows
//! together at its end, a row moved to another order as it moves, and refuse deleting orders. On both
//! backends, rows written straight into the tables.

mod common;

use common::{import_an_order, open_shop, sqlite_url, PostgresSchema};
use rescind_store::Store;
use sqlx::Connection;

fn cancellation(id: &str, order_id: &str) -> String {
    format!(
        "('{id}', '{order_id}', 'shop_named', 'rejected', 'staff', TRUE, TRUE, FALSE, FALSE, '[]', 'unfulfilled', \
         'paid', 0, 0, 0, FALSE)"
    )
}

fn insert_cancellations(rows: &[String]) -> String {
    format!(
        "INSERT INTO cancellations (id, order_id, shop_id, status, requested_by, refund, restock, notify_customer, \
         needs_attention, steps, fulfillment_status_before, financial_status_before, reauthorization_generation, \
         created_at, updated_at, partial) VALUES {}",
        rows.join(", ")
    )
}

fn insert_refund(id: &str, order_id: &str) -> String {
    format!(
        "INSERT INTO refunds (id, order_id, shop_id, amount, method, actor, created_at) \
         VALUES ('{id}', '{order_id}', 'shop_named', '100', 'store_credit', 'system', 0)"
    )
}

fn insert_history(order_id: &str) -> String {
    format!("INSERT INTO order_changes (order_id, at, lines) VALUES ('{order_id}', 0, '[]')")
}

fn insert_restock(order_id: &str) -> String {
    format!("INSERT INTO restocks (order_id, cancellation_id, sku, quantity, at) VALUES ('{order_id}', 'can_kept', 'TEA-001', 1, 0)")
}

/// A call's row in the sync history; `order_id` `None` for one about no order (a stock push).
fn insert_call(order_id: Option<&str>) -> String {
    let order_id = order_id.map_or("NULL".to_owned(), |id| format!("'{id}'"));
    format!(
        "INSERT INTO sync_history (shop_id, order_id, at, kind, target, request, ok, message) \
         VALUES ('shop_named', {order_id}, 0, 'channel_cancel', 'own_store', '{{}}', TRUE, 'named')"
    )
}

fn insert_job(order_id: &str) -> String {
    format!(
        "INSERT INTO workflow_jobs (order_id, shop_id, due_at) VALUES ('{order_id}', 'shop_named', 0) \
         ON CONFLICT (order_id) DO NOTHING"
    )
}

/// Each statement the checks run on a database holding `order_id`, and whether the database must
/// take it. `with_cte` adds the statements only PostgreSQL can say: rows inserted by a data-modifying
/// `WITH`, as the PostgreSQL group writer writes them.
fn statements(order_id: &str, with_cte: bool) -> Vec<(String, bool)> {
    let missing = "ord_not_there";
    // A row of each of the six tables naming `order`, with `suffix` in the ids it makes up.
    let one_of_each = |order: &str, suffix: &str, taken: bool| {
        [
            insert_cancellations(&[cancellation(&format!("can_{suffix}"), order)]),
            insert_refund(&format!("ref_{suffix}"), order),
            insert_history(order),
            insert_restock(order),
            insert_call(Some(order)),
            insert_job(order),
        ]
        .map(|statement| (statement, taken))
    };
    let mut statements = Vec::from(one_of_each(missing, "missing", false));
    // One row of many naming no order refuses them all.
    statements.push((
        insert_cancellations(&[
            cancellation("can_one", order_id),
            cancellation("can_two", missing),
            cancellation("can_three", order_id),
        ]),
        false,
    ));
    statements.extend(one_of_each(order_id, "kept", true));
    statements.extend([
        (insert_call(None), true),
        (
            format!("UPDATE cancellations SET order_id = '{missing}' WHERE id = 'can_kept'"),
            false,
        ),
        (
            format!("UPDATE refunds SET order_id = '{missing}' WHERE id = 'ref_kept'"),
            false,
        ),
        (
            format!("UPDATE order_changes SET order_id = '{missing}' WHERE order_id = '{order_id}'"),
            false,
        ),
        (
            format!("UPDATE sync_history SET order_id = '{missing}' WHERE order_id IS NULL"),
            false,
        ),
        // Updates that keep the order are taken.
        (
            "UPDATE cancellations SET status = 'failed' WHERE id = 'can_kept'".to_owned(),
            true,
        ),
        (format!("DELETE FROM orders WHERE id = '{order_id}'"), false),
    ]);
    if with_cte {
        statements.extend([
            (
                format!(
                    "WITH written AS ({} RETURNING id) SELECT count(*) FROM written",
                    insert_cancellations(&[cancellation("can_cte", missing)])
                ),
                false,
            ),
            (
                format!(
                    "WITH refund AS ({} RETURNING id), history AS ({} RETURNING id) \
                     SELECT (SELECT count(*) FROM refund) + (SELECT count(*) FROM history)",
                    insert_refund("ref_cte", order_id),
                    insert_history(missing)
                ),
                false,
            ),
            (
                format!(
                    "WITH written AS ({} RETURNING id) SELECT count(*) FROM written",
                    insert_cancellations(&[cancellation("can_cte_kept", order_id)])
                ),
                true,
            ),
        ]);
    }
    statements
}

/// The rows the refused statements tried to write: none of them is there.
const LEFT_BEHIND: &str = "SELECT (SELECT count(*) FROM cancellations WHERE id IN ('can_missing', 'can_one', \
     'can_two', 'can_three', 'can_cte')) + (SELECT count(*) FROM refunds WHERE id IN ('ref_missing', 'ref_cte')) + \
     (SELECT count(*) FROM order_changes WHERE order_id = 'ord_not_there') + \
     (SELECT count(*) FROM restocks WHERE order_id = 'ord_not_there') + \
     (SELECT count(*) FROM sync_history WHERE order_id = 'ord_not_there') + \
     (SELECT count(*) FROM workflow_jobs WHERE order_id = 'ord_not_there')";

/// Runs [`statements`] on `$raw`, a connection to a store's database holding `$order_id`.
macro_rules! only_rows_naming_orders {
    ($raw:expr, $order_id:expr, $with_cte:expr) => {
        for (statement, taken) in statements($order_id, $with_cte) {
            let outcome = sqlx::raw_sql(&statement).execute(&mut $raw).await;
            assert_eq!(outcome.is_ok(), taken, "{statement}: {outcome:?}");
            if let Err(error) = outcome {
                let code = error
                    .as_database_error()
                    .and_then(|error| error.code())
                    .map(|code| code.into_owned());
                // SQLITE_CONSTRAINT_FOREIGNKEY, or PostgreSQL's foreign_key_violation.
                assert!(
                    matches!(code.as_deref(), Some("787") | Some("23503")),
                    "{statement}: {error}"
                );
            }
        }
        let left: i64 = sqlx::query_scalar(LEFT_BEHIND)
            .fetch_one(&mut $raw)
            .await
            .expect("counted");
        assert_eq!(left, 0, "a refused statement left rows behind");
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_naming_an_order_that_is_not_there_is_refused_by_the_database_itself_on_sqlite() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let url = sqlite_url(&folder);
    let store = Store::open(&url).await.expect("the store opens");
    let shop_id = open_shop(&store, "shop_named").await;
    let order_id = import_an_order(&store, &shop_id).await;
    let mut raw = sqlx::SqliteConnection::connect(&url).await.expect("the file opens");
    only_rows_naming_orders!(raw, &order_id, false);
    raw.close().await.expect("closed");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_naming_an_order_that_is_not_there_is_refused_by_the_database_itself_on_postgres() {
    let Some(schema) = PostgresSchema::create().await else {
        return;
    };
    let store = Store::open(&schema.url).await.expect("the store opens");
    let shop_id = open_shop(&store, "shop_named").await;
    let order_id = import_an_order(&store, &shop_id).await;
    let mut raw = sqlx::PgConnection::connect(&schema.url).await.expect("connected");
    only_rows_naming_orders!(raw, &order_id, true);
    raw.close().await.expect("closed");
    store.close().await;
    schema.drop().await;
}
