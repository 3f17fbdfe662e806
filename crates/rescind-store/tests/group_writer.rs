//! The group writer on SQLite keeps its statements prepared on the writer connection's own handle
//! between groups. Closing the store must finalize them before the connection closes (SQLite refuses
//! to close a connection with statements left, and sqlx panics on its worker thread when it does), and
//! every change it wrote must be there when the file is opened again; while changes keep coming it
//! still lets the other writes have the connection in turn. A worker recording a step's
//! outcome keeps its lease on the order's job exactly when the next step falls due by the lease's
//! horizon (on both backends), and a step's outcome that leaves the restock due now runs it in the
//! same transaction — as one change, one history row and one outbox row for both. The shops' setups it keeps between groups take in a channel or a warehouse
//! created since. Restocks of one SKU written together move its level by all of them, each once; a
//! step's outcome whose cancellation has no restock left to run locks no stock level. Changes of one
//! order sent at once each start from the one before, the last is what is kept, and the order's history
//! tells them in the order they were made. An order changed beside the group writer is read again
//! by its next group, and a group that waited for an order's lock decides on what was written under it.
//! Idempotency keys claimed among the changes each get their own answer (B3).

mod common;

use common::{import_an_order, open_shop, order_of, sqlite_url, PostgresSchema};
use rescind_domain::{
    cancel::cancel_order, pending_work, record_step_outcome, Actor, CancelOptions, HistoryEntry, OrderChange,
    PendingWork, RefundMethod, StaleStep, StepKind, StepOutcome, StepStatus, Timestamp, WorkflowSchedule,
};
use rescind_store::{now, ChangeError, Lease, RandomIds, Store};
use sqlx::Connection;
use std::sync::{Arc, Mutex};

const ORDERS: usize = 40;

on_both_backends!(
    a_worker_keeps_its_lease_only_when_the_next_step_falls_due_by_its_horizon,
    a_step_s_outcome_that_leaves_the_restock_due_puts_the_stock_back_in_the_same_change,
    a_channel_created_after_the_writer_read_the_shop_s_setup_is_in_the_next_decision_about_its_orders,
    restocks_of_one_sku_sent_together_and_twice_over_put_each_order_s_unit_back_once_and_queue_one_push,
    changes_of_one_order_sent_at_once_each_see_the_one_before_and_its_history_tells_them_in_order,
    an_order_changed_beside_the_group_writer_is_read_again_by_its_next_group,
    a_decision_that_panics_fails_its_change_and_the_group_writer_goes_on,
    idempotency_keys_claimed_among_changes_each_get_their_own_answer_and_replay_once_completed,
    a_claim_left_without_a_response_is_taken_over_once_abandoned_and_a_response_once_expired,
);

/// B3 through the group writer (on SQLite a key's claim, response and release run in the writer's
/// transactions): many keys claimed at once, beside changes, are each new; the same key again is in
/// progress until its response is stored, then replayed, and refused for another request; a released
/// claim can be taken again.
async fn idempotency_keys_claimed_among_changes_each_get_their_own_answer_and_replay_once_completed(store: Store) {
    use rescind_store::IdempotencyClaim;
    let shop_id = open_shop(&store, "shop_keys").await;
    let order_id = import_an_order(&store, &shop_id).await;
    let claims: Vec<_> = (0..64)
        .map(|number| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .claim_idempotency_key("shop_keys", &format!("key-{number}"), "fp")
                    .await
            })
        })
        .collect();
    // The same key twice at once (a client's retry racing its first request): one runs.
    let twice: Vec<_> = (0..2)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.claim_idempotency_key("shop_keys", "twice", "fp").await })
        })
        .collect();
    set_reason_grouped(&store, &shop_id, &order_id, "beside the keys").await;
    for asked in claims {
        assert_eq!(asked.await.expect("ran").expect("claimed"), IdempotencyClaim::New);
    }
    let mut twice_claimed = Vec::new();
    for asked in twice {
        twice_claimed.push(asked.await.expect("ran").expect("claimed"));
    }
    twice_claimed.sort_by_key(|found| found != &IdempotencyClaim::New);
    assert_eq!(twice_claimed, [IdempotencyClaim::New, IdempotencyClaim::InProgress]);
    assert_eq!(claim(&store, "key-0", "fp").await, IdempotencyClaim::InProgress);
    store
        .complete_idempotency_key("shop_keys", "key-0", 200, "{\"id\":\"ord\"}")
        .await
        .expect("completed");
    assert_eq!(
        claim(&store, "key-0", "fp").await,
        IdempotencyClaim::Replay {
            status_code: 200,
            body: "{\"id\":\"ord\"}".to_owned()
        }
    );
    assert_eq!(claim(&store, "key-0", "another").await, IdempotencyClaim::Mismatch);
    store
        .release_idempotency_key("shop_keys", "key-1")
        .await
        .expect("released");
    assert_eq!(claim(&store, "key-1", "fp").await, IdempotencyClaim::New);
    assert_eq!(notes_of(&store, &shop_id, &order_id).await, ["beside the keys"]);
    store.close().await;
}

/// B3's retention: a claim left without a response stands (in progress) until it counts as abandoned
/// (`IDEMPOTENCY_ABANDONED_AFTER_S`), then a new claim takes the key over; a stored response is
/// replayed until it expires (`IDEMPOTENCY_RETENTION_S`), then the key is new again.
async fn a_claim_left_without_a_response_is_taken_over_once_abandoned_and_a_response_once_expired(store: Store) {
    use rescind_store::{IdempotencyClaim, IDEMPOTENCY_ABANDONED_AFTER_S, IDEMPOTENCY_RETENTION_S};
    let claim_at = |key: &'static str, fingerprint: &'static str, at: Timestamp| {
        let store = store.clone();
        async move {
            store
                .claim_idempotency_key_at("shop_stale", key, fingerprint, at)
                .await
                .expect("asked")
        }
    };
    let first = now();
    assert_eq!(claim_at("left", "fp", first).await, IdempotencyClaim::New);
    let meanwhile = first.plus_seconds(IDEMPOTENCY_ABANDONED_AFTER_S - 1);
    assert_eq!(claim_at("left", "fp", meanwhile).await, IdempotencyClaim::InProgress);
    let abandoned = first.plus_seconds(IDEMPOTENCY_ABANDONED_AFTER_S + 1);
    assert_eq!(
        claim_at("left", "another", abandoned).await,
        IdempotencyClaim::New,
        "an abandoned claim is taken over, whatever the request"
    );
    store
        .complete_idempotency_key("shop_stale", "left", 200, "{}")
        .await
        .expect("completed");
    let replay = IdempotencyClaim::Replay {
        status_code: 200,
        body: "{}".to_owned(),
    };
    let kept = abandoned.plus_seconds(IDEMPOTENCY_RETENTION_S - 1);
    assert_eq!(
        claim_at("left", "another", kept).await,
        replay,
        "a response is kept, not abandoned"
    );
    let expired = abandoned.plus_seconds(IDEMPOTENCY_RETENTION_S + 1);
    assert_eq!(claim_at("left", "fp", expired).await, IdempotencyClaim::New);
    assert_eq!(claim_at("left", "fp", expired).await, IdempotencyClaim::InProgress);
    store.close().await;
}

/// Where the key `key` of the shop `shop_keys` stands for a request of `fingerprint`.
async fn claim(store: &Store, key: &str, fingerprint: &str) -> rescind_store::IdempotencyClaim {
    store
        .claim_idempotency_key("shop_keys", key, fingerprint)
        .await
        .expect("asked")
}

/// A decision that panics (a bug in the domain code) fails its change, which writes nothing; the
/// writer rolls its group back and goes on with the next — it does not stop taking changes.
async fn a_decision_that_panics_fails_its_change_and_the_group_writer_goes_on(store: Store) {
    let shop_id = open_shop(&store, "shop_panicking").await;
    let order_id = import_an_order(&store, &shop_id).await;
    let panicked = store
        .change_order_grouped(&shop_id, &order_id, |_order, _setup| -> Result<OrderChange, ()> {
            panic!("a decision's bug")
        })
        .await;
    assert!(matches!(panicked, Err(ChangeError::Store(_))), "{panicked:?}");
    for note in ["after", "and again"] {
        set_reason_grouped(&store, &shop_id, &order_id, note).await;
    }
    assert_eq!(
        notes_of(&store, &shop_id, &order_id).await,
        ["after", "and again"],
        "the changes after the panic are written, and nothing of the one that panicked"
    );
    store.close().await;
}

/// How many changes of each order are sent at once.
const CHANGES_OF_ONE_ORDER: usize = 24;

async fn changes_of_one_order_sent_at_once_each_see_the_one_before_and_its_history_tells_them_in_order(store: Store) {
    let shop_id = open_shop(&store, "shop_one_order").await;
    let order_ids = [
        import_an_order(&store, &shop_id).await,
        import_an_order(&store, &shop_id).await,
    ];
    // Each change adds an `x` to what the order's change before it left: the changes of one order
    // in one group must each start from the one before, and the last one is what stays.
    let mut changes = Vec::new();
    for _ in 0..CHANGES_OF_ONE_ORDER {
        for order_id in &order_ids {
            let (store, shop_id, order_id) = (store.clone(), shop_id.clone(), order_id.clone());
            changes.push(tokio::spawn(async move {
                store
                    .change_order_grouped(&shop_id, &order_id, |order, _setup| {
                        let mut changed = order.clone();
                        let reason = format!("{}x", order.cancel_reason.as_deref().unwrap_or_default());
                        let note =
                            HistoryEntry::new(now(), "note", &Actor::System, format!("change {:02}", reason.len()));
                        changed.cancel_reason = Some(reason);
                        Ok::<_, ()>(OrderChange::new(changed, vec![note], Vec::new()))
                    })
                    .await
            }));
        }
    }
    for change in changes {
        assert!(change.await.expect("the change ran").is_ok(), "a change failed");
    }
    for order_id in &order_ids {
        let order = order_of(&store, &shop_id, order_id).await;
        assert_eq!(
            order.cancel_reason,
            Some("x".repeat(CHANGES_OF_ONE_ORDER)),
            "order {order_id}"
        );
        // The history tells the changes in the order they were made (its rows numbered in the order
        // they commit, within a group as across groups).
        let told = notes_told(&store, &shop_id, order_id).await;
        let made: Vec<String> = (1..=CHANGES_OF_ONE_ORDER).map(|n| format!("change {n:02}")).collect();
        assert_eq!(told, made, "order {order_id}");
    }
}

/// The change that sets the order's cancel reason, noted in its history.
fn with_reason(order: &rescind_domain::Order, reason: &str) -> Result<OrderChange, ()> {
    let mut changed = order.clone();
    changed.cancel_reason = Some(reason.to_owned());
    let note = HistoryEntry::new(now(), "note", &Actor::System, reason);
    Ok(OrderChange::new(changed, vec![note], Vec::new()))
}

/// A grouped change that sets the order's cancel reason.
async fn set_reason_grouped(store: &Store, shop_id: &str, order_id: &str, reason: &'static str) {
    store
        .change_order_grouped(shop_id, order_id, move |order, _setup| with_reason(&order, reason))
        .await
        .expect("the grouped change is written");
}

async fn an_order_changed_beside_the_group_writer_is_read_again_by_its_next_group(store: Store) {
    let shop_id = open_shop(&store, "shop_beside").await;
    let order_id = import_an_order(&store, &shop_id).await;
    // The group writer writes the order (a writer that kept what it committed must notice)…
    set_reason_grouped(&store, &shop_id, &order_id, "by the group writer").await;
    // …then a change in a transaction of its own (as a bulk cancel's, or another process's) writes it…
    store
        .change_order(&shop_id, &order_id, |order| with_reason(order, "beside it"))
        .await
        .expect("the change beside the group writer is written");
    // …so the writer's next group decides on the order as it is now, not as the writer left it.
    let seen = store
        .change_order_grouped(&shop_id, &order_id, |order, _setup| {
            Err::<OrderChange, _>(order.cancel_reason.clone())
        })
        .await;
    assert!(
        matches!(&seen, Err(ChangeError::Refused(Some(reason))) if reason == "beside it"),
        "{seen:?}"
    );
    // And what it writes next starts from there.
    set_reason_grouped(&store, &shop_id, &order_id, "by the group writer again").await;
    assert_eq!(
        notes_told(&store, &shop_id, &order_id).await,
        ["by the group writer", "beside it", "by the group writer again"]
    );
    store.close().await;
}

/// The messages of the order's `note` history lines, in the order its history tells them.
async fn notes_told(store: &Store, shop_id: &str, order_id: &str) -> Vec<String> {
    let history = store
        .history(shop_id, order_id)
        .await
        .expect("the history is read")
        .expect("the order exists");
    history
        .into_iter()
        .filter(|entry| entry.kind == "note")
        .map(|entry| entry.message)
        .collect()
}

/// The messages of the order's `note` history lines, sorted.
async fn notes_of(store: &Store, shop_id: &str, order_id: &str) -> Vec<String> {
    let mut notes = notes_told(store, shop_id, order_id).await;
    notes.sort_unstable();
    notes
}

/// The SQLite database in `folder`.
/// A fresh SQLite store (in the folder answered first) with the shop `shop_id` and [`ORDERS`] of its
/// orders.
async fn sqlite_shop_with_orders(shop_id: &str) -> (tempfile::TempDir, Store, String, Vec<String>) {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let store = Store::open(&sqlite_url(&folder)).await.expect("the store opens");
    let shop_id = open_shop(&store, shop_id).await;
    let mut order_ids = Vec::new();
    for _ in 0..ORDERS {
        order_ids.push(import_an_order(&store, &shop_id).await);
    }
    (folder, store, shop_id, order_ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_store_after_grouped_changes_panics_nowhere_and_keeps_every_change() {
    let panics: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = panics.clone();
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        seen.lock().expect("panics").push(info.to_string())
    }));

    let (folder, store, shop_id, order_ids) = sqlite_shop_with_orders("shop_group").await;
    let url = sqlite_url(&folder);

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
        assert_eq!(
            notes_of(&reopened, &shop_id, order_id).await,
            ["note 0", "note 1"],
            "both changes of {order_id} are kept"
        );
    }
    reopened.close().await;
}

/// Each order changed over and over, one change after another, until stopped.
struct Changing {
    stop: Arc<std::sync::atomic::AtomicBool>,
    streams: Vec<tokio::task::JoinHandle<u64>>,
}

impl Changing {
    /// Starts adding the note `note` to each of `order_ids`, over and over.
    fn start(store: &Store, shop_id: &str, order_ids: Vec<String>, note: &'static str) -> Changing {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut streams = Vec::new();
        for order_id in order_ids {
            let (store, shop_id, stop) = (store.clone(), shop_id.to_owned(), stop.clone());
            streams.push(tokio::spawn(async move {
                let mut changes = 0_u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    store
                        .change_order_grouped(&shop_id, &order_id, move |order, _setup| {
                            let note = HistoryEntry::new(now(), "note", &Actor::System, note);
                            Ok::<_, ()>(OrderChange::new(order.clone(), vec![note], Vec::new()))
                        })
                        .await
                        .expect("a grouped change is written");
                    changes += 1;
                }
                changes
            }));
        }
        Changing { stop, streams }
    }

    /// Stops the changes, which must have gone on past one round of the orders; answers how many
    /// were written.
    async fn stop_having_kept_coming(self) -> u64 {
        let changes = self.stop().await;
        assert!(changes > ORDERS as u64, "the changes kept coming ({changes})");
        changes
    }

    /// Stops the changes; answers how many were written.
    async fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut changes = 0;
        for stream in self.streams {
            changes += stream.await.expect("the stream ran");
        }
        changes
    }
}

/// Imports while changes keep coming (through the group writer since the eighteenth session, in its
/// groups' transactions) get their turn while the changes go on, instead of after they stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_beside_the_group_writer_gets_its_turn_while_changes_keep_coming() {
    let (_folder, store, shop_id, order_ids) = sqlite_shop_with_orders("shop_busy").await;
    let changing = Changing::start(&store, &shop_id, order_ids, "busy");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut imports = 0;
    let imported_while_busy = tokio::time::timeout(std::time::Duration::from_secs(3), async {
        for _ in 0..5 {
            import_an_order(&store, &shop_id).await;
            imports += 1;
        }
    })
    .await;
    let changes = changing.stop().await;
    assert!(
        imported_while_busy.is_ok(),
        "five imports beside {changes} grouped changes took over 3 s ({imports} done)"
    );
    assert!(changes > ORDERS as u64, "the changes kept coming ({changes})");
    store.close().await;
}

/// A write beside the SQLite group writer (a stock level set by hand here; settings, tokens, webhooks,
/// the workers' leases) asks for the writer connection and has it after the group being written,
/// not once the writer's hold of up to 100 ms is over: while changes keep coming, half of twenty
/// such writes take well under half the hold (each waited for the rest of the hold, they would take
/// about half of it on average).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_beside_the_group_writer_has_the_connection_after_its_group_not_its_hold() {
    let (_folder, store, shop_id, order_ids) = sqlite_shop_with_orders("shop_wanted").await;
    let changing = Changing::start(&store, &shop_id, order_ids, "wanted");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut took = Vec::new();
    for level in 0..20 {
        let asked = std::time::Instant::now();
        store
            .set_stock(&shop_id, "SKU-WANTED", level)
            .await
            .expect("the level is set");
        took.push(asked.elapsed());
        // A pause, so that each write comes at another moment of the writer's hold.
        tokio::time::sleep(std::time::Duration::from_millis(7)).await;
    }
    let changes = changing.stop_having_kept_coming().await;
    took.sort();
    let median = took[took.len() / 2];
    assert!(
        median < std::time::Duration::from_millis(25),
        "the median write beside {changes} grouped changes took {median:?} (all: {took:?})"
    );
    store.close().await;
}

/// The SQLite group writer's groups find a slot of SQLite's own small-object allocator (the
/// connection's lookaside) for every allocation: past the default 40 slots each went to `malloc`
/// behind a mutex.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_writer_s_groups_never_run_out_of_lookaside() {
    let (_folder, store, shop_id, order_ids) = sqlite_shop_with_orders("shop_lookaside").await;
    let changing = Changing::start(&store, &shop_id, order_ids, "allocated");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let changes = changing.stop_having_kept_coming().await;
    let full = store
        .sqlite_writer_lookaside_full()
        .await
        .expect("the status is read")
        .expect("an SQLite store");
    assert_eq!(
        full, 0,
        "no allocation of {changes} grouped changes found the lookaside full"
    );
    store.close().await;
}

/// The SQLite group writer leaves its commits' fsync to a thread of its own (`synchronous =
/// NORMAL` on the writer connection while it holds it); every other write on that connection — a
/// setting, a webhook, a worker's lease, a checkpoint — still commits with its own (`FULL`), even while
/// changes keep coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_beside_the_group_writer_commit_with_their_own_fsync_while_changes_keep_coming() {
    let (_folder, store, shop_id, order_ids) = sqlite_shop_with_orders("shop_fsync").await;
    let changing = Changing::start(&store, &shop_id, order_ids, "synced");
    let mut settings = Vec::new();
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        settings.push(
            store
                .sqlite_writer_synchronous()
                .await
                .expect("the setting is read")
                .expect("an SQLite store"),
        );
    }
    changing.stop_having_kept_coming().await;
    assert_eq!(
        settings,
        vec![2; 20],
        "FULL (2) every time the connection was had beside the group writer"
    );
    store.close().await;
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
    let shop_id = open_shop(&store, "shop_group").await;
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

/// Imports an order of one TEA-001 whose stock is deducted at import, and cancels it so that only
/// its restock is left; answers the order's id.
async fn an_order_waiting_for_its_restock(store: &Store, shop_id: &str) -> String {
    let before = available(store, shop_id).await;
    let mut new = common::new_order(&format!("ch_{shop_id}"));
    new.deduct_inventory = true;
    let order = common::import(store, shop_id, new).await;
    let options = CancelOptions {
        refund_method: Some(RefundMethod::StoreCredit),
        ..CancelOptions::default()
    };
    let change = store
        .change_order_grouped(shop_id, &order.id, move |order, _setup| {
            cancel_order(order, &options, &Actor::System, &mut RandomIds, now()).map(|(_, change)| change)
        })
        .await
        .map_err(|error| format!("{error:?}"))
        .expect("the cancellation is written");
    assert!(
        matches!(pending_work(&change.order), Some(PendingWork::Restock)),
        "only the restock is left: {:?}",
        change.order.cancellation
    );
    assert_eq!(available(store, shop_id).await, before - 1, "I1: deducted at import");
    order.id
}

/// The shop `shop_id` with ten TEA-001 in stock and [`an_order_waiting_for_its_restock`]: the shop's
/// id and the order's.
async fn a_stocked_shop_with_an_order_waiting_for_its_restock(store: &Store, shop_id: &str) -> (String, String) {
    let shop_id = open_shop(store, shop_id).await;
    store
        .set_stock(&shop_id, "TEA-001", 10)
        .await
        .expect("the stock is set");
    let order_id = an_order_waiting_for_its_restock(store, &shop_id).await;
    (shop_id, order_id)
}

/// The shop's available TEA-001.
async fn available(store: &Store, shop_id: &str) -> i64 {
    store
        .stock(shop_id, "TEA-001")
        .await
        .expect("read")
        .expect("TEA-001 is stocked")
        .available
}

/// The restock's outcome as a worker records it, from what the restock found.
fn record_restock(
    order: &rescind_domain::Order,
    report: rescind_store::RestockReport,
) -> Result<OrderChange, StaleStep> {
    let outcome = StepOutcome::Restocked {
        restocked: report.restocked,
        already: report.already,
        missing: report.missing,
    };
    record_step_outcome(order.clone(), StepKind::Restock, outcome, &mut RandomIds, now())
}

/// Records a step's outcome (a line of `kind`) scheduling the next step at `due_at`, with the restock
/// to run after it when that is due now; answers the order as the change left it.
async fn record_then_restock(
    store: &Store,
    shop_id: &str,
    order_id: &str,
    kind: &'static str,
    due_at: Timestamp,
) -> rescind_domain::Order {
    let lease = Lease {
        owner: "worker_a".to_owned(),
        until: at(30_000),
        keep_if_due_by: at(1_000),
    };
    let (change, _kept) = store
        .change_order_leased_then_restock(
            shop_id,
            order_id,
            lease,
            move |order, _setup| {
                let line = HistoryEntry::new(now(), kind, &Actor::System, "the step before the restock");
                let mut change = OrderChange::new(order.clone(), vec![line], Vec::new());
                change.workflow = WorkflowSchedule::DueAt(due_at);
                Ok(change)
            },
            record_restock,
        )
        .await
        .map_err(|error| format!("{error:?}"))
        .expect("the change is recorded");
    change.order
}

async fn a_step_s_outcome_that_leaves_the_restock_due_puts_the_stock_back_in_the_same_change(store: Store) {
    let (shop_id, later) = a_stocked_shop_with_an_order_waiting_for_its_restock(&store, "shop_restock").await;
    let order = record_then_restock(&store, &shop_id, &later, "note", at(60_000)).await;
    assert!(
        matches!(pending_work(&order), Some(PendingWork::Restock)),
        "a restock due later is left to its own step"
    );
    assert_eq!(available(&store, &shop_id).await, 9, "nothing went back yet");

    let now_due = an_order_waiting_for_its_restock(&store, &shop_id).await;
    let order = record_then_restock(&store, &shop_id, &now_due, "note", now()).await;
    assert!(
        pending_work(&order).is_none(),
        "nothing is left: {:?}",
        order.cancellation
    );
    let restock = order
        .cancellation
        .as_ref()
        .and_then(|c| c.step(StepKind::Restock))
        .expect("a restock step");
    assert_eq!(restock.status, StepStatus::Succeeded, "{restock:?}");
    assert_eq!(
        available(&store, &shop_id).await,
        9,
        "I2: this order's unit went back (8 + 1); the other's is still out"
    );
    let history = store
        .history(&shop_id, &now_due)
        .await
        .expect("read")
        .expect("the order exists");
    let kinds: Vec<&str> = history.iter().map(|line| line.kind.as_ref()).collect();
    let note = kinds.iter().position(|kind| *kind == "note").expect("the step's line");
    let restocked = kinds
        .iter()
        .rposition(|kind| *kind == "step.restock")
        .expect("the restock's line");
    assert!(note < restocked, "the step's line, then the restock's: {kinds:?}");
    store.close().await;
}

/// The count `statement` answers for `order_id`, on a connection of `$connection` of its own.
macro_rules! count_on {
    ($connection:ty, $url:expr, $statement:expr, $order_id:expr) => {{
        let mut raw = <$connection>::connect($url).await.expect("connected");
        let count: i64 = sqlx::query_scalar($statement)
            .bind($order_id)
            .fetch_one(&mut raw)
            .await
            .expect("counted");
        raw.close().await.expect("closed");
        count
    }};
}

/// Rows of `table` that name `order_id`, counted on a connection of their own.
async fn rows_naming(url: &str, table: &str, order_id: &str) -> i64 {
    let statement = format!("SELECT COUNT(*) FROM {table} WHERE order_id = $1");
    if url.starts_with("sqlite:") {
        count_on!(sqlx::SqliteConnection, url, &statement, order_id)
    } else {
        count_on!(sqlx::PgConnection, url, &statement, order_id)
    }
}

/// A step's outcome and the restock it lets run are written as one change: the history lines of both in
/// one history row, the events of both in one outbox row.
async fn a_step_s_outcome_and_the_restock_it_lets_run_make_one_history_row_and_one_outbox_row(url: &str) {
    let store = Store::open(url).await.expect("the store opens");
    let (shop_id, order_id) = a_stocked_shop_with_an_order_waiting_for_its_restock(&store, "shop_one_row").await;
    let history_rows = rows_naming(url, "order_changes", &order_id).await;
    let outbox_rows = rows_naming(url, "outbox_events", &order_id).await;
    let lines = store
        .history(&shop_id, &order_id)
        .await
        .expect("read")
        .expect("the order exists")
        .len();
    // A line that announces an event (`order.modification_synced`), as the restock's does.
    let order = record_then_restock(&store, &shop_id, &order_id, "order.modified", now()).await;
    assert!(pending_work(&order).is_none(), "{:?}", order.cancellation);
    assert_eq!(available(&store, &shop_id).await, 10, "I2: the unit went back");
    let history = store
        .history(&shop_id, &order_id)
        .await
        .expect("read")
        .expect("the order exists");
    let kinds: Vec<&str> = history[lines..].iter().map(|line| line.kind.as_ref()).collect();
    assert_eq!(
        kinds.first(),
        Some(&"order.modified"),
        "the step's line first: {kinds:?}"
    );
    assert!(kinds.contains(&"step.restock"), "then the restock's: {kinds:?}");
    assert_eq!(
        rows_naming(url, "order_changes", &order_id).await,
        history_rows + 1,
        "one history row for both"
    );
    assert_eq!(
        rows_naming(url, "outbox_events", &order_id).await,
        outbox_rows + 1,
        "one outbox row for both"
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_s_outcome_and_the_restock_it_lets_run_make_one_history_row_and_one_outbox_row_on_sqlite() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    a_step_s_outcome_and_the_restock_it_lets_run_make_one_history_row_and_one_outbox_row(&sqlite_url(&folder)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_s_outcome_and_the_restock_it_lets_run_make_one_history_row_and_one_outbox_row_on_postgres() {
    let Some(schema) = PostgresSchema::create().await else {
        return;
    };
    a_step_s_outcome_and_the_restock_it_lets_run_make_one_history_row_and_one_outbox_row(&schema.url).await;
    schema.drop().await;
}

/// What a restock found: what it put back and what was back already.
type Found = (Vec<(String, u32)>, Vec<String>);

/// How many orders wait for their restock together.
const RESTOCKING: usize = 12;

async fn restocks_of_one_sku_sent_together_and_twice_over_put_each_order_s_unit_back_once_and_queue_one_push(
    store: Store,
) {
    let shop_id = open_shop(&store, "shop_restocks").await;
    store
        .set_stock(&shop_id, "TEA-001", 100)
        .await
        .expect("the stock is set");
    let pushes_at_once = rescind_store::SettingsPatch {
        inventory_push_interval_s: Some(0),
        ..Default::default()
    };
    store
        .update_settings(&shop_id, pushes_at_once)
        .await
        .expect("the settings change");
    let listing = rescind_store::Listing {
        channel_id: format!("ch_{shop_id}"),
        external_id: "ext-tea".to_owned(),
        location_id: None,
    };
    store
        .set_listings(&shop_id, "TEA-001", &[listing])
        .await
        .expect("TEA-001 is listed");
    let mut waiting = Vec::new();
    for _ in 0..RESTOCKING {
        waiting.push(an_order_waiting_for_its_restock(&store, &shop_id).await);
    }
    assert_eq!(
        available(&store, &shop_id).await,
        100 - RESTOCKING as i64,
        "I1: one unit out per order"
    );

    // Every order's restock twice over, all at once: the group writer takes them in a few groups,
    // several restocks of TEA-001 in each, an order's two often in the same one. The one that comes
    // second finds the step done and records a note of what it found.
    let mut restocks = Vec::new();
    for order_id in waiting.iter().chain(waiting.iter()) {
        let (store, shop_id, order_id) = (store.clone(), shop_id.clone(), order_id.clone());
        restocks.push(tokio::spawn(async move {
            let found = Arc::new(Mutex::new(None));
            let seen = found.clone();
            store
                .restock(&shop_id, &order_id, move |order, report| {
                    *seen.lock().expect("not poisoned") = Some((report.restocked.clone(), report.already.clone()));
                    if !matches!(pending_work(order), Some(PendingWork::Restock)) {
                        let line = HistoryEntry::new(now(), "note", &Actor::System, "the restock was done");
                        return Ok(OrderChange::new(order.clone(), vec![line], Vec::new()));
                    }
                    record_restock(order, report)
                })
                .await
                .map_err(|error| format!("{error:?}"))
                .expect("the restock is recorded");
            let found = found.lock().expect("not poisoned").take().expect("the restock decided");
            (order_id, found)
        }));
    }
    let mut found_by_order: std::collections::HashMap<String, Vec<Found>> = std::collections::HashMap::new();
    for restock in restocks {
        let (order_id, found) = restock.await.expect("the restock ran");
        found_by_order.entry(order_id).or_default().push(found);
    }
    assert_eq!(found_by_order.len(), RESTOCKING);
    for (order_id, mut found) in found_by_order {
        found.sort();
        assert_eq!(
            found,
            [
                (Vec::new(), vec!["TEA-001".to_owned()]),
                (vec![("TEA-001".to_owned(), 1)], Vec::new())
            ],
            "I2: one of order {order_id}'s restocks put its unit back, the other found it back already"
        );
    }
    assert_eq!(
        available(&store, &shop_id).await,
        100,
        "I2: every unit back once, none twice"
    );
    for order_id in &waiting {
        let order = order_of(&store, &shop_id, order_id).await;
        assert!(
            pending_work(&order).is_none(),
            "nothing is left: {:?}",
            order.cancellation
        );
    }
    let pushes = store
        .claim_stock_pushes("pusher", at(60_000))
        .await
        .expect("claims run");
    let items: Vec<(&str, i64)> = pushes
        .iter()
        .flat_map(|batch| batch.items.iter().map(|item| (item.sku.as_str(), item.available)))
        .collect();
    assert_eq!(
        items,
        [("TEA-001", 100)],
        "I5: one push, of the level after every restock"
    );
    store.close().await;
}

/// What a decision about the order sees of its shop's setup: whether a cancel goes to its channel
/// (H4) and the shop's channels by id. Nothing is written (the decision is refused with it).
async fn setup_seen(store: &Store, shop_id: &str, order_id: &str) -> (bool, Vec<String>) {
    let seen = store
        .change_order_grouped(shop_id, order_id, |order, setup| {
            Err::<OrderChange, _>((
                setup.channel_cancel_sync(&order),
                setup
                    .channels
                    .iter()
                    .map(|channel| channel.id.clone())
                    .collect::<Vec<_>>(),
            ))
        })
        .await;
    match seen {
        Err(ChangeError::Refused(seen)) => seen,
        other => panic!("the decision ran and refused: {other:?}"),
    }
}

/// The group writer keeps each shop's setup between groups (channels and warehouses are never changed
/// once created); a channel or a warehouse created after it read the setup is read as soon as an order
/// names it, so the decision about that order follows the new channel's cancel setting (H4) and the new
/// warehouse's settings (C4).
async fn a_channel_created_after_the_writer_read_the_shop_s_setup_is_in_the_next_decision_about_its_orders(
    store: Store,
) {
    let shop_id = open_shop(&store, "shop_setups").await;
    let first = import_an_order(&store, &shop_id).await;
    let own_store = format!("ch_{shop_id}");
    assert_eq!(
        setup_seen(&store, &shop_id, &first).await,
        (true, vec![own_store.clone()])
    );

    let quiet = rescind_store::Channel {
        id: "ch_shop_setups_quiet".into(),
        shop_id: shop_id.clone(),
        kind: rescind_domain::ChannelKind::OwnStore,
        name: "A store that hears of no cancel".into(),
        base_url: None,
        credentials: None,
        cancel_sync: false,
        created_at: now(),
    };
    store.create_channel(&quiet).await.expect("the channel is created");
    let second = common::try_import(&store, &shop_id, &quiet.id, None, common::new_order(&quiet.id))
        .await
        .expect("the order is imported");

    let both = vec![own_store, quiet.id.clone()];
    assert_eq!(setup_seen(&store, &shop_id, &second.id).await, (false, both.clone()));
    assert_eq!(setup_seen(&store, &shop_id, &first).await, (true, both));

    // The same for a warehouse: its settings decide whether a picking order may still be cancelled (C4).
    let settings = rescind_domain::WarehouseSettings {
        cancel_after_confirmation: true,
        sync_modifications: false,
        modify_after_confirmation: false,
    };
    let warehouse = rescind_store::Warehouse {
        id: "wh_shop_setups".into(),
        shop_id: shop_id.clone(),
        kind: rescind_domain::WarehouseKind::OpenLogi,
        name: "Warehouse".into(),
        base_url: "http://127.0.0.1:9".into(),
        credentials: None,
        settings,
        rate_limit: 10,
        rate_limit_window_ms: 1_000,
        created_at: now(),
    };
    store
        .create_warehouse(&warehouse)
        .await
        .expect("the warehouse is created");
    let mut shipped = common::new_order(&format!("ch_{shop_id}"));
    shipped.warehouse_id = Some(warehouse.id.clone());
    let third = common::import(&store, &shop_id, shipped).await;
    let seen = store
        .change_order_grouped(&shop_id, &third.id, |order, setup| {
            Err::<OrderChange, _>(setup.warehouse_settings(&order))
        })
        .await;
    assert!(
        matches!(seen, Err(ChangeError::Refused(Some(seen))) if seen == settings),
        "{seen:?}"
    );
    store.close().await;
}

/// A fresh PostgreSQL schema (none without `RESCIND_TEST_DATABASE_URL`) and store with the shop
/// `shop_id`, ten TEA-001 in stock and an order of it whose cancellation has only its restock left.
async fn postgres_order_waiting_for_its_restock(shop_id: &str) -> Option<(PostgresSchema, Store, String, String)> {
    let schema = PostgresSchema::create().await?;
    let store = Store::open(&schema.url).await.expect("the store opens");
    let (shop_id, order_id) = a_stocked_shop_with_an_order_waiting_for_its_restock(&store, shop_id).await;
    Some((schema, store, shop_id, order_id))
}

/// Another writer's transaction (another process's, say) holding the order — its row changed — with
/// `also` (a statement naming the order as `$1`) done under it; committed by the caller.
async fn another_writer_holding(url: &str, order_id: &str, also: &str) -> sqlx::PgConnection {
    let mut other = sqlx::PgConnection::connect(url).await.expect("connected");
    sqlx::query("BEGIN").execute(&mut other).await.expect("begun");
    for statement in ["UPDATE orders SET updated_at = updated_at + 1 WHERE id = $1", also] {
        sqlx::query(statement)
            .bind(order_id)
            .execute(&mut other)
            .await
            .expect("written under the order's lock");
    }
    other
}

/// Commits `other` once the group writer has had the time to start waiting for its lock.
async fn commit_after_the_group_waits(mut other: sqlx::PgConnection) {
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    sqlx::query("COMMIT").execute(&mut other).await.expect("committed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_waited_for_an_order_s_lock_decides_on_the_cancellation_written_under_it_on_postgres() {
    let Some((schema, store, shop_id, order_id)) = postgres_order_waiting_for_its_restock("shop_waited").await else {
        return;
    };
    // Another writer (another process, say) holds the order while it changes it and its cancellation.
    let other = another_writer_holding(
        &schema.url,
        &order_id,
        "UPDATE cancellations SET staff_note = 'written while the group waited' WHERE order_id = $1",
    )
    .await;
    // The group writer's next group reads the order meanwhile, and waits for its lock.
    let seen = tokio::spawn({
        let (store, shop_id, order_id) = (store.clone(), shop_id.clone(), order_id.clone());
        async move {
            store
                .change_order_grouped(&shop_id, &order_id, |order, _setup| {
                    Err::<OrderChange, _>(order.cancellation.as_ref().and_then(|c| c.staff_note.clone()))
                })
                .await
        }
    });
    commit_after_the_group_waits(other).await;
    let seen = seen.await.expect("the change ran");
    // Its statement began before that commit: what it joined to the order then is not what it decides on.
    assert!(
        matches!(&seen, Err(ChangeError::Refused(Some(note))) if note == "written while the group waited"),
        "{seen:?}"
    );
    store.close().await;
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restock_that_waited_for_its_order_s_lock_sees_the_proof_written_under_it_and_puts_nothing_back_on_postgres()
{
    let Some((schema, store, shop_id, order_id)) = postgres_order_waiting_for_its_restock("shop_proof_waited").await
    else {
        return;
    };
    assert_eq!(
        available(&store, &shop_id).await,
        9,
        "one TEA-001 held back by the order"
    );
    // Another writer (another process's restock, say) holds the order while its proof goes in.
    let other = another_writer_holding(
        &schema.url,
        &order_id,
        "INSERT INTO restocks (order_id, cancellation_id, sku, quantity, at) \
         SELECT id, cancellation_id, 'TEA-001', 1, 0 FROM orders WHERE id = $1",
    )
    .await;
    // The group writer's restock of the order reads it meanwhile (its levels and proofs with the
    // order's load), and waits for the lock.
    let restocked = tokio::spawn({
        let (store, shop_id, order_id) = (store.clone(), shop_id.clone(), order_id.clone());
        async move { store.restock(&shop_id, &order_id, record_restock).await }
    });
    commit_after_the_group_waits(other).await;
    restocked
        .await
        .expect("the restock ran")
        .map_err(|error| format!("{error:?}"))
        .expect("the restock is recorded");
    // I2: the proof committed while it waited counts — the unit is not put back a second time.
    assert_eq!(available(&store, &shop_id).await, 9);
    store.close().await;
    schema.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_s_outcome_after_the_restock_ran_waits_for_no_lock_on_the_stock_on_postgres() {
    let Some((schema, store, shop_id, order_id)) = postgres_order_waiting_for_its_restock("shop_locks").await else {
        return;
    };
    store
        .restock(&shop_id, &order_id, record_restock)
        .await
        .map_err(|error| format!("{error:?}"))
        .expect("the restock is recorded");
    // Another transaction holds TEA-001's level (an import deducting it, say).
    let mut holder = sqlx::PgConnection::connect(&schema.url).await.expect("connected");
    sqlx::query("BEGIN").execute(&mut holder).await.expect("begun");
    sqlx::query("SELECT 1 FROM inventory WHERE shop_id = $1 AND sku = 'TEA-001' FOR UPDATE")
        .bind(&shop_id)
        .execute(&mut holder)
        .await
        .expect("locked");
    // A step's outcome with a restock to run after it when due: its cancellation's restock has run, so
    // its group has no level to read or lock.
    let recorded = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        record_then_restock(&store, &shop_id, &order_id, "note", now()),
    )
    .await;
    sqlx::query("ROLLBACK").execute(&mut holder).await.expect("released");
    assert!(recorded.is_ok(), "the change waited for the stock's lock");
    assert_eq!(available(&store, &shop_id).await, 10, "I2: the unit went back once");
    store.close().await;
    schema.drop().await;
}

/// Notes one change per order of `order_ids` at once through the group writer (several groups, each
/// waiting while the one before is written); answers how many were written.
async fn note_all_at_once(store: &Store, shop_id: &str, order_ids: &[String], note: &str) -> usize {
    let mut changes = Vec::new();
    for order_id in order_ids {
        let (store, shop_id, order_id, note) = (store.clone(), shop_id.to_owned(), order_id.clone(), note.to_owned());
        changes.push(tokio::spawn(async move {
            store
                .change_order_grouped(&shop_id, &order_id, move |order, _setup| {
                    let line = HistoryEntry::new(now(), "note", &Actor::System, note);
                    Ok::<_, ()>(OrderChange::new(order.clone(), vec![line], Vec::new()))
                })
                .await
        }));
    }
    let mut written = 0;
    for change in changes {
        if change.await.expect("the change ran").is_ok() {
            written += 1;
        }
    }
    written
}

/// A refund of ¥1 with the id `id`, written by a change of the order.
async fn refund_with_id(
    store: &Store,
    shop_id: &str,
    order_id: &str,
    id: &str,
) -> Result<OrderChange, ChangeError<()>> {
    let id = id.to_owned();
    store
        .change_order_grouped(shop_id, order_id, move |order, _setup| {
            let refund = rescind_domain::Refund {
                id,
                amount: rescind_domain::Money::parse_stored("1").expect("an amount"),
                method: RefundMethod::StoreCredit,
                note: None,
                cancellation_id: None,
                actor: "test".into(),
                created_at: now(),
            };
            let mut changed = OrderChange::new(order.clone(), Vec::new(), Vec::new());
            changed.order.refunds.push(refund.clone());
            changed.new_refunds.push(refund);
            Ok::<_, ()>(changed)
        })
        .await
}

/// The store's sessions that sit in a transaction doing nothing.
/// A store on a PostgreSQL schema of its own whose sessions carry an application name of their own,
/// with a shop and [`ORDERS`] of its orders.
struct NamedOnPostgres {
    schema: PostgresSchema,
    store: Store,
    application: String,
    admin_url: String,
    shop_id: String,
    order_ids: Vec<String>,
}

impl NamedOnPostgres {
    /// The store's sessions on the server whose state is like `state` (`%` for any).
    async fn sessions(&self, state: &str) -> i64 {
        let mut admin = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .expect("PostgreSQL is reachable");
        let count = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND coalesce(state, '') LIKE $2",
        )
        .bind(&self.application)
        .bind(state)
        .fetch_one(&mut admin)
        .await
        .expect("the sessions are read");
        let _ = admin.close().await;
        count
    }
}

/// [`NamedOnPostgres`]; `None` when no PostgreSQL is set.
async fn named_store_on_postgres(prefix: &str, shop_id: &str) -> Option<NamedOnPostgres> {
    let schema = PostgresSchema::create().await?;
    let application = format!("{prefix}_{:08x}", rand::random::<u32>());
    let url = format!("{}&application_name={application}", schema.url);
    let store = Store::open(&url).await.expect("the store opens");
    let shop_id = open_shop(&store, shop_id).await;
    let mut order_ids = Vec::new();
    for _ in 0..ORDERS {
        order_ids.push(import_an_order(&store, &shop_id).await);
    }
    let admin_url = std::env::var("RESCIND_TEST_DATABASE_URL").expect("set when the schema was made");
    Some(NamedOnPostgres {
        schema,
        store,
        application,
        admin_url,
        shop_id,
        order_ids,
    })
}

/// On PostgreSQL a group that waits while another is written gets its transaction begun with that
/// one's commit (`COMMIT; BEGIN`). Every change is kept; a group whose write fails (a refund's id
/// taken twice) is rolled back and harms no later group; and once the changes stop, no session of
/// the store sits in a transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_begun_with_the_last_one_s_commit_keep_every_change_and_leave_no_transaction_open_on_postgres() {
    let Some(on) = named_store_on_postgres("rescind_group_test", "shop_chained").await else {
        return;
    };
    let (store, shop_id, order_ids) = (&on.store, on.shop_id.as_str(), &on.order_ids);

    assert_eq!(note_all_at_once(store, shop_id, order_ids, "first").await, ORDERS);
    refund_with_id(store, shop_id, &order_ids[0], "rf_taken")
        .await
        .expect("the first refund of that id is written");
    assert!(
        matches!(
            refund_with_id(store, shop_id, &order_ids[1], "rf_taken").await,
            Err(ChangeError::Store(_))
        ),
        "a second refund of the same id fails its group"
    );
    assert_eq!(note_all_at_once(store, shop_id, order_ids, "second").await, ORDERS);
    assert_eq!(
        on.sessions("idle in transaction%").await,
        0,
        "no session sits in a transaction"
    );

    for order_id in order_ids {
        assert_eq!(
            notes_of(store, shop_id, order_id).await,
            ["first", "second"],
            "both notes of {order_id} are kept"
        );
    }
    let second = order_of(store, shop_id, &order_ids[1]).await;
    assert!(second.refunds.is_empty(), "the failed group's refund is not kept");
    store.close().await;
    on.schema.drop().await;
}

/// PostgreSQL's group writer runs on a thread of its own with connections of its own: its changes
/// are answered to callers on the store's runtime, and once the store is closed none of its
/// sessions is left on the server (a caller may drop the schema or database right after).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_store_after_grouped_changes_leaves_none_of_its_sessions_on_postgres() {
    let Some(on) = named_store_on_postgres("rescind_close_test", "shop_closing").await else {
        return;
    };
    let (store, shop_id, order_ids) = (&on.store, on.shop_id.as_str(), &on.order_ids);

    assert_eq!(note_all_at_once(store, shop_id, order_ids, "kept").await, ORDERS);
    assert!(
        on.sessions("%").await >= 2,
        "the writer and the shared pool each hold a session while the store is open"
    );
    store.close().await;
    // A closed connection's server process leaves `pg_stat_activity` a moment after the client
    // hung up (seen once under a full test run's load): a session that outlived the close stays.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while on.sessions("%").await > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(on.sessions("%").await, 0, "a session of the store outlived its close");

    let reopened = Store::open(&on.schema.url).await.expect("the store opens again");
    for order_id in order_ids {
        assert_eq!(
            notes_of(&reopened, shop_id, order_id).await,
            ["kept"],
            "the note of {order_id} is kept"
        );
    }
    reopened.close().await;
    on.schema.drop().await;
}
