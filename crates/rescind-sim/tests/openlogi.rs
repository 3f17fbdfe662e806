//! The OpenLogi connector against the OpenLogi simulator: outbound requests by status, the fee of a
//! cancel request, lost answers found again, and pacing under the rate limit.

use rescind_connectors::warehouses::openlogi::{NewShipment, OpenLogi, Recipient};
use rescind_connectors::CallError;
use serde_json::{json, Value};
use std::time::Duration;

async fn start() -> (String, reqwest::Client) {
    let (address, _) = rescind_sim::spawn().await;
    (format!("http://{address}"), reqwest::Client::new())
}

fn connector(sim: &str, token: &str, limit: u32, window: Duration) -> OpenLogi {
    let http = rescind_connectors::http_client(Duration::from_millis(500));
    let credentials = json!({"access_token": token, "account_id": "TS001"}).to_string();
    OpenLogi::new(http, &format!("{sim}/api"), Some(&credentials), limit, window).unwrap()
}

fn shipment(identifier: &str) -> NewShipment {
    NewShipment {
        identifier: identifier.to_owned(),
        order_no: format!("#{identifier}"),
        recipient: Recipient {
            name: "山田 太郎".to_owned(),
            postcode: "150-0001".to_owned(),
            prefecture: "東京都".to_owned(),
            address1: "渋谷区神宮前1-2-3".to_owned(),
            address2: None,
            phone: Some("0312345678".to_owned()),
        },
        items: vec![("TEA-001".to_owned(), 2)],
    }
}

async fn ledger(sim: &str, client: &reqwest::Client) -> Value {
    client
        .get(format!("{sim}/_sim/ledger"))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["openlogi"]
        .clone()
}

async fn move_to(sim: &str, client: &reqwest::Client, id: &str, status: &str) {
    client
        .post(format!("{sim}/_sim/openlogi/shipments/{id}/status"))
        .json(&json!({"status": status}))
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn an_outbound_request_is_deleted_before_confirmation_and_only_then() {
    let (sim, client) = start().await;
    let openlogi = connector(&sim, "token-a", 600, Duration::from_secs(60));
    let created = openlogi.create(&shipment("ord_1"), "key-1").await.unwrap();
    assert_eq!(created.status, "waiting");
    assert_eq!(
        openlogi.find_by_identifier("ord_1").await.unwrap().unwrap().id,
        created.id
    );
    openlogi.delete(&created.id, "key-2").await.unwrap();
    assert!(openlogi.find_by_identifier("ord_1").await.unwrap().is_none());

    let picking = openlogi.create(&shipment("ord_2"), "key-3").await.unwrap();
    move_to(&sim, &client, &picking.id, "picking").await;
    let refused = openlogi.delete(&picking.id, "key-4").await.unwrap_err();
    assert!(
        matches!(&refused, CallError::Refused { message } if message.contains("キャンセルできませんでした")),
        "{refused:?}"
    );
    let ledger = ledger(&sim, &client).await;
    assert_eq!(ledger["deletes"], json!([created.id]));
}

#[tokio::test]
async fn a_cancel_request_is_accepted_only_while_the_warehouse_works_and_costs_a_fee() {
    let (sim, client) = start().await;
    let openlogi = connector(&sim, "token-b", 600, Duration::from_secs(60));
    let waiting = openlogi.create(&shipment("ord_3"), "key-1").await.unwrap();
    assert!(
        matches!(
            openlogi.request_cancel(&waiting.id, "key-2").await,
            Err(CallError::Refused { .. })
        ),
        "not before confirmation"
    );
    for status in ["picking", "picked", "packed"] {
        let id = openlogi
            .create(&shipment(&format!("ord_{status}")), &format!("key-{status}"))
            .await
            .unwrap()
            .id;
        move_to(&sim, &client, &id, status).await;
        let requested = openlogi.request_cancel(&id, &format!("cancel-{status}")).await.unwrap();
        assert_eq!(
            (requested.status.as_str(), requested.fee),
            ("cancel_request", Some(300)),
            "{status}"
        );
    }
    let shipped = openlogi.create(&shipment("ord_4"), "key-5").await.unwrap();
    move_to(&sim, &client, &shipped.id, "shipped").await;
    assert!(matches!(
        openlogi.request_cancel(&shipped.id, "key-6").await,
        Err(CallError::Refused { .. })
    ));
    assert_eq!(
        ledger(&sim, &client).await["cancel_requests"].as_array().unwrap().len(),
        3
    );
}

#[tokio::test]
async fn recipient_changes_never_carry_items() {
    let (sim, client) = start().await;
    let openlogi = connector(&sim, "token-c", 600, Duration::from_secs(60));
    let created = openlogi.create(&shipment("ord_5"), "key-1").await.unwrap();
    let mut recipient = shipment("ord_5").recipient;
    recipient.address1 = "渋谷区神宮前9-9-9".to_owned();
    openlogi
        .update_recipient(&created.id, &recipient, "key-2")
        .await
        .unwrap();
    move_to(&sim, &client, &created.id, "picking").await;
    let requested = openlogi
        .request_modification(&created.id, &recipient, "key-3")
        .await
        .unwrap();
    assert_eq!(
        (requested.status.as_str(), requested.fee),
        ("modify_request", Some(300))
    );
    let ledger = ledger(&sim, &client).await;
    assert_eq!(ledger["updates"][0]["fields"], json!(["recipient"]));
    assert_eq!(ledger["modifications"][0]["fields"], json!(["recipient"]));
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_is_found_by_its_identifier_not_made_twice() {
    let (sim, client) = start().await;
    client
        .put(format!("{sim}/_sim/faults/openlogi.create"))
        .json(&json!({"timeout_after_effect_rate": 1.0, "hang_ms": 2000}))
        .send()
        .await
        .unwrap();
    let openlogi = connector(&sim, "token-d", 600, Duration::from_secs(60));
    let created = openlogi.create(&shipment("ord_6"), "key-1").await.unwrap();
    assert_eq!(created.identifier.as_deref(), Some("ord_6"));
    assert_eq!(ledger(&sim, &client).await["creates"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_requests_under_a_rate_limit_all_arrive_once_none_dropped() {
    let (sim, client) = start().await;
    // A short simulated window: 20 requests per 400 ms instead of 60 a minute.
    client
        .put(format!("{sim}/_sim/openlogi/config"))
        .json(&json!({"rate_limit": 20, "window_ms": 400}))
        .send()
        .await
        .unwrap();
    // The connector paces a little faster than allowed, so the simulator's 429s are met too.
    let openlogi = connector(&sim, "token-e", 25, Duration::from_millis(400));
    let creates: Vec<_> = (0..200)
        .map(|index| {
            let openlogi = openlogi.clone();
            tokio::spawn(async move {
                openlogi
                    .create(&shipment(&format!("burst_{index}")), &format!("burst-{index}"))
                    .await
            })
        })
        .collect();
    for create in creates {
        create.await.unwrap().expect("every request gets through");
    }
    let ledger = ledger(&sim, &client).await;
    assert_eq!(
        ledger["creates"].as_array().unwrap().len(),
        200,
        "none lost, none twice"
    );
    assert_eq!(ledger["shipments"].as_array().unwrap().len(), 200);
    assert!(
        ledger["throttled"].as_u64().unwrap() > 0,
        "the limit was really hit: {}",
        ledger["throttled"]
    );
}
