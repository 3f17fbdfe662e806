//! Text is compared byte by byte on both backends: SQLite's `BINARY` collation, and on PostgreSQL
//! every text column collated `"C"` (migration 0017) whatever the database's own collation — so that
//! ids and SKUs sort alike on both, and an index's key comparisons are a `memcmp`, not the C
//! library's or ICU's `strcoll`.

mod common;

use common::{open_shop, PostgresSchema};
use rescind_store::Store;
use sqlx::Connection;

/// SKUs whose byte order differs from a language's order (case, punctuation, digits).
const SKUS: [&str; 6] = ["b-2", "B-10", "_ghost", "a-1", "A-2", "9-lives"];

/// The shop's SKUs as a page of stock levels lists them, page after page of two.
async fn listed_skus(store: &Store, shop_id: &str) -> Vec<String> {
    for (available, sku) in (1..).zip(SKUS) {
        store.set_stock(shop_id, sku, available).await.expect("stock set");
    }
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .stock_levels(shop_id, None, cursor.as_deref(), 2)
            .await
            .expect("a page of levels");
        listed.extend(page.items.into_iter().map(|level| level.sku));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return listed,
        }
    }
}

/// The SKUs in byte order.
fn in_byte_order() -> Vec<String> {
    let mut skus: Vec<String> = SKUS.iter().map(|sku| (*sku).to_owned()).collect();
    skus.sort_unstable();
    skus
}

on_both_backends!(skus_are_listed_in_byte_order_across_pages);

async fn skus_are_listed_in_byte_order_across_pages(store: Store) {
    let shop_id = open_shop(&store, "shop_bytes").await;
    assert_eq!(listed_skus(&store, &shop_id).await, in_byte_order());
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_text_column_of_the_postgres_schema_compares_byte_by_byte() {
    let Some(schema) = PostgresSchema::create().await else {
        return;
    };
    let store = Store::open(&schema.url).await.expect("the store opens");
    let mut raw = sqlx::PgConnection::connect(&schema.url).await.expect("connected");
    let columns: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT c.table_name::text, c.column_name::text, c.collation_name::text FROM information_schema.columns c \
         JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' AND c.data_type = 'text' \
         ORDER BY 1, 2",
    )
    .fetch_all(&mut raw)
    .await
    .expect("the columns");
    assert!(
        columns
            .iter()
            .any(|(table, column, _)| table == "orders" && column == "id"),
        "{columns:?}"
    );
    let others: Vec<&(String, String, Option<String>)> = columns
        .iter()
        .filter(|(_, _, collation)| collation.as_deref() != Some("C"))
        .collect();
    assert!(others.is_empty(), "text columns not collated \"C\": {others:?}");
    // And every index over text compares so: rebuilt with its columns, none left on another collation.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT i.indexrelid::regclass::text FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         CROSS JOIN LATERAL unnest(i.indcollation::oid[]) AS k(collation_oid) \
         WHERE n.nspname = current_schema() AND k.collation_oid <> 0 \
         AND k.collation_oid <> (SELECT oid FROM pg_collation WHERE collname = 'C' AND collnamespace = 'pg_catalog'::regnamespace)",
    )
    .fetch_all(&mut raw)
    .await
    .expect("the indexes");
    assert!(indexes.is_empty(), "indexes on another collation: {indexes:?}");
    raw.close().await.expect("closed");
    store.close().await;
    schema.drop().await;
}
