//! Events (B4): written with the change that makes them, delivered to webhooks signed and in order per
//! order, retried after failures with a delivery log and replays, and published to NATS JetStream once.

use crate::helpers::{spawn_app_with, Backend, TestApp, TestShop};
use crate::on_both_backends;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A webhook receiver on port 0: keeps what it accepted, and refuses with 503 while told to.
#[derive(Clone, Default)]
struct Receiver {
    state: Arc<Mutex<ReceiverState>>,
}

#[derive(Default)]
struct ReceiverState {
    /// Each accepted delivery: its headers and body.
    accepted: Vec<(HeaderMap, Value)>,
    /// Requests answered 503, by event id.
    refused: Vec<String>,
    /// How many more requests to refuse; `u32::MAX` refuses all.
    refuse_next: u32,
    /// Refuse only this order's events.
    refuse_order: Option<String>,
}

impl Receiver {
    async fn start() -> (String, Receiver) {
        let receiver = Receiver::default();
        let app = axum::Router::new()
            .route("/hooks", post(receive))
            .with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, receiver)
    }

    fn refuse(&self, count: u32, order: Option<&str>) {
        let mut state = self.state.lock().unwrap();
        state.refuse_next = count;
        state.refuse_order = order.map(str::to_owned);
    }

    fn accepted(&self) -> Vec<(HeaderMap, Value)> {
        self.state.lock().unwrap().accepted.clone()
    }

    fn refused(&self) -> Vec<String> {
        self.state.lock().unwrap().refused.clone()
    }

    /// The accepted events' types for one order, in the order they arrived.
    fn types_of(&self, order_id: &str) -> Vec<String> {
        self.accepted()
            .iter()
            .filter(|(_, event)| event["data"]["order_id"] == order_id)
            .map(|(_, event)| event["type"].as_str().unwrap().to_owned())
            .collect()
    }

    async fn wait_for(&self, what: &str, done: impl Fn(&Receiver) -> bool) {
        for _ in 0..200 {
            if done(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the receiver never got {what}: {:?}",
            self.accepted()
                .iter()
                .map(|(_, event)| event.clone())
                .collect::<Vec<_>>()
        );
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let event: Value = serde_json::from_slice(&body).expect("a delivery is JSON");
    let mut state = receiver.state.lock().unwrap();
    let targeted = state
        .refuse_order
        .as_ref()
        .is_none_or(|order| event["data"]["order_id"] == order.as_str());
    if state.refuse_next > 0 && targeted {
        state.refuse_next = state
            .refuse_next
            .saturating_sub(if state.refuse_next == u32::MAX { 0 } else { 1 });
        state.refused.push(event["id"].as_str().unwrap_or_default().to_owned());
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    // Keep the exact body for the signature check.
    let mut headers = headers;
    headers.insert("x-test-raw-body", String::from_utf8_lossy(&body).parse().unwrap());
    state.accepted.push((headers, event));
    StatusCode::OK
}

async fn webhook(app: &TestApp, shop: &TestShop, url: &str, events: &[&str]) -> Value {
    let created = app
        .post("/api/v1/webhooks", &shop.token, json!({"url": url, "events": events}))
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert!(created.body["secret"].as_str().unwrap().starts_with("whsec_"));
    created.body
}

/// The webhook's newest delivery once `ready` holds for it (or as it is after five seconds).
async fn newest_delivery(app: &TestApp, shop: &TestShop, webhook_id: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let path = format!("/api/v1/webhooks/{webhook_id}/deliveries");
    let mut newest = Value::Null;
    for _ in 0..100 {
        newest = app.get(&path, &shop.token).await.body["items"][0].clone();
        if ready(&newest) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    newest
}

const EVERYTHING: &[&str] = &[
    "order.imported",
    "cancellation.created",
    "order.cancelled",
    "cancellation.completed",
    "refund.created",
    "stock.restocked",
];

async fn a_receiver_can_verify_every_deliverys_signature_and_sees_the_orders_story_in_order(app: TestApp) {
    let shop = app.shop().await;
    let (url, receiver) = Receiver::start().await;
    let hook = webhook(&app, &shop, &url, EVERYTHING).await;
    let secret = hook["secret"].as_str().unwrap().to_owned();
    let listed = app
        .get(
            &format!("/api/v1/webhooks/{}", hook["id"].as_str().unwrap()),
            &shop.token,
        )
        .await;
    assert!(
        listed.body.get("secret").is_none(),
        "the secret is shown once: {}",
        listed.text
    );
    app.set_stock(&shop, "TEA-001", 5).await;
    app.set_stock(&shop, "CUP-002", 5).await;
    let order = app.order(&shop, json!({"deduct_inventory": true})).await;
    let order_id = order["id"].as_str().unwrap();
    let cancelled = app
        .cancel(&shop, order_id, json!({"refund_method": "store_credit"}))
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    let expected = [
        "order.imported",
        "cancellation.created",
        "refund.created",
        "stock.restocked",
        "order.cancelled",
        "cancellation.completed",
    ];
    receiver
        .wait_for("the whole story", |receiver| {
            receiver.types_of(order_id).len() >= expected.len()
        })
        .await;
    let mut types = receiver.types_of(order_id);
    let mut sorted = types.clone();
    sorted.sort();
    let mut wanted: Vec<String> = expected.iter().map(|kind| (*kind).to_owned()).collect();
    wanted.sort();
    assert_eq!(sorted, wanted, "each event once");
    assert_eq!(types.remove(0), "order.imported");
    assert_eq!(types.last().map(String::as_str), Some("cancellation.completed"));
    let mut last_sequence = 0;
    for (headers, event) in receiver.accepted() {
        let signature = headers["x-rescind-signature"].to_str().unwrap();
        let (timestamp, mac) = signature
            .strip_prefix("t=")
            .and_then(|rest| rest.split_once(",v1="))
            .expect("t=…,v1=…");
        let body = String::from_utf8(headers["x-test-raw-body"].as_bytes().to_vec()).unwrap();
        let expected_mac: String =
            rescind_http::auth::hmac_sha256(secret.as_bytes(), format!("{timestamp}.{body}").as_bytes())
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect();
        assert!(
            rescind_http::auth::equal_in_constant_time(mac.as_bytes(), expected_mac.as_bytes()),
            "the signature verifies"
        );
        let age = rescind_store::now().unix_micros() / 1_000_000 - timestamp.parse::<i64>().unwrap();
        assert!(
            (0..300).contains(&age),
            "a fresh timestamp, for replay protection: {age} s"
        );
        assert_eq!(headers["x-rescind-event-id"], event["id"].as_str().unwrap());
        assert_eq!(headers["idempotency-key"], event["id"].as_str().unwrap());
        assert_eq!(event["shop_id"], shop.id.as_str());
        let sequence = event["sequence"].as_i64().unwrap();
        assert!(sequence > last_sequence, "in the order they happened");
        last_sequence = sequence;
    }
    let (_, completed) = receiver.accepted().into_iter().last().unwrap();
    assert_eq!(completed["data"]["order_number"], order["number"]);
    assert_eq!(completed["data"]["order_status"], "cancelled");
}

async fn a_receiver_that_fails_gets_the_event_again_and_the_log_shows_each_attempt(app: TestApp) {
    let shop = app.shop().await;
    let (url, receiver) = Receiver::start().await;
    let hook = webhook(&app, &shop, &url, &["order.imported"]).await;
    receiver.refuse(2, None);
    let order = app.order(&shop, json!({})).await;
    receiver
        .wait_for("the retried event", |receiver| !receiver.accepted().is_empty())
        .await;
    assert_eq!(receiver.refused().len(), 2);
    // The deliverer records the attempt a moment after the receiver has answered it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let log = loop {
        let log = app
            .get(
                &format!("/api/v1/webhooks/{}/deliveries", hook["id"].as_str().unwrap()),
                &shop.token,
            )
            .await;
        if log.body["items"][0]["status"] != "pending" || std::time::Instant::now() >= deadline {
            break log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let delivery = &log.body["items"][0];
    assert_eq!(delivery["status"], "delivered", "{}", log.text);
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["last_status_code"], 200);
    assert_eq!(delivery["order_id"], order["id"]);
    assert_eq!(delivery["event_type"], "order.imported");
    assert_eq!(receiver.accepted().len(), 1, "delivered once it succeeded, not again");
}

async fn an_orders_events_wait_behind_its_failing_one_while_other_orders_go_on(app: TestApp) {
    let shop = app.shop().await;
    let (url, receiver) = Receiver::start().await;
    webhook(&app, &shop, &url, EVERYTHING).await;
    let first = app.order(&shop, json!({})).await;
    let first_id = first["id"].as_str().unwrap().to_owned();
    receiver
        .wait_for("the first import", |receiver| receiver.types_of(&first_id).len() == 1)
        .await;
    // The receiver fails the first order's next events three times; its cancel happens meanwhile.
    receiver.refuse(3, Some(&first_id));
    app.cancel(&shop, &first_id, json!({"refund_method": "store_credit"}))
        .await;
    let second = app.order(&shop, json!({})).await;
    let second_id = second["id"].as_str().unwrap().to_owned();
    receiver
        .wait_for("the other order's import", |receiver| {
            receiver.types_of(&second_id).len() == 1
        })
        .await;
    receiver
        .wait_for("the first order's cancel events", |receiver| {
            receiver.types_of(&first_id).len() == 5
        })
        .await;
    assert_eq!(receiver.refused().len(), 3);
    let sequences: Vec<i64> = receiver
        .accepted()
        .iter()
        .filter(|(_, event)| event["data"]["order_id"] == first_id.as_str())
        .map(|(_, event)| event["sequence"].as_i64().unwrap())
        .collect();
    let mut sorted = sequences.clone();
    sorted.sort();
    assert_eq!(
        sequences, sorted,
        "the order's events arrived in order despite the retries"
    );
    assert!(
        receiver.refused().iter().all(|id| *id == receiver.refused()[0]),
        "only the earliest event was tried while it failed; the later ones waited"
    );
}

async fn a_delivery_that_gave_up_is_sent_again_by_a_replay(app: TestApp) {
    let shop = app.shop().await;
    let (url, receiver) = Receiver::start().await;
    let hook = webhook(&app, &shop, &url, &["order.imported"]).await;
    let hook_id = hook["id"].as_str().unwrap();
    receiver.refuse(u32::MAX, None);
    app.order(&shop, json!({})).await;
    let failed = newest_delivery(&app, &shop, hook_id, |delivery| delivery["status"] == "failed").await;
    assert_eq!(failed["attempts"], 4, "gave up after the last attempt: {failed}");
    assert_eq!(failed["last_status_code"], 503);
    assert!(failed["last_error"].as_str().unwrap().contains("gave up"));
    receiver.refuse(0, None);
    let replayed = app
        .post(
            &format!(
                "/api/v1/webhooks/{hook_id}/deliveries/{}/replay",
                failed["id"].as_str().unwrap()
            ),
            &shop.token,
            json!({}),
        )
        .await;
    assert_eq!(
        (replayed.status, replayed.body["status"].as_str()),
        (200, Some("pending")),
        "{}",
        replayed.text
    );
    receiver
        .wait_for("the replayed event", |receiver| receiver.accepted().len() == 1)
        .await;
    let deleted = app
        .send(
            reqwest::Method::DELETE,
            &format!("/api/v1/webhooks/{hook_id}"),
            Some(&shop.token),
            None,
            None,
        )
        .await;
    assert_eq!((deleted.status, deleted.body["active"].as_bool()), (200, Some(false)));
    app.order(&shop, json!({})).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.accepted().len(), 1, "a deleted webhook gets nothing more");
}

async fn events_are_written_with_their_change_and_a_refusal_writes_none(app: TestApp) {
    let shop = app.shop().await;
    let shipped = app.order(&shop, json!({"fulfillment_status": "shipped"})).await;
    let refused = app.cancel(&shop, shipped["id"].as_str().unwrap(), json!({})).await;
    assert_eq!(refused.code(), "return_required");
    let order = app.order(&shop, json!({})).await;
    app.cancel(
        &shop,
        order["id"].as_str().unwrap(),
        json!({"refund_method": "store_credit"}),
    )
    .await;
    let first = app.get("/api/v1/events?limit=2", &shop.token).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let after = first.body["next_after"].as_i64().unwrap();
    let rest = app.get(&format!("/api/v1/events?after={after}"), &shop.token).await;
    let events: Vec<(String, String)> = first.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest.body["items"].as_array().unwrap())
        .map(|event| {
            (
                event["data"]["order_id"].as_str().unwrap().to_owned(),
                event["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let shipped_events: Vec<&str> = events
        .iter()
        .filter(|(order_id, _)| order_id == shipped["id"].as_str().unwrap())
        .map(|(_, kind)| kind.as_str())
        .collect();
    assert_eq!(
        shipped_events,
        ["order.imported"],
        "the refused cancel announced nothing"
    );
    let cancelled: Vec<&str> = events
        .iter()
        .filter(|(order_id, _)| order_id == order["id"].as_str().unwrap())
        .map(|(_, kind)| kind.as_str())
        .collect();
    assert!(
        cancelled.contains(&"order.cancelled") && cancelled.contains(&"cancellation.completed"),
        "{cancelled:?}"
    );
    let other = app.shop().await;
    let theirs = app.get("/api/v1/events", &other.token).await;
    assert_eq!(theirs.body["items"], json!([]), "another shop sees none of them");
    let bad = app
        .post(
            "/api/v1/webhooks",
            &shop.token,
            json!({"url": "ftp://example.com", "events": ["order.shipped"]}),
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["errors"].as_array().map(Vec::len)),
        (400, Some(2)),
        "{}",
        bad.text
    );
}

async fn old_events_and_finished_deliveries_are_forgotten_but_a_pending_one_is_kept(app: TestApp) {
    let shop = app.shop().await;
    let (url, receiver) = Receiver::start().await;
    let hook = webhook(&app, &shop, &url, &["order.imported"]).await;
    let delivered = app.order(&shop, json!({})).await;
    receiver
        .wait_for("the first import", |receiver| receiver.accepted().len() == 1)
        .await;
    receiver.refuse(u32::MAX, None);
    let waiting = app.order(&shop, json!({})).await;
    let later = rescind_store::now().plus_seconds(rescind_store::OUTBOX_RETENTION_S + 3600);
    assert_eq!(
        app.store.purge_outbox(rescind_store::now()).await.unwrap(),
        0,
        "nothing is old yet"
    );
    let purged = app.store.purge_outbox(later).await.unwrap();
    assert!(purged >= 2, "the delivered delivery and its event: {purged}");
    let events = app.get("/api/v1/events", &shop.token).await;
    let orders: Vec<&str> = events.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["data"]["order_id"].as_str().unwrap())
        .collect();
    assert!(!orders.contains(&delivered["id"].as_str().unwrap()), "{orders:?}");
    assert!(
        orders.contains(&waiting["id"].as_str().unwrap()),
        "a pending delivery keeps its event: {orders:?}"
    );
    let log = app
        .get(
            &format!("/api/v1/webhooks/{}/deliveries", hook["id"].as_str().unwrap()),
            &shop.token,
        )
        .await;
    let kept: Vec<&str> = log.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        kept,
        [waiting["id"].as_str().unwrap()],
        "only the delivery still pending then: {}",
        log.text
    );
}

/// A platform's rescind (the default) sends webhooks to public addresses only: a shop cannot reach the
/// operator's network through it, by an address literal, `localhost` or a name that resolves inside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_webhook_cannot_point_inside_the_operators_network() {
    let app = spawn_app_with(Backend::Sqlite, |mut state| {
        state.settings.webhooks.allow_private_targets = false;
        state
    })
    .await
    .expect("SQLite always runs");
    let shop = app.shop().await;
    for url in [
        "http://127.0.0.1:8080/hooks",
        "http://10.0.0.5/hooks",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hooks",
        "http://localhost:9000/hooks",
    ] {
        let refused = app
            .post(
                "/api/v1/webhooks",
                &shop.token,
                json!({"url": url, "events": ["order.imported"]}),
            )
            .await;
        assert_eq!(refused.status, 400, "{url}: {}", refused.text);
        assert!(refused.text.contains("public addresses only"), "{}", refused.text);
    }
    // A name that resolves to loopback (from /etc/hosts: not `localhost` itself) gets past the check
    // of the URL as written, and is refused when it is resolved.
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    let Some(name) = hosts
        .lines()
        .map(|line| {
            line.split('#')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .collect::<Vec<_>>()
        })
        .filter(|words| words.first().is_some_and(|address| address.starts_with("127.")))
        .flat_map(|words| words.into_iter().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .find(|name| !name.eq_ignore_ascii_case("localhost") && !name.contains("localhost"))
    else {
        eprintln!("no other loopback name in /etc/hosts: the resolver part of this test is skipped");
        return;
    };
    let (url, receiver) = Receiver::start().await;
    let by_name = url.replace("127.0.0.1", &name);
    let hook = webhook(&app, &shop, &by_name, &["order.imported"]).await;
    app.order(&shop, json!({})).await;
    let last = newest_delivery(&app, &shop, hook["id"].as_str().unwrap(), |delivery| {
        delivery["attempts"].as_u64().unwrap_or(0) > 0
    })
    .await;
    assert!(
        last["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("resolves to no public address"),
        "{name}: {last}"
    );
    assert!(receiver.accepted().is_empty(), "nothing reached the loopback receiver");
}

async fn a_page_of_events_after_no_sequence_number_is_refused_with_the_field_named(app: TestApp) {
    let shop = app.shop().await;
    for after in ["-1", "abc", "1.5"] {
        let refused = app.get(&format!("/api/v1/events?after={after}"), &shop.token).await;
        assert_eq!(
            (refused.status, refused.code()),
            (400, "invalid_request"),
            "after={after}: {}",
            refused.text
        );
        assert!(refused.text.contains("after"), "the field is named: {}", refused.text);
    }
    let from_the_start = app.get("/api/v1/events?after=0", &shop.token).await;
    assert_eq!(from_the_start.status, 200, "{}", from_the_start.text);
}

on_both_backends!(
    a_page_of_events_after_no_sequence_number_is_refused_with_the_field_named,
    old_events_and_finished_deliveries_are_forgotten_but_a_pending_one_is_kept,
    a_receiver_can_verify_every_deliverys_signature_and_sees_the_orders_story_in_order,
    a_receiver_that_fails_gets_the_event_again_and_the_log_shows_each_attempt,
    an_orders_events_wait_behind_its_failing_one_while_other_orders_go_on,
    a_delivery_that_gave_up_is_sent_again_by_a_replay,
    events_are_written_with_their_change_and_a_refusal_writes_none,
);

/// Every event reaches the local NATS JetStream server once (`Nats-Msg-Id` is the event id), and a
/// consumer reads each once.
async fn every_event_is_published_to_jetstream_once(backend: Backend) {
    let name = format!("RESCIND_API_{:08X}", rand::random::<u32>());
    let prefix = name.to_ascii_lowercase();
    let stream = rescind_workflow::nats::StreamConfig {
        url: "nats://127.0.0.1:4222".to_owned(),
        stream: name.clone(),
        subject_prefix: prefix.clone(),
        poll: Duration::from_millis(50),
    };
    let Some(app) = spawn_app_with(backend, |state| state.with_event_stream(stream)).await else {
        eprintln!("RESCIND_TEST_DATABASE_URL is not set: the PostgreSQL run of this test is skipped");
        return;
    };
    let shop = app.shop().await;
    for _ in 0..3 {
        let order = app.order(&shop, json!({})).await;
        app.cancel(
            &shop,
            order["id"].as_str().unwrap(),
            json!({"refund_method": "store_credit"}),
        )
        .await;
    }
    let events = app.get("/api/v1/events?limit=500", &shop.token).await;
    let mut expected: Vec<String> = events.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        expected.len() >= 12,
        "imports, cancels and completions: {}",
        events.text
    );
    let mut connection = rescind_workflow::nats::Connection::connect("nats://127.0.0.1:4222")
        .await
        .unwrap();
    let mut read = Vec::new();
    for _ in 0..100 {
        connection.ensure_stream(&name, &prefix).await.unwrap();
        read = connection.read_stream(&name).await.unwrap();
        if read.len() >= expected.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut seen: Vec<String> = read.iter().map(|(_, id, _)| id.clone()).collect();
    assert!(read
        .iter()
        .all(|(subject, ..)| subject.starts_with(&format!("{prefix}.{}.", shop.id))));
    let (_, id, payload) = &read[0];
    let first: Value = serde_json::from_slice(payload).unwrap();
    assert_eq!(first["id"], id.as_str(), "the message id is the event id");
    expected.sort();
    seen.sort();
    assert_eq!(seen, expected, "each event once");
    connection
        .request(&format!("$JS.API.STREAM.DELETE.{name}"), &[], b"")
        .await
        .unwrap();
}

mod jetstream {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_every_event_is_published_to_jetstream_once() {
        super::every_event_is_published_to_jetstream_once(crate::helpers::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_every_event_is_published_to_jetstream_once() {
        super::every_event_is_published_to_jetstream_once(crate::helpers::Backend::Postgres).await;
    }
}
