//! B4: a reader pages the outbox by sequence number (`GET /api/v1/events?after=`), so an event must
//! never commit after one with a higher number — the reader would already have passed it. On
//! PostgreSQL writers run at once (the group writer, bulk cancels, imports, other processes), so a
//! change's events wait for the turn of the outbox, which the writer before it holds to its commit.

mod common;

use common::{import_an_order, open_shop, PostgresSchema};
use rescind_domain::{Actor, HistoryEntry, OrderChange};
use rescind_store::{now, Store};
use sqlx::Connection;
use std::time::Duration;

const SHOP: &str = "shop_outbox_order";

/// The turn of the outbox that every event-writing transaction takes on PostgreSQL.
const OUTBOX_TURN: &str = "SELECT pg_advisory_xact_lock(7220302)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_s_events_wait_for_an_earlier_writer_s_commit_and_come_after_its_events_on_postgresql() {
    let Some(schema) = PostgresSchema::create().await else {
        return;
    };
    let store = Store::open(&schema.url).await.expect("the store opens");
    open_shop(&store, SHOP).await;
    let order_id = import_an_order(&store, SHOP).await;
    let imported = store.events(SHOP, 0, 100).await.expect("the events are read");
    let import_seq = imported.last().expect("the import's event").seq;

    // Another writer has taken its turn and written an event, and has not committed yet.
    let mut other = sqlx::PgConnection::connect(&schema.url)
        .await
        .expect("PostgreSQL is reachable");
    sqlx::query("BEGIN").execute(&mut other).await.expect("a transaction");
    sqlx::query(OUTBOX_TURN)
        .execute(&mut other)
        .await
        .expect("the outbox's turn");
    sqlx::query(
        "INSERT INTO outbox_events (id, shop_id, order_id, type, at, payload, published_at) \
         VALUES ('evt_other', $1, $2, 'order.modified', 0, '{}', NULL)",
    )
    .bind(SHOP)
    .bind(&order_id)
    .execute(&mut other)
    .await
    .expect("the other writer's event");

    let change = tokio::spawn({
        let store = store.clone();
        let order_id = order_id.clone();
        async move {
            store
                .change_order_grouped(SHOP, &order_id, |order, _setup| {
                    let line = HistoryEntry::new(now(), "order.cancelled", &Actor::System, "cancelled");
                    Ok::<_, ()>(OrderChange::new(order.clone(), vec![line], Vec::new()))
                })
                .await
                .map_err(|error| format!("{error:?}"))
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!change.is_finished(), "the change waits for the other writer's commit");
    let visible = store.events(SHOP, import_seq, 100).await.expect("the events are read");
    assert!(
        visible.is_empty(),
        "nothing after the import is visible yet: {visible:?}"
    );

    sqlx::query("COMMIT")
        .execute(&mut other)
        .await
        .expect("the other writer commits");
    change.await.expect("the change ran").expect("the change is written");
    let after_import = store.events(SHOP, import_seq, 100).await.expect("the events are read");
    let types: Vec<&str> = after_import.iter().map(|event| event.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["order.modified", "order.cancelled"],
        "the earlier commit has the earlier number"
    );
    store.close().await;
    other.close().await.expect("closed");
    schema.drop().await;
}
