//! What the store's integration tests share: a shop with an own-store channel, an imported order, and
//! a PostgreSQL schema of their own, and raw SQL run beside the store. Each test crate uses part of it.
#![allow(dead_code)]

use rescind_domain::{
    Actor, Address, ChannelKind, Currency, Customer, FinancialStatus, FulfillmentStatus, HistoryEntry, Money,
    NewLineItem, NewOrder, Order,
};
use rescind_store::{now, ApiToken, Channel, ImportError, RandomIds, Settings, Shop, Store};
use sqlx::Connection;

/// An own-store order of ¥1,000 for `channel_id`.
pub fn new_order(channel_id: &str) -> NewOrder {
    NewOrder {
        channel_id: channel_id.to_owned(),
        channel_kind: ChannelKind::OwnStore,
        channel_order_id: None,
        number: None,
        currency: Currency::parse("JPY").expect("JPY"),
        customer: Customer {
            name: "山田 太郎".into(),
            email: None,
            phone: None,
        },
        shipping_address: Address {
            name: "山田 太郎".into(),
            postcode: "150-0001".into(),
            prefecture: Some("東京都".into()),
            province: None,
            address1: "渋谷区神宮前1-2-3".into(),
            address2: None,
            phone: None,
        },
        line_items: vec![NewLineItem {
            channel_line_item_id: None,
            sku: "TEA-001".into(),
            title: "Sencha".into(),
            quantity: 1,
            price: Money::parse_stored("1000").expect("an amount"),
        }],
        total_shipping: Money::ZERO,
        total_tax: Money::ZERO,
        total_discount: Money::ZERO,
        payment: None,
        financial_status: FinancialStatus::Pending,
        fulfillment_status: FulfillmentStatus::AwaitingShipment,
        deduct_inventory: false,
        warehouse_id: None,
    }
}

/// The shop `shop_id` with an own-store channel `ch_<shop_id>`, on a fresh store; answers the shop's id.
pub async fn open_shop(store: &Store, shop_id: &str) -> String {
    let shop = Shop {
        id: shop_id.into(),
        name: shop_id.into(),
        settings: Settings::default(),
    };
    let token = ApiToken {
        id: format!("tok_{shop_id}"),
        shop_id: shop.id.clone(),
        // One per shop: a store may hold several shops.
        token_hash: format!("{shop_id:x<64}"),
        scopes: vec![],
    };
    store.create_shop(&shop, &token).await.expect("the shop is created");
    let channel = Channel {
        id: format!("ch_{shop_id}"),
        shop_id: shop.id.clone(),
        kind: ChannelKind::OwnStore,
        name: "Own store".into(),
        base_url: None,
        credentials: None,
        cancel_sync: true,
        created_at: now(),
    };
    store.create_channel(&channel).await.expect("the channel is created");
    shop.id
}

/// Imports an own-store order of ¥1,000 into the shop's own-store channel; answers its id.
pub async fn import_an_order(store: &Store, shop_id: &str) -> String {
    import(store, shop_id, new_order(&format!("ch_{shop_id}"))).await.id
}

/// Imports `new` into the shop's own-store channel; answers the order.
pub async fn import(store: &Store, shop_id: &str, new: NewOrder) -> Order {
    let channel_id = new.channel_id.clone();
    try_import(store, shop_id, &channel_id, None, new)
        .await
        .expect("the order is imported")
}

/// Imports `new` into `channel_id` of the shop under `channel_order_id`, if any; answers the order or
/// why it was not stored.
pub async fn try_import(
    store: &Store,
    shop_id: &str,
    channel_id: &str,
    channel_order_id: Option<&str>,
    mut new: NewOrder,
) -> Result<Order, ImportError> {
    new.channel_order_id = channel_order_id.map(str::to_owned);
    let owner = shop_id.to_owned();
    store
        .import_order(shop_id, channel_order_id, channel_id, None, move |number| {
            let order = new
                .into_order(&owner, number, &mut RandomIds, now())
                .map_err(|problems| problems.0)?;
            Ok((
                order,
                HistoryEntry::new(now(), "order.imported", &Actor::System, "imported"),
            ))
        })
        .await
}

/// The URL of a fresh SQLite file in `folder`.
pub fn sqlite_url(folder: &tempfile::TempDir) -> String {
    format!("sqlite://{}", folder.path().join("rescind.db").display())
}

/// For each `async fn name(store: Store)`: `sqlite::name` on a fresh SQLite file and
/// `postgres::name` in a schema of its own (skipped without `RESCIND_TEST_DATABASE_URL`).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let folder = tempfile::tempdir().expect("a temporary folder");
                    let store = rescind_store::Store::open(&$crate::common::sqlite_url(&folder)).await.expect("the store opens");
                    super::$name(store).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(schema) = $crate::common::PostgresSchema::create().await else {
                        return;
                    };
                    let store = rescind_store::Store::open(&schema.url).await.expect("the store opens");
                    super::$name(store).await;
                    schema.drop().await;
                }
            )+
        }
    };
}

/// The order as stored now.
pub async fn order_of(store: &Store, shop_id: &str, order_id: &str) -> rescind_domain::Order {
    store
        .order(shop_id, order_id)
        .await
        .expect("the order is read")
        .expect("the order exists")
}

/// A schema of its own on the PostgreSQL server of `RESCIND_TEST_DATABASE_URL`, dropped by [`Self::drop`].
pub struct PostgresSchema {
    admin: sqlx::PgConnection,
    name: String,
    /// The server's URL with the schema as its search path.
    pub url: String,
}

impl PostgresSchema {
    /// `None`, with a note, when `RESCIND_TEST_DATABASE_URL` is not set: the PostgreSQL run is skipped.
    pub async fn create() -> Option<PostgresSchema> {
        let Some(url) = std::env::var("RESCIND_TEST_DATABASE_URL")
            .ok()
            .filter(|url| !url.is_empty())
        else {
            eprintln!("RESCIND_TEST_DATABASE_URL is not set: the PostgreSQL run of this test is skipped");
            return None;
        };
        let name = format!("rescind_store_test_{:016x}", rand::random::<u64>());
        let mut admin = sqlx::PgConnection::connect(&url)
            .await
            .expect("PostgreSQL is reachable");
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut admin)
            .await
            .expect("a test schema");
        let separator = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{separator}options[search_path]={name}");
        Some(PostgresSchema { admin, name, url })
    }

    pub async fn drop(mut self) {
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.name))
            .execute(&mut self.admin)
            .await
            .expect("the test schema is dropped");
    }
}

/// Runs one statement on a new connection of type `C` to `url`.
pub async fn execute_on<C>(url: &str, statement: &str)
where
    C: sqlx::Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    let mut raw = C::connect(url).await.expect("the database is reachable");
    sqlx::raw_sql(statement)
        .execute(&mut raw)
        .await
        .unwrap_or_else(|error| panic!("{statement}: {error}"));
    raw.close().await.expect("closed");
}
