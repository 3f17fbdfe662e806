//! The group writer on SQLite keeps its statements prepared on the writer connection's own handle
//! between groups. Closing the store must finalize them before the connection closes (SQLite refuses
//! to close a connection with statements left, and sqlx panics on its worker thread when it does), and
//! every change it wrote must be there when the file is opened again.

use rescind_domain::{
    Actor, Address, ChannelKind, Currency, Customer, FinancialStatus, FulfillmentStatus, HistoryEntry, Money,
    NewLineItem, NewOrder, OrderChange,
};
use rescind_store::{now, ApiToken, ChangeError, Channel, RandomIds, Settings, Shop, Store};
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
        id: "ch_group".into(),
        shop_id: shop.id.clone(),
        kind: ChannelKind::OwnStore,
        name: "Own store".into(),
        base_url: None,
        credentials: None,
        cancel_sync: true,
        created_at: now(),
    };
    store.create_channel(&channel).await.expect("the channel is created");
    let mut order_ids = Vec::new();
    for _ in 0..ORDERS {
        let order = store
            .import_order(&shop.id, None, &channel.id, None, |number| {
                let order = new_order(&channel.id)
                    .into_order(&shop.id, number, &mut RandomIds, now())
                    .map_err(|problems| problems.0)?;
                let entry = HistoryEntry::new(now(), "order.imported", &Actor::System, "imported");
                Ok((order, entry))
            })
            .await
            .expect("the order is imported");
        order_ids.push(order.id);
    }

    // Every order changed twice at once: the changes share groups, and the later change of an order
    // sees the earlier one.
    let mut changes = Vec::new();
    for round in 0..2 {
        for order_id in &order_ids {
            let (store, shop_id, order_id) = (store.clone(), shop.id.clone(), order_id.clone());
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
            .history(&shop.id, order_id)
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
