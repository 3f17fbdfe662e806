//! A keyed request's stored response (B3) reads back byte for byte, and on PostgreSQL it is compressed
//! with LZ4 where the server has it (migration 0021): pglz, PostgreSQL's default for text past about
//! 2 KB, cost half of the statement that stores a batch of responses.

mod common;

use common::PostgresSchema;
use rescind_store::{IdempotencyClaim, Store};
use sqlx::Connection;

/// A response the size of a cancelled order's body, with the repetition of real JSON and text of
/// several scripts.
fn a_large_response() -> String {
    let lines: Vec<String> = (0..40)
        .map(|index| {
            format!(
                r#"{{"id":"li_{index:04}","sku":"TEA-{index:03}","title":"煎茶 {index}","quantity":1,"price":"1200"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"id":"ord_01","status":"cancelled","line_items":[{}]}}"#,
        lines.join(",")
    )
}

on_both_backends!(a_stored_response_is_replayed_byte_for_byte);

async fn a_stored_response_is_replayed_byte_for_byte(store: Store) {
    let body = a_large_response();
    assert!(body.len() > 2500, "{} bytes", body.len());
    let claim = store
        .claim_idempotency_key("shop_1", "key-1", "fp")
        .await
        .expect("claimed");
    assert_eq!(claim, IdempotencyClaim::New);
    store
        .complete_idempotency_key("shop_1", "key-1", 200, &body)
        .await
        .expect("stored");
    let again = store
        .claim_idempotency_key("shop_1", "key-1", "fp")
        .await
        .expect("claimed again");
    assert_eq!(again, IdempotencyClaim::Replay { status_code: 200, body });
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_response_is_compressed_with_lz4_on_a_postgres_server_that_has_it() {
    let Some(schema) = PostgresSchema::create().await else {
        return;
    };
    let store = Store::open(&schema.url).await.expect("the store opens");
    store
        .claim_idempotency_key("shop_1", "key-1", "fp")
        .await
        .expect("claimed");
    store
        .complete_idempotency_key("shop_1", "key-1", 200, &a_large_response())
        .await
        .expect("stored");
    store.close().await;

    let mut raw = sqlx::PgConnection::connect(&schema.url).await.expect("connected");
    // A server built without LZ4 refuses a column that asks for it, and keeps pglz.
    let has_lz4 = sqlx::raw_sql("CREATE TEMPORARY TABLE lz4_here (body text COMPRESSION lz4)")
        .execute(&mut raw)
        .await
        .is_ok();
    let method: Option<String> =
        sqlx::query_scalar("SELECT pg_column_compression(response_body) FROM idempotency_keys WHERE key = 'key-1'")
            .fetch_one(&mut raw)
            .await
            .expect("the stored key");
    assert_eq!(method.as_deref(), Some(if has_lz4 { "lz4" } else { "pglz" }));
    raw.close().await.expect("closed");
    schema.drop().await;
}
