//! A keyed request's stored response (B3) reads back byte for byte, and is kept compressed with LZ4: on
//! PostgreSQL by the server where it has LZ4 (migration 0021: pglz, PostgreSQL's default for text past
//! about 2 KB, cost half of the statement that stores a batch of responses), on SQLite by rescind (a
//! cancel's answer took an overflow page of its own), which still replays responses stored as text.

mod common;

use common::{execute_on, sqlite_url, PostgresSchema};
use rescind_store::{IdempotencyClaim, Store};
use sqlx::Connection;
use sqlx::SqliteConnection;

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

/// A store on a fresh SQLite file with `body` stored as key-1's response, closed again.
async fn sqlite_with_a_stored_response(folder: &tempfile::TempDir, body: &str) -> String {
    let url = sqlite_url(folder);
    let store = Store::open(&url).await.expect("the store opens");
    store
        .claim_idempotency_key("shop_1", "key-1", "fp")
        .await
        .expect("claimed");
    store
        .complete_idempotency_key("shop_1", "key-1", 200, body)
        .await
        .expect("stored");
    store.close().await;
    url
}

/// What claiming key-1 again answers once the store at `url` is opened anew.
async fn claimed_again_after_a_restart(url: &str) -> anyhow::Result<IdempotencyClaim> {
    let store = Store::open(url).await.expect("the store opens again");
    let claimed = store.claim_idempotency_key("shop_1", "key-1", "fp").await;
    store.close().await;
    claimed
}

/// What claiming key-1 again answers after a restart, once its stored response's bytes were
/// replaced by `stored` (an SQL literal: text written before compression, or a blob).
async fn claimed_again_with_the_response_stored_as(stored: &str) -> anyhow::Result<IdempotencyClaim> {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let url = sqlite_with_a_stored_response(&folder, "{}").await;
    execute_on::<SqliteConnection>(
        &url,
        &format!("UPDATE idempotency_keys SET response_body = {stored} WHERE key = 'key-1'"),
    )
    .await;
    claimed_again_after_a_restart(&url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_response_is_kept_compressed_on_sqlite_and_replayed_after_a_restart() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let body = a_large_response();
    let url = sqlite_with_a_stored_response(&folder, &body).await;

    let mut raw = SqliteConnection::connect(&url).await.expect("connected");
    let (kind, length): (String, i64) =
        sqlx::query_as("SELECT typeof(response_body), length(response_body) FROM idempotency_keys WHERE key = 'key-1'")
            .fetch_one(&mut raw)
            .await
            .expect("the stored key");
    raw.close().await.expect("closed");
    assert_eq!(kind, "blob");
    assert!(
        usize::try_from(length).expect("a length") * 3 < body.len(),
        "{length} bytes stored for a response of {}",
        body.len()
    );

    let again = claimed_again_after_a_restart(&url).await.expect("claimed again");
    assert_eq!(again, IdempotencyClaim::Replay { status_code: 200, body });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_stored_as_text_before_it_was_compressed_is_replayed_as_it_was() {
    let again = claimed_again_with_the_response_stored_as(r#"'{"id":"ord_01","status":"cancelled"}'"#)
        .await
        .expect("claimed again");
    assert_eq!(
        again,
        IdempotencyClaim::Replay {
            status_code: 200,
            body: r#"{"id":"ord_01","status":"cancelled"}"#.to_owned()
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_response_rescind_did_not_write_is_an_error_not_a_crash() {
    // A blob of no kind rescind writes, one that says it is 4 GiB long, one cut short, one whose
    // compressed bytes are not LZ4.
    for blob in ["X'FF00'", "X'01FFFFFFFF00'", "X'01'", "X'0110000000FFFFFFFF'"] {
        let claimed = claimed_again_with_the_response_stored_as(blob).await;
        assert!(claimed.is_err(), "{blob}: {claimed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_compressed_with_the_first_dictionary_reads_back_for_good() {
    // Written by the reference LZ4 (python-lz4's block format) against the dictionary in
    // `src/stored_response_dictionary.json`: a changed dictionary would read stored responses wrong.
    let again = claimed_again_with_the_response_stored_as(
        "X'017400000003BC00686F72645F30311E0203FB000166030F8E0937504A5059227D'",
    )
    .await
    .expect("claimed again");
    let body = r#"{"id":"ord_01","status":"cancelled","financial_status":"refunded","fulfillment_status":"cancelled","currency":"JPY"}"#;
    assert_eq!(
        again,
        IdempotencyClaim::Replay {
            status_code: 200,
            body: body.to_owned()
        }
    );
}
