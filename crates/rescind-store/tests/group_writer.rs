//! The group writer on SQLite keeps its statements prepared on the writer connection's own handle
//! between groups. Closing the store must finalize them before the connection closes (SQLite refuses
//! to close a connection with statements left, and sqlx panics on its worker thread when it does), and
//! every change it wrote must be there when the file is opened again. A worker recording a step's
//! outcome keeps its lease on the order's job exactly when the next step falls due by the lease's
//! horizon (on both backends).

use rescind_domain::{
    Actor, Address, ChannelKind, Currency, Customer, FinancialStatus, FulfillmentStatus, HistoryEntry, Money,
    NewLineItem, NewOrder, OrderChange, Timestamp, WorkflowSchedule,
};
use rescind_store::{now, ApiToken, ChangeError, Channel, Lease, RandomIds, Settings, Shop, Store};
use std::sync::{Arc, Mutex};

const ORDERS: usize = 40;

fn new_order(channel_id: &str) -> NewOrder {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_store_after_grouped_changes_panics_nowhere_and_keeps_every_change() {
    let panics: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = panics.clone();
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        seen.lock().expect("panics").push(info.to_string())
    }));

    let folder = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}", folder.path().join("rescind.db").display());
    let store = Store::open(&url).await.expect("the store opens");
    let shop_id = open_shop(&store).await;
    let mut order_ids = Vec::new();
    for _ in 0..ORDERS {
        order_ids.push(import_an_order(&store, &shop_id).await);
    }

    // Every order changed twice at once: the changes share groups, and the later change of an order
    // sees the earlier one.
    let mut changes = Vec::new();
    for round in 0..2 {
        for order_id in &order_ids {
            let (store, shop_id, order_id) = (store.clone(), shop_id.clone(), order_id.clone());
            changes.push(tokio::spawn(async move {
                store
                    .change_order_grouped(&shop_id, &order_id, move |order, _setup| {
                        let note = HistoryEntry::new(now(), "note", &Actor::System, format!("note {round}"));
                        Ok::<_, ()>(OrderChange::new(order.clone(), vec![note], Vec::new()))
                    })
                    .await
            }));
        }
    }
    for change in changes {
        assert!(
            !matches!(change.await.expect("the change ran"), Err(ChangeError::Store(_))),
            "a grouped change failed"
        );
    }
    store.close().await;
    drop(store);
    // sqlx closes the connection on its own thread: give it the moment it takes.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    std::panic::set_hook(previous_hook);
    assert_eq!(
        *panics.lock().expect("panics"),
        Vec::<String>::new(),
        "nothing panicked"
    );

    let reopened = Store::open(&url).await.expect("the store opens again");
    for order_id in &order_ids {
        let history = reopened
            .history(&shop_id, order_id)
            .await
            .expect("the history is read")
            .expect("the order exists");
        let mut notes: Vec<&str> = history
            .iter()
            .filter(|entry| entry.kind == "note")
            .map(|entry| entry.message.as_str())
            .collect();
        notes.sort_unstable();
        assert_eq!(notes, ["note 0", "note 1"], "both changes of {order_id} are kept");
    }
    reopened.close().await;
}

/// A shop with an own-store channel (`ch_<shop>`), on a fresh store; answers the shop's id.
async fn open_shop(store: &Store) -> String {
    let shop = Shop {
        id: "shop_group".into(),
        name: "Group".into(),
        settings: Settings::default(),
    };
    let token = ApiToken {
        id: "tok_group".into(),
        shop_id: shop.id.clone(),
        token_hash: "1".repeat(64),
        scopes: vec![],
    };
    store.create_shop(&shop, &token).await.expect("the shop is created");
    let channel = Channel {
        id: format!("ch_{}", shop.id),
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

/// Imports an own-store order of ¥1,000; answers its id.
async fn import_an_order(store: &Store, shop_id: &str) -> String {
    let channel_id = format!("ch_{shop_id}");
    let order = store
        .import_order(shop_id, None, &channel_id, None, |number| {
            let order = new_order(&channel_id)
                .into_order(shop_id, number, &mut RandomIds, now())
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

fn at(offset_ms: i64) -> Timestamp {
    Timestamp::from_unix_micros(now().unix_micros() + offset_ms * 1000)
}

/// Records a change scheduling the order's next step at `due_at` under a lease of `owner` with the
/// horizon `keep_if_due_by`; answers whether the lease was kept.
async fn record(
    store: &Store,
    shop_id: &str,
    order_id: &str,
    owner: &str,
    due_at: Timestamp,
    keep_if_due_by: Timestamp,
) -> bool {
    let lease = Lease {
        owner: owner.to_owned(),
        until: at(30_000),
        keep_if_due_by,
    };
    let (_, kept) = store
        .change_order_leased(shop_id, order_id, lease, move |order, _setup| {
            let mut change = OrderChange::new(order.clone(), Vec::new(), Vec::new());
            change.workflow = WorkflowSchedule::DueAt(due_at);
            Ok::<_, ()>(change)
        })
        .await
        .map_err(|error| format!("{error:?}"))
        .expect("the change is recorded");
    kept
}

async fn a_worker_keeps_its_lease_only_when_the_next_step_falls_due_by_its_horizon(store: Store) {
    let shop_id = open_shop(&store).await;
    let order_id = import_an_order(&store, &shop_id).await;

    assert!(
        record(&store, &shop_id, &order_id, "worker_a", at(0), at(1_000)).await,
        "kept: due now"
    );
    let claimed = store.claim_jobs("worker_b", at(30_000), 10).await.expect("claims run");
    assert!(claimed.is_empty(), "the job stays worker_a's: {claimed:?}");

    assert!(
        !record(&store, &shop_id, &order_id, "worker_a", at(0), at(-1_000)).await,
        "not kept: the step is due after the horizon"
    );
    let claimed = store.claim_jobs("worker_b", at(30_000), 10).await.expect("claims run");
    assert_eq!(
        claimed.iter().map(|job| job.order_id.as_str()).collect::<Vec<_>>(),
        [order_id.as_str()],
        "the freed job is claimed by another worker"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_keeps_its_lease_only_when_the_next_step_falls_due_by_its_horizon_on_sqlite() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}", folder.path().join("rescind.db").display());
    let store = Store::open(&url).await.expect("the store opens");
    a_worker_keeps_its_lease_only_when_the_next_step_falls_due_by_its_horizon(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_keeps_its_lease_only_when_the_next_step_falls_due_by_its_horizon_on_postgres() {
    let Some(url) = std::env::var("RESCIND_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
    else {
        eprintln!("RESCIND_TEST_DATABASE_URL is not set: the PostgreSQL run of this test is skipped");
        return;
    };
    use sqlx::Connection;
    let schema = format!("rescind_store_test_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::PgConnection::connect(&url)
        .await
        .expect("PostgreSQL is reachable");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .expect("a test schema");
    let separator = if url.contains('?') { '&' } else { '?' };
    let store = Store::open(&format!("{url}{separator}options[search_path]={schema}"))
        .await
        .expect("the store opens");
    a_worker_keeps_its_lease_only_when_the_next_step_falls_due_by_its_horizon(store).await;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&mut admin)
        .await
        .expect("the test schema is dropped");
}
