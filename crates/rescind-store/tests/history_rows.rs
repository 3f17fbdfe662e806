//! An order's history is kept as one row per change (migration 0006): the lines a change wrote, in
//! the order it wrote them. Lines a database kept before that migration, one row each in
//! `order_history`, stay where they are and come first (on both backends).

use rescind_domain::{
    Actor, Address, ChannelKind, Currency, Customer, FinancialStatus, FulfillmentStatus, HistoryEntry, Money,
    NewLineItem, NewOrder, OrderChange,
};
use rescind_store::{now, ApiToken, Channel, RandomIds, Settings, Shop, Store};
use sqlx::Connection;

const SHOP: &str = "shop_history";
const CHANNEL: &str = "ch_history";

async fn open_shop(store: &Store) {
    let shop = Shop {
        id: SHOP.into(),
        name: "History".into(),
        settings: Settings::default(),
    };
    let token = ApiToken {
        id: "tok_history".into(),
        shop_id: SHOP.into(),
        token_hash: "2".repeat(64),
        scopes: vec![],
    };
    store.create_shop(&shop, &token).await.expect("the shop is created");
    let channel = Channel {
        id: CHANNEL.into(),
        shop_id: SHOP.into(),
        kind: ChannelKind::OwnStore,
        name: "Own store".into(),
        base_url: None,
        credentials: None,
        cancel_sync: true,
        created_at: now(),
    };
    store.create_channel(&channel).await.expect("the channel is created");
}

async fn import_an_order(store: &Store) -> String {
    let new_order = NewOrder {
        channel_id: CHANNEL.into(),
        channel_kind: ChannelKind::OwnStore,
        channel_order_id: None,
        number: None,
        currency: Currency::parse("JPY").expect("JPY"),
        customer: Customer {
            name: "佐藤 花子".into(),
            email: None,
            phone: None,
        },
        shipping_address: Address {
            name: "佐藤 花子".into(),
            postcode: "530-0001".into(),
            prefecture: Some("大阪府".into()),
            province: None,
            address1: "大阪市北区梅田1-1".into(),
            address2: None,
            phone: None,
        },
        line_items: vec![NewLineItem {
            channel_line_item_id: None,
            sku: "TEA-002".into(),
            title: "Gyokuro".into(),
            quantity: 1,
            price: Money::parse_stored("2600").expect("an amount"),
        }],
        total_shipping: Money::ZERO,
        total_tax: Money::ZERO,
        total_discount: Money::ZERO,
        payment: None,
        financial_status: FinancialStatus::Pending,
        fulfillment_status: FulfillmentStatus::AwaitingShipment,
        deduct_inventory: false,
        warehouse_id: None,
    };
    let order = store
        .import_order(SHOP, None, CHANNEL, None, |number| {
            let order = new_order
                .into_order(SHOP, number, &mut RandomIds, now())
                .map_err(|problems| problems.0)?;
            Ok((
                order,
                HistoryEntry::new(now(), "order.imported", &Actor::System, "imported"),
            ))
        })
        .await
        .expect("the order is imported");
    order.id
}

/// Imports an order, adds a line the way a database before migration 0006 kept it (its own row in
/// `order_history`, through `raw`), changes the order with three lines, and reads the history back.
async fn history_before_and_after_the_migration(store: &Store, raw: impl AsyncFnOnce(&str)) {
    open_shop(store).await;
    let order_id = import_an_order(store).await;
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
    assert_eq!(messages, ["kept from before", "imported", "first", "second", "third"]);
    assert_eq!(history[0].data, [("from".to_owned(), "0005".to_owned())]);
    assert_eq!(history[3].actor, "token:tok_history");
    assert_eq!(history[3].data, [("n".to_owned(), "second".to_owned())]);
    store.close().await;
}

const OLD_LINE: &str = "INSERT INTO order_history (order_id, at, kind, actor, message, data) \
    VALUES ($1, 0, 'order.note', 'system', 'kept from before', '{\"from\":\"0005\"}')";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_kept_before_one_row_per_change_come_first_then_each_change_s_lines_in_order_on_sqlite() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}", folder.path().join("rescind.db").display());
    let store = Store::open(&url).await.expect("the store opens");
    history_before_and_after_the_migration(&store, async |order_id: &str| {
        let mut raw = sqlx::SqliteConnection::connect(&url).await.expect("the file opens");
        sqlx::query(OLD_LINE)
            .bind(order_id)
            .execute(&mut raw)
            .await
            .expect("an old line is written");
        raw.close().await.expect("closed");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_kept_before_one_row_per_change_come_first_then_each_change_s_lines_in_order_on_postgres() {
    let Some(url) = std::env::var("RESCIND_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        eprintln!("RESCIND_TEST_DATABASE_URL is not set: the PostgreSQL run of this test is skipped");
        return;
    };
    let schema = format!("rescind_history_test_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::PgConnection::connect(&url)
        .await
        .expect("PostgreSQL is reachable");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .expect("a test schema");
    let separator = if url.contains('?') { '&' } else { '?' };
    let in_schema = format!("{url}{separator}options[search_path]={schema}");
    let store = Store::open(&in_schema).await.expect("the store opens");
    history_before_and_after_the_migration(&store, async |order_id: &str| {
        let mut raw = sqlx::PgConnection::connect(&in_schema)
            .await
            .expect("PostgreSQL is reachable");
        sqlx::query(OLD_LINE)
            .bind(order_id)
            .execute(&mut raw)
            .await
            .expect("an old line is written");
        raw.close().await.expect("closed");
    })
    .await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut admin)
        .await
        .expect("the test schema is dropped");
}
