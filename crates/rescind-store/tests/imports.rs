//! Importing orders on both backends: what one import writes (its row, its stock, its history, its
//! event), and what concurrent or refused imports leave behind. Imports are written in batches through
//! the writer — on SQLite in a group's transaction on the writer connection's own handle, on
//! PostgreSQL in a transaction per batch through sqlx: both answer the same.

mod common;

use common::{new_order, open_shop, order_of};
use rescind_domain::{Money, NewLineItem, NewOrder};
use rescind_store::{ImportError, Store};

/// Imports `new` into the shop's own-store channel under `channel_order_id`, if any.
async fn import_as(
    store: &Store,
    shop_id: &str,
    channel_order_id: Option<&str>,
    new: NewOrder,
) -> Result<rescind_domain::Order, ImportError> {
    common::try_import(store, shop_id, &format!("ch_{shop_id}"), channel_order_id, new).await
}

async fn concurrent_imports_of_one_channel_order_store_it_once_and_name_it_to_the_others(store: Store) {
    let shop_id = open_shop(&store, "shop_dup").await;
    let imports = (0..8).map(|_| {
        let store = store.clone();
        let shop_id = shop_id.clone();
        tokio::spawn(
            async move { import_as(&store, &shop_id, Some("CH-1001"), new_order(&format!("ch_{shop_id}"))).await },
        )
    });
    let mut stored = Vec::new();
    let mut duplicates = Vec::new();
    for import in imports {
        match import.await.expect("the import ran") {
            Ok(order) => stored.push(order.id),
            Err(ImportError::Duplicate { existing_id }) => duplicates.push(existing_id),
            Err(other) => panic!("an import failed: {other:#}"),
        }
    }
    assert_eq!(stored.len(), 1, "exactly one import stores the channel order");
    assert_eq!(
        duplicates,
        vec![stored[0].clone(); 7],
        "every other import names the stored order"
    );
    let history = store
        .history(&shop_id, &stored[0])
        .await
        .expect("read")
        .expect("the order exists");
    assert_eq!(
        history.iter().map(|line| line.kind.as_ref()).collect::<Vec<_>>(),
        ["order.imported"]
    );
}

async fn imports_without_a_number_take_the_shop_s_numbers_in_turn(store: Store) {
    let shop_id = open_shop(&store, "shop_numbers").await;
    let imports = (0..6).map(|_| {
        let store = store.clone();
        let shop_id = shop_id.clone();
        tokio::spawn(async move { import_as(&store, &shop_id, None, new_order(&format!("ch_{shop_id}"))).await })
    });
    let mut numbers = Vec::new();
    for import in imports {
        numbers.push(
            import
                .await
                .expect("the import ran")
                .expect("the order is imported")
                .number,
        );
    }
    numbers.sort_by_key(|number| number.trim_start_matches('#').parse::<u64>().expect("a number"));
    let first: u64 = numbers[0].trim_start_matches('#').parse().expect("a number");
    let expected: Vec<String> = (first..first + 6).map(|number| format!("#{number}")).collect();
    assert_eq!(numbers, expected, "six imports, six numbers in a row, none taken twice");
}

async fn a_refused_import_stores_nothing_and_takes_no_number(store: Store) {
    let shop_id = open_shop(&store, "shop_refused").await;
    let mut invalid = new_order(&format!("ch_{shop_id}"));
    invalid.total_discount = Money::parse_stored("5000").expect("an amount");
    let refused = import_as(&store, &shop_id, Some("CH-2001"), invalid).await;
    assert!(
        matches!(refused, Err(ImportError::Invalid(ref problems)) if !problems.is_empty()),
        "{refused:?}"
    );
    let page = store
        .orders(&shop_id, &Default::default(), None, 10)
        .await
        .expect("the orders are listed");
    assert!(page.items.is_empty(), "nothing was stored");
    let first = import_as(&store, &shop_id, Some("CH-2001"), new_order(&format!("ch_{shop_id}")))
        .await
        .expect("the channel order is still free to import");
    let second = import_as(&store, &shop_id, None, new_order(&format!("ch_{shop_id}")))
        .await
        .expect("imported");
    let number = |order: &rescind_domain::Order| order.number.trim_start_matches('#').parse::<u64>().expect("a number");
    assert_eq!(
        number(&second),
        number(&first) + 1,
        "the refused import's number went back"
    );
}

async fn refused_imports_among_concurrent_ones_leave_the_others_whole_and_their_numbers_in_a_row(store: Store) {
    let shop_id = open_shop(&store, "shop_mixed").await;
    let imports = (0..24).map(|index| {
        let store = store.clone();
        let shop_id = shop_id.clone();
        let mut new = new_order(&format!("ch_{shop_id}"));
        if index % 3 == 1 {
            new.total_discount = Money::parse_stored("5000").expect("an amount");
        }
        let channel_order_id = format!("CH-{index}");
        tokio::spawn(async move { import_as(&store, &shop_id, Some(&channel_order_id), new).await })
    });
    let mut numbers = Vec::new();
    for (index, import) in imports.enumerate() {
        match import.await.expect("the import ran") {
            Ok(order) if index % 3 != 1 => {
                numbers.push(order.number.trim_start_matches('#').parse::<u64>().expect("a number"))
            }
            Err(ImportError::Invalid(_)) if index % 3 == 1 => {}
            other => panic!("import {index}: {other:?}"),
        }
    }
    numbers.sort_unstable();
    let expected: Vec<u64> = (numbers[0]..numbers[0] + 16).collect();
    assert_eq!(
        numbers, expected,
        "the sixteen valid orders took sixteen numbers in a row"
    );
    let page = store
        .orders(&shop_id, &Default::default(), None, 50)
        .await
        .expect("the orders are listed");
    assert_eq!(page.items.len(), 16, "every valid order is stored, no refused one");
    for order in &page.items {
        let history = store
            .history(&shop_id, &order.id)
            .await
            .expect("read")
            .expect("the order exists");
        assert_eq!(history.len(), 1, "each order has its own import line");
    }
}

async fn an_import_deducts_what_is_stocked_and_its_history_and_event_say_so(store: Store) {
    let shop_id = open_shop(&store, "shop_stock").await;
    store.set_stock(&shop_id, "TEA-001", 5).await.expect("stock is set");
    let mut new = new_order(&format!("ch_{shop_id}"));
    new.deduct_inventory = true;
    new.line_items[0].quantity = 2;
    new.line_items.push(NewLineItem {
        channel_line_item_id: None,
        sku: "CUP-009".into(),
        title: "Cup".into(),
        quantity: 1,
        price: Money::parse_stored("500").expect("an amount"),
    });
    let order = import_as(&store, &shop_id, Some("CH-3001"), new)
        .await
        .expect("the order is imported");
    assert!(order.inventory_deducted);
    let level = store.stock(&shop_id, "TEA-001").await.expect("read").expect("stocked");
    assert_eq!(level.available, 3, "two of five taken (I1)");
    assert!(
        store.stock(&shop_id, "CUP-009").await.expect("read").is_none(),
        "an unstocked SKU stays unstocked"
    );
    let history = store
        .history(&shop_id, &order.id)
        .await
        .expect("read")
        .expect("the order exists");
    assert_eq!(
        history.iter().map(|line| line.kind.as_ref()).collect::<Vec<_>>(),
        ["order.imported", "stock.deducted"]
    );
    assert!(history[1].message.contains("TEA-001"), "{}", history[1].message);
    assert!(
        history[1]
            .message
            .contains("Not stocked here, so nothing was deducted: CUP-009"),
        "{}",
        history[1].message
    );
    let stored = order_of(&store, &shop_id, &order.id).await;
    assert_eq!(stored.number, order.number);
    assert_eq!(stored.channel_order_id.as_deref(), Some("CH-3001"));
    let events = store.events(&shop_id, 0, 10).await.expect("the events are read");
    let imported = events
        .iter()
        .find(|event| event.event_type == "order.imported" && event.order_id.as_deref() == Some(order.id.as_str()))
        .unwrap_or_else(|| panic!("{events:?}"));
    // Built from the history line and the order's row (migration 0013): the object events always carried.
    assert_eq!(
        imported.payload,
        serde_json::json!({
            "actor": "system",
            "channel_order_id": "CH-3001",
            "data": {},
            "message": "imported",
            "order_id": order.id,
            "order_number": order.number,
            "order_status": "open",
        })
    );
}

async fn concurrent_imports_deduct_one_sku_once_each(store: Store) {
    let shop_id = open_shop(&store, "shop_shared_stock").await;
    store.set_stock(&shop_id, "TEA-001", 20).await.expect("stock is set");
    let imports = (0..6).map(|index| {
        let store = store.clone();
        let shop_id = shop_id.clone();
        let mut new = new_order(&format!("ch_{shop_id}"));
        new.deduct_inventory = true;
        new.line_items[0].quantity = 3;
        let channel_order_id = format!("CH-STOCK-{index}");
        tokio::spawn(async move { import_as(&store, &shop_id, Some(&channel_order_id), new).await })
    });
    for import in imports {
        let order = import.await.expect("the import ran").expect("the order is imported");
        let history = store
            .history(&shop_id, &order.id)
            .await
            .expect("read")
            .expect("the order exists");
        assert_eq!(history[1].kind, "stock.deducted");
        assert!(!history[1].message.contains("Not stocked"), "{}", history[1].message);
    }
    let level = store.stock(&shop_id, "TEA-001").await.expect("read").expect("stocked");
    assert_eq!(level.available, 2, "six orders of three taken from twenty (I1)");
}

async fn an_import_whose_build_panics_fails_alone_and_later_imports_go_on(store: Store) {
    let shop_id = open_shop(&store, "shop_panic").await;
    let channel_id = format!("ch_{shop_id}");
    let panicked = store
        .import_order(&shop_id, Some("CH-PANIC"), &channel_id, None, |_number| {
            panic!("a build that panics (this test's own)")
        })
        .await;
    assert!(matches!(panicked, Err(ImportError::Store(_))), "{panicked:?}");
    let order = import_as(&store, &shop_id, Some("CH-PANIC"), new_order(&channel_id))
        .await
        .expect("the next import is stored");
    assert_eq!(
        order.channel_order_id.as_deref(),
        Some("CH-PANIC"),
        "nothing of the panicked import was kept"
    );
}

on_both_backends!(
    an_import_whose_build_panics_fails_alone_and_later_imports_go_on,
    concurrent_imports_deduct_one_sku_once_each,
    concurrent_imports_of_one_channel_order_store_it_once_and_name_it_to_the_others,
    imports_without_a_number_take_the_shop_s_numbers_in_turn,
    a_refused_import_stores_nothing_and_takes_no_number,
    refused_imports_among_concurrent_ones_leave_the_others_whole_and_their_numbers_in_a_row,
    an_import_deducts_what_is_stocked_and_its_history_and_event_say_so,
);
