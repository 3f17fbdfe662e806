//! An order's history is kept as one row per change (migration 0006): the lines a change wrote, in
//! the order it wrote them. Lines a database kept before that migration, one row each in
//! `order_history`, stay where they are and come first (on both backends). A change's lines written
//! whole (before the fifteenth session left out a time or an actor repeated from the line before) read
//! back as they were.

mod common;

use common::{execute_on, import_an_order, open_shop, PostgresSchema};
use rescind_domain::{Actor, HistoryEntry, OrderChange};
use rescind_store::{now, Store};

const SHOP: &str = "shop_history";

/// Imports an order, adds a line the way a database before migration 0006 kept it (its own row in
/// `order_history`) and a change whose lines are written whole (both through `raw`), changes the order
/// with three lines, and reads the history back.
async fn history_before_and_after_the_migration(store: &Store, raw: impl AsyncFnOnce(&str)) {
    open_shop(store, SHOP).await;
    let order_id = import_an_order(store, SHOP).await;
    raw(&order_id).await;
    store
        .change_order_grouped(SHOP, &order_id, |order, _setup| {
            let at = now();
            let lines = ["first", "second", "third"].map(|message| {
                HistoryEntry::new(at, "note", &Actor::Token("tok_history".into()), message).with("n", message)
            });
            Ok::<_, ()>(OrderChange::new(order.clone(), lines.to_vec(), Vec::new()))
        })
        .await
        .map_err(|error| format!("{error:?}"))
        .expect("the change is written");
    let history = store
        .history(SHOP, &order_id)
        .await
        .expect("the history is read")
        .expect("the order exists");
    let messages: Vec<&str> = history.iter().map(|line| line.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "kept from before",
            "imported",
            "whole one",
            "whole two",
            "first",
            "second",
            "third"
        ]
    );
    assert_eq!(history[0].data, [("from".into(), "0005".into())]);
    assert_eq!(
        (history[2].at.unix_micros(), history[2].actor.as_str()),
        (1_764_000_000_000_001, "token:tok_old")
    );
    assert_eq!(history[2].data, [("a".into(), "1".into())]);
    assert_eq!(
        (history[3].at.unix_micros(), history[3].actor.as_str()),
        (1_764_000_000_000_002, "system")
    );
    assert!(history[3].data.is_empty());
    // The three lines of one change share their time and actor, written once.
    assert!(history[4..].iter().all(|line| line.at == history[4].at));
    assert_eq!(history[5].actor, "token:tok_history");
    assert_eq!(history[5].data, [("n".into(), "second".into())]);
    store.close().await;
}

const OLD_LINE: &str = "INSERT INTO order_history (order_id, at, kind, actor, message, data) \
    VALUES ($1, 0, 'order.note', 'system', 'kept from before', '{\"from\":\"0005\"}')";

/// A change's lines as they were written until the fifteenth session: every field of every line.
const WHOLE_CHANGE: &str = r#"INSERT INTO order_changes (order_id, at, lines) VALUES ($1, 1764000000000001, '[{"at":1764000000000001,"kind":"note","actor":"token:tok_old","message":"whole one","data":{"a":"1"}},{"at":1764000000000002,"kind":"note","actor":"system","message":"whole two","data":{}}]')"#;

/// The order's row naming the row of [`WHOLE_CHANGE`] beside its import's, as migration 0012 names
/// every history row a database held.
const NAMED: &str = "UPDATE orders SET change_ids = change_ids || ',' || \
    (SELECT CAST(max(id) AS TEXT) FROM order_changes) WHERE id = $1";

/// Writes the rows an older build left for `order_id` ([`OLD_LINE`], [`WHOLE_CHANGE`], named by the
/// order as migration 0012 does) through a new connection of type `C` to `url`.
async fn write_old_rows<C>(url: &str, order_id: &str)
where
    C: sqlx::Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    for statement in [OLD_LINE, WHOLE_CHANGE, NAMED] {
        // The order's id is one the store made (letters, digits and `_`).
        execute_on::<C>(url, &statement.replace("$1", &format!("'{order_id}'"))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_kept_before_one_row_per_change_come_first_then_each_change_s_lines_in_order_on_sqlite() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}", folder.path().join("rescind.db").display());
    let store = Store::open(&url).await.expect("the store opens");
    history_before_and_after_the_migration(&store, async |order_id: &str| {
        write_old_rows::<sqlx::SqliteConnection>(&url, order_id).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_kept_before_one_row_per_change_come_first_then_each_change_s_lines_in_order_on_postgres() {
    let Some(schema) = PostgresSchema::create().await else {
        return;
    };
    let store = Store::open(&schema.url).await.expect("the store opens");
    history_before_and_after_the_migration(&store, async |order_id: &str| {
        write_old_rows::<sqlx::PgConnection>(&schema.url, order_id).await;
    })
    .await;
    schema.drop().await;
}
