//! B4's outbox keeps the events of one change in one row (migration 0014): a cancellation's four
//! events cost one row and its index entries instead of four. What a reader sees is unchanged: every
//! event has its own id and number, numbered in the order written, each read once whatever the page
//! size, and the event stream's publisher marks a row done only once every event in it is out.

mod common;

use common::{import_an_order, open_shop};
use rescind_domain::{Actor, EventType, HistoryEntry, OrderChange, Timestamp};
use rescind_store::{now, DeliveryOutcome, OutboxEvent, Store, Webhook};

/// Opens the shop, imports an order into it and changes it with these history lines (kind,
/// message); answers the shop's and the order's ids.
async fn an_order_changed_with(store: &Store, shop: &str, lines: Vec<(&'static str, String)>) -> (String, String) {
    let shop_id = open_shop(store, shop).await;
    let order_id = import_an_order(store, &shop_id).await;
    change_with_lines(store, &shop_id, &order_id, lines).await;
    (shop_id, order_id)
}

/// Writes one change of `shop_id`'s order with these history lines (kind, message).
async fn change_with_lines(store: &Store, shop_id: &str, order_id: &str, lines: Vec<(&'static str, String)>) {
    store
        .change_order_grouped(shop_id, order_id, move |order, _setup| {
            let lines = lines
                .into_iter()
                .map(|(kind, message)| HistoryEntry::new(now(), kind, &Actor::System, message))
                .collect();
            Ok::<_, ()>(OrderChange::new(order.clone(), lines, Vec::new()))
        })
        .await
        .expect("the change is written");
}

/// Every event of the shop, read `page` at a time from the start.
async fn read_in_pages(store: &Store, shop_id: &str, page: u32) -> Vec<OutboxEvent> {
    let mut events: Vec<OutboxEvent> = Vec::new();
    loop {
        let after = events.last().map_or(0, |event| event.seq);
        let next = store.events(shop_id, after, page).await.expect("the events are read");
        assert!(next.len() <= page as usize, "a page of {page} held {}", next.len());
        if next.is_empty() {
            return events;
        }
        events.extend(next);
    }
}

fn summary(events: &[OutboxEvent]) -> Vec<(i64, String, String)> {
    events
        .iter()
        .map(|event| (event.seq, event.id.clone(), event.event_type.clone()))
        .collect()
}

async fn a_change_s_events_are_numbered_one_after_another_and_read_once_whatever_the_page(store: Store) {
    // Four lines that announce events, and one between them that announces none.
    let (shop_id, order_id) = an_order_changed_with(
        &store,
        "shop_outbox_rows",
        vec![
            ("order.cancelled", "cancelled".to_owned()),
            ("note.added", "no event for this one".to_owned()),
            ("refund.recorded", "refunded".to_owned()),
            ("cancellation.completed", "completed".to_owned()),
            ("order.modified", "modified".to_owned()),
        ],
    )
    .await;
    change_with_lines(
        &store,
        &shop_id,
        &order_id,
        vec![("order.modified", "later".to_owned())],
    )
    .await;

    let events = store.events(&shop_id, 0, 100).await.expect("the events are read");
    let kinds: Vec<&str> = events.iter().map(|event| event.event_type.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "order.imported",
            "order.cancelled",
            "refund.created",
            "cancellation.completed",
            "order.modification_synced",
            "order.modification_synced"
        ]
    );
    let messages: Vec<&str> = events
        .iter()
        .map(|event| event.payload["message"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        messages[1..],
        ["cancelled", "refunded", "completed", "modified", "later"],
        "each event tells its own line"
    );
    let numbers: Vec<i64> = events.iter().map(|event| event.seq).collect();
    assert!(
        numbers.windows(2).all(|pair| pair[0] < pair[1]),
        "numbered in the order written: {numbers:?}"
    );
    assert_eq!(
        numbers[1..5]
            .windows(2)
            .map(|pair| pair[1] - pair[0])
            .collect::<Vec<_>>(),
        [1, 1, 1],
        "one change's events follow one another: {numbers:?}"
    );
    let mut ids: Vec<&str> = events.iter().map(|event| event.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), events.len(), "every event has an id of its own");
    for event in &events {
        assert_eq!(event.payload["order_id"], order_id.as_str());
    }

    for page in [1, 2, 3, 4, 5] {
        assert_eq!(
            summary(&read_in_pages(&store, &shop_id, page).await),
            summary(&events),
            "read {page} at a time"
        );
    }
    // A page may start inside a change.
    let from_inside = store
        .events(&shop_id, numbers[2], 2)
        .await
        .expect("the events are read");
    assert_eq!(summary(&from_inside), summary(&events[3..5]));
}

async fn a_change_with_more_events_than_a_row_holds_keeps_them_all_in_order(store: Store) {
    let lines: Vec<(&'static str, String)> = (0..40)
        .map(|index| ("order.modified", format!("change {index}")))
        .collect();
    let (shop_id, _) = an_order_changed_with(&store, "shop_outbox_many", lines).await;

    let events = read_in_pages(&store, &shop_id, 7).await;
    let messages: Vec<String> = events[1..]
        .iter()
        .map(|event| event.payload["message"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(
        messages,
        (0..40).map(|index| format!("change {index}")).collect::<Vec<_>>()
    );
    let numbers: Vec<i64> = events.iter().map(|event| event.seq).collect();
    assert!(
        numbers.windows(2).all(|pair| pair[0] < pair[1]),
        "numbered in the order written: {numbers:?}"
    );
    assert_eq!(
        summary(&events),
        summary(&store.events(&shop_id, 0, 100).await.expect("read"))
    );
}

async fn the_publisher_s_claim_of_a_change_comes_back_until_every_one_of_its_events_is_marked(store: Store) {
    an_order_changed_with(
        &store,
        "shop_outbox_publish",
        vec![
            ("order.cancelled", "cancelled".to_owned()),
            ("refund.recorded", "refunded".to_owned()),
            ("cancellation.completed", "completed".to_owned()),
        ],
    )
    .await;
    // A lease that has already run out, so that what is not marked is claimed again at once.
    let expired = Timestamp::from_unix_micros(now().unix_micros() - 1);
    let claimed = store
        .claim_unpublished("publisher-a", expired, 100)
        .await
        .expect("claimed");
    assert_eq!(
        claimed
            .iter()
            .map(|event| event.event_type.as_str())
            .collect::<Vec<_>>(),
        [
            "order.imported",
            "order.cancelled",
            "refund.created",
            "cancellation.completed"
        ]
    );
    let seqs: Vec<i64> = claimed.iter().map(|event| event.seq).collect();

    // The stream acknowledged the import and the cancel's first two events, then failed.
    store.mark_published(&seqs[..3], "publisher-a").await.expect("marked");
    let again = store
        .claim_unpublished("publisher-b", expired, 100)
        .await
        .expect("claimed");
    assert_eq!(
        summary(&again),
        summary(&claimed[1..]),
        "the change's events come again, all of them (the stream drops what it has by id)"
    );

    store.mark_published(&seqs[1..], "publisher-b").await.expect("marked");
    let left = store
        .claim_unpublished("publisher-c", expired, 100)
        .await
        .expect("claimed");
    assert!(left.is_empty(), "every event is out: {left:?}");
}

async fn a_delivery_of_a_change_s_last_event_keeps_the_change_s_row_until_it_is_delivered(store: Store) {
    let shop_id = open_shop(&store, "shop_outbox_delivery").await;
    // Only the change's last event is wanted.
    store
        .create_webhook(&Webhook {
            id: "whk_last".to_owned(),
            shop_id: shop_id.clone(),
            url: "http://127.0.0.1:9/hook".to_owned(),
            events: vec![EventType::CancellationCompleted],
            secret: "secret".to_owned(),
            active: true,
            created_at: now(),
        })
        .await
        .expect("the webhook is stored");
    let order_id = import_an_order(&store, &shop_id).await;
    change_with_lines(
        &store,
        &shop_id,
        &order_id,
        vec![
            ("order.cancelled", "cancelled".to_owned()),
            ("refund.recorded", "refunded".to_owned()),
            ("cancellation.completed", "completed".to_owned()),
        ],
    )
    .await;
    let events = store.events(&shop_id, 0, 100).await.expect("the events are read");
    let completed = events.last().expect("the change's last event");

    let lease = Timestamp::from_unix_micros(now().unix_micros() + 60_000_000);
    let due = store.claim_deliveries("deliverer", lease, 10).await.expect("claimed");
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(
        (
            due[0].event.seq,
            due[0].event.id.as_str(),
            due[0].event.event_type.as_str()
        ),
        (completed.seq, completed.id.as_str(), "cancellation.completed"),
        "the delivery goes out with its own event, not its row's first"
    );
    assert_eq!(due[0].event.payload["message"], "completed");

    let later =
        Timestamp::from_unix_micros(now().unix_micros() + (rescind_store::OUTBOX_RETENTION_S + 3600) * 1_000_000);
    store.purge_outbox(later).await.expect("purged");
    let kept = store.events(&shop_id, 0, 100).await.expect("the events are read");
    assert_eq!(
        kept.iter().map(|event| event.event_type.as_str()).collect::<Vec<_>>(),
        ["order.cancelled", "refund.created", "cancellation.completed"],
        "the pending delivery keeps its change's row, every event of it; the import's goes"
    );

    store
        .finish_delivery(
            &due[0].delivery.id,
            "deliverer",
            &DeliveryOutcome::Delivered { status_code: 200 },
        )
        .await
        .expect("recorded");
    store.purge_outbox(later).await.expect("purged");
    assert!(
        store
            .events(&shop_id, 0, 100)
            .await
            .expect("the events are read")
            .is_empty(),
        "once delivered, the row goes with its delivery"
    );
}

on_both_backends!(
    a_delivery_of_a_change_s_last_event_keeps_the_change_s_row_until_it_is_delivered,
    a_change_s_events_are_numbered_one_after_another_and_read_once_whatever_the_page,
    a_change_with_more_events_than_a_row_holds_keeps_them_all_in_order,
    the_publisher_s_claim_of_a_change_comes_back_until_every_one_of_its_events_is_marked,
);
