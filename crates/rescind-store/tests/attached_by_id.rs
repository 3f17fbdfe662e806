//! An order's refunds, its latest cancellation request (migration 0011) and its history rows
//! (migration 0012) are stored apart from its row, which names them by key: every way of reading an
//! order finds them, in the order they were made, and a database migrated from 0010 names the ones it
//! already held (on both backends).

mod common;

use common::{execute_on, import_an_order, open_shop, order_of, PostgresSchema};
use rescind_domain::{
    reject_request, request_cancellation, Actor, Money, Order, OrderChange, Refund, RefundMethod, RequestStatus,
    Timestamp,
};
use rescind_store::{now, OrderFilter, RandomIds, Store};

on_both_backends!(refunds_and_the_latest_request_are_read_with_the_order_every_way_it_is_read,);

/// What a reader sees of an order's attached rows: its refunds' ids, oldest first, and its request.
type Attached = (Vec<String>, Option<(String, RequestStatus)>);

fn attached(order: &Order) -> Attached {
    (
        order.refunds.iter().map(|refund| refund.id.clone()).collect(),
        order
            .cancellation_request
            .as_ref()
            .map(|request| (request.id.clone(), request.status)),
    )
}

/// Three orders: one with three refunds made in an order their ids do not sort in, one asked to be
/// cancelled, rejected and asked again, one with neither; answers each order's id and what a reader
/// must see of it.
async fn orders_with_refunds_and_requests(store: &Store, shop_id: &str) -> Vec<(String, Attached)> {
    let refunded = import_an_order(store, shop_id).await;
    let start = now().unix_micros();
    // `ref_c` first, `ref_a` last: read in the order they were made, not by id.
    for (id, offset) in [("ref_c", 0), ("ref_b", 1), ("ref_a", 2)] {
        add_refund(
            store,
            shop_id,
            &refunded,
            id,
            Timestamp::from_unix_micros(start + offset),
        )
        .await;
    }

    let requested = import_an_order(store, shop_id).await;
    let first = change(store, shop_id, &requested, |order| {
        request_cancellation(order, "ordered twice", true, &Actor::System, &mut RandomIds, now()).expect("asked")
    })
    .await;
    let first_id = first.cancellation_request.expect("the request").id;
    change(store, shop_id, &requested, move |order| {
        reject_request(order, &first_id, "already packed", &Actor::System, now()).expect("rejected")
    })
    .await;
    let second = change(store, shop_id, &requested, |order| {
        request_cancellation(
            order,
            "still ordered twice",
            true,
            &Actor::System,
            &mut RandomIds,
            now(),
        )
        .expect("asked")
    })
    .await;
    let second_id = second.cancellation_request.expect("the request").id;

    let plain = import_an_order(store, shop_id).await;
    vec![
        (refunded, (vec!["ref_c".into(), "ref_b".into(), "ref_a".into()], None)),
        (requested, (Vec::new(), Some((second_id, RequestStatus::Requested)))),
        (plain, (Vec::new(), None)),
    ]
}

/// A refund of ¥1 made at `at` with the id `id`, written by a change of the order.
async fn add_refund(store: &Store, shop_id: &str, order_id: &str, id: &str, at: Timestamp) {
    let id = id.to_owned();
    change(store, shop_id, order_id, move |order| {
        let refund = Refund {
            id,
            amount: Money::parse_stored("1").expect("an amount"),
            method: RefundMethod::StoreCredit,
            note: None,
            cancellation_id: None,
            actor: "test".into(),
            created_at: at,
        };
        let mut changed = OrderChange::new(order.clone(), Vec::new(), vec![refund.clone()]);
        changed.order.refunds.push(refund);
        changed
    })
    .await;
}

/// Changes the order through the group writer; answers the order as the change left it.
async fn change(
    store: &Store,
    shop_id: &str,
    order_id: &str,
    decide: impl FnOnce(&Order) -> OrderChange + Send + 'static,
) -> Order {
    store
        .change_order_grouped(shop_id, order_id, move |order, _setup| Ok::<_, ()>(decide(&order)))
        .await
        .expect("the change is written")
        .order
}

/// Asserts that every way of reading the orders sees `expected` of each.
async fn assert_read_every_way(store: &Store, shop_id: &str, expected: &[(String, Attached)]) {
    let ids: Vec<String> = expected.iter().map(|(id, _)| id.clone()).collect();
    let page = store
        .orders(shop_id, &OrderFilter::default(), None, 100)
        .await
        .expect("the orders are listed");
    let mut seen_in_bulk = Vec::new();
    let refused = store
        .change_orders(shop_id, &ids, |order| {
            seen_in_bulk.push((order.id.clone(), attached(order)));
            Err::<OrderChange, _>(())
        })
        .await
        .expect("the orders are read for a change");
    assert!(refused.iter().all(Result::is_err), "every decision refused");
    for (order_id, wanted) in expected {
        let read = order_of(store, shop_id, order_id).await;
        assert_eq!(&attached(&read), wanted, "the order {order_id} read alone");

        let listed = page
            .items
            .iter()
            .find(|order| &order.id == order_id)
            .expect("the order is listed");
        assert_eq!(&attached(listed), wanted, "the order {order_id} in a list");

        let (_, in_bulk) = seen_in_bulk
            .iter()
            .find(|(id, _)| id == order_id)
            .expect("the order is decided on in the bulk change");
        assert_eq!(in_bulk, wanted, "the order {order_id} in a bulk change");

        let (seen_tx, seen) = std::sync::mpsc::channel();
        store
            .change_order_grouped(shop_id, order_id, move |order, _setup| {
                seen_tx.send(attached(&order)).expect("sent");
                Err::<OrderChange, _>(())
            })
            .await
            .expect_err("the decision refuses");
        assert_eq!(
            &seen.recv().expect("seen"),
            wanted,
            "the order {order_id} in the group writer"
        );
    }
}

async fn refunds_and_the_latest_request_are_read_with_the_order_every_way_it_is_read(store: Store) {
    let shop_id = open_shop(&store, "shop_attached").await;
    let expected = orders_with_refunds_and_requests(&store, &shop_id).await;
    assert_read_every_way(&store, &shop_id, &expected).await;
}

/// What migrations 0011 and 0012 changed, undone: a database as 0010 left it, but with the rows the
/// store wrote since.
const BACK_TO_0010: &str = "ALTER TABLE orders DROP COLUMN refund_ids; \
    ALTER TABLE orders DROP COLUMN cancellation_request_id; \
    ALTER TABLE orders DROP COLUMN change_ids; \
    CREATE INDEX refunds_by_order ON refunds (order_id, created_at); \
    CREATE INDEX cancellation_requests_by_order ON cancellation_requests (order_id, created_at); \
    CREATE INDEX order_changes_by_order ON order_changes (order_id, id); \
    DELETE FROM rescind_migrations WHERE version IN (11, 12)";

/// Each order's history lines as (kind, message), oldest first.
async fn histories(store: &Store, shop_id: &str, expected: &[(String, Attached)]) -> Vec<Vec<(String, String)>> {
    let mut histories = Vec::new();
    for (order_id, _) in expected {
        let history = store
            .history(shop_id, order_id)
            .await
            .expect("the history is read")
            .expect("the order exists");
        histories.push(
            history
                .into_iter()
                .map(|line| (line.kind.into_owned(), line.message))
                .collect(),
        );
    }
    histories
}

/// Makes orders with refunds and requests, takes the database back to 0010 through `execute` (on a
/// connection of the backend's own), opens the store on it again (which applies 0011) and checks what
/// a reader sees; then that a refund made after the migration joins the ones from before.
async fn attached_rows_survive_the_migration(url: &str, execute: impl AsyncFn(&str)) {
    let store = Store::open(url).await.expect("the store opens");
    let shop_id = open_shop(&store, "shop_attached_migrated").await;
    let mut expected = orders_with_refunds_and_requests(&store, &shop_id).await;
    let lines_before = histories(&store, &shop_id, &expected).await;
    assert_eq!(
        lines_before.iter().map(Vec::len).collect::<Vec<_>>(),
        [1, 4, 1],
        "imported; imported, asked, rejected, asked again; imported"
    );
    store.close().await;

    execute(BACK_TO_0010).await;
    let store = Store::open(url).await.expect("the store opens and migrates");
    assert_read_every_way(&store, &shop_id, &expected).await;
    assert_eq!(
        histories(&store, &shop_id, &expected).await,
        lines_before,
        "every order's history, in order"
    );

    let (refunded, (refund_ids, _)) = &mut expected[0];
    add_refund(&store, &shop_id, refunded, "ref_later", now()).await;
    refund_ids.push("ref_later".into());
    assert_read_every_way(&store, &shop_id, &expected).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_migrated_from_0010_keeps_every_order_s_refunds_latest_request_and_history_on_sqlite() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let url = common::sqlite_url(&folder);
    attached_rows_survive_the_migration(&url, async |statement: &str| {
        execute_on::<sqlx::SqliteConnection>(&url, statement).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_migrated_from_0010_keeps_every_order_s_refunds_latest_request_and_history_on_postgresql() {
    let Some(schema) = PostgresSchema::create().await else {
        return;
    };
    attached_rows_survive_the_migration(&schema.url, async |statement: &str| {
        execute_on::<sqlx::PgConnection>(&schema.url, statement).await;
    })
    .await;
    schema.drop().await;
}
