//! Migration 0009 takes the outbox events' text id out of a unique index (B4's outbox, one B-tree
//! entry fewer per event): a webhook delivery finds its event by the event's number instead. A
//! database migrated from 0008 keeps every event with its number and payload, a pending delivery of
//! one still goes out with it, and numbers go on after the highest ever handed out — even when that
//! event was purged, since a consumer pages the events by number (on both backends).

mod common;

use common::{execute_on, import_an_order, open_shop, PostgresSchema};
use rescind_domain::Timestamp;
use rescind_store::{now, Store};
use serde_json::json;

/// The migrations a database had applied before 0009, as `Store::open` runs them.
const BEFORE_0009: [(i64, &str, &str); 8] = [
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (
        2,
        "partial_cancellations",
        include_str!("../migrations/0002_partial_cancellations.sql"),
    ),
    (3, "stock_push", include_str!("../migrations/0003_stock_push.sql")),
    (
        4,
        "console_sessions",
        include_str!("../migrations/0004_console_sessions.sql"),
    ),
    (
        5,
        "outbox_webhooks",
        include_str!("../migrations/0005_outbox_webhooks.sql"),
    ),
    (6, "order_changes", include_str!("../migrations/0006_order_changes.sql")),
    (
        7,
        "outbox_without_time_index",
        include_str!("../migrations/0007_outbox_without_time_index.sql"),
    ),
    (
        8,
        "requests_by_order",
        include_str!("../migrations/0008_requests_by_order.sql"),
    ),
];

const SHOP: &str = "shop_outbox_migration";
const LATER_SHOP: &str = "shop_outbox_migration_later";

/// The statements that make a database as 0008 left it, with three events of `SHOP` (numbered 1, 2
/// and 3, the third purged since) and a pending delivery of the second to a webhook.
fn database_at_0008(identity: &str, append_only: &str) -> Vec<String> {
    let mut statements = vec![
        "CREATE TABLE rescind_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
            .to_owned(),
    ];
    for (version, name, sql) in BEFORE_0009 {
        statements.push(
            sql.replace("__IDENTITY_PRIMARY_KEY__", identity)
                .replace("__APPEND_ONLY_PRIMARY_KEY__", append_only),
        );
        statements.push(format!(
            "INSERT INTO rescind_migrations (version, name, applied_at) VALUES ({version}, '{name}', 0)"
        ));
    }
    statements.push(format!(
        "INSERT INTO shops (id, name, created_at) VALUES ('{SHOP}', 'Outbox', 0)"
    ));
    statements.push(format!(
        "INSERT INTO webhooks (id, shop_id, url, events, secret, active, created_at) \
         VALUES ('whk_old', '{SHOP}', 'http://127.0.0.1:9/hook', 'order.cancelled', 'secret', TRUE, 0)"
    ));
    for (id, kind) in [
        ("evt_first", "order.imported"),
        ("evt_second", "order.cancelled"),
        ("evt_third", "order.cancelled"),
    ] {
        statements.push(format!(
            "INSERT INTO outbox_events (id, shop_id, order_id, type, at, payload, published_at) \
             VALUES ('{id}', '{SHOP}', 'ord_old', '{kind}', 0, '{{\"message\":\"{id}\"}}', NULL)"
        ));
    }
    statements.push("DELETE FROM outbox_events WHERE id = 'evt_third'".to_owned());
    statements.push(format!(
        "INSERT INTO webhook_deliveries (id, webhook_id, shop_id, event_id, event_seq, event_type, order_id, status, \
         attempts, next_attempt_at, created_at) \
         VALUES ('dlv_old', 'whk_old', '{SHOP}', 'evt_second', 2, 'order.cancelled', 'ord_old', 'pending', 0, 0, 0)"
    ));
    statements
}

/// Makes a database as 0008 left it through `execute` (one statement on a connection of the
/// backend's own; `identity_keys` the dialect's two identity columns), opens the store on it (which applies 0009) and checks what a user would.
async fn events_survive_the_migration(url: &str, identity_keys: (&str, &str), execute: impl AsyncFn(&str)) {
    let (identity, append_only) = identity_keys;
    for statement in database_at_0008(identity, append_only) {
        execute(&statement).await;
    }
    let store = Store::open(url).await.expect("the store opens and migrates");

    let kept = store.events(SHOP, 0, 100).await.expect("the events are read");
    let kept: Vec<(i64, &str, &serde_json::Value)> = kept
        .iter()
        .map(|event| (event.seq, event.id.as_str(), &event.payload))
        .collect();
    assert_eq!(
        kept,
        [
            (1, "evt_first", &json!({"message": "evt_first"})),
            (2, "evt_second", &json!({"message": "evt_second"}))
        ],
        "every event keeps its number and payload"
    );

    let due = store
        .claim_deliveries(
            "test-deliverer",
            Timestamp::from_unix_micros(now().unix_micros() + 60_000_000),
            10,
        )
        .await
        .expect("deliveries are claimed");
    assert_eq!(due.len(), 1, "the pending delivery is still due");
    assert_eq!(due[0].delivery.id, "dlv_old");
    assert_eq!(
        (due[0].event.seq, due[0].event.id.as_str()),
        (2, "evt_second"),
        "it goes out with its event"
    );

    // The next event is numbered after the purged third, not as a second third.
    open_shop(&store, LATER_SHOP).await;
    import_an_order(&store, LATER_SHOP).await;
    let later = store.events(LATER_SHOP, 0, 100).await.expect("the events are read");
    assert!(
        later.iter().all(|event| event.seq > 3),
        "a number handed out before the migration came again: {later:?}"
    );
    store.close().await;

    // Two events with one id are no longer refused: the index is gone.
    for _ in 0..2 {
        execute(&format!(
            "INSERT INTO outbox_events (id, shop_id, order_id, type, at, payload, published_at) \
             VALUES ('evt_twice', '{SHOP}', NULL, 'order.modified', 0, '{{}}', NULL)"
        ))
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_keep_their_numbers_and_deliveries_their_events_across_migration_0009_on_sqlite() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}", folder.path().join("rescind.db").display());
    let raw_url = format!("{url}?mode=rwc");
    let keys = ("INTEGER PRIMARY KEY AUTOINCREMENT", "INTEGER PRIMARY KEY");
    events_survive_the_migration(&url, keys, async |statement: &str| {
        execute_on::<sqlx::SqliteConnection>(&raw_url, statement).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_keep_their_numbers_and_deliveries_their_events_across_migration_0009_on_postgresql() {
    let Some(schema) = PostgresSchema::create().await else {
        return;
    };
    const IDENTITY: &str = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY";
    events_survive_the_migration(&schema.url, (IDENTITY, IDENTITY), async |statement: &str| {
        execute_on::<sqlx::PgConnection>(&schema.url, statement).await;
    })
    .await;
    schema.drop().await;
}
