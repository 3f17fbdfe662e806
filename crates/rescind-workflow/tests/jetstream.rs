//! The NATS client against the local server (NATS with JetStream on 127.0.0.1:4222, as CI has):
//! the stream drops a message whose `Nats-Msg-Id` it has seen, and a consumer reads each once.

use rescind_workflow::nats::Connection;

const NATS_URL: &str = "nats://127.0.0.1:4222";

#[tokio::test]
async fn the_stream_keeps_one_message_per_id_and_a_consumer_reads_each_once() {
    let mut connection = Connection::connect(NATS_URL)
        .await
        .expect("the local NATS server answers");
    let name = format!("RESCIND_TEST_{:08X}", rand::random::<u32>());
    let prefix = name.to_ascii_lowercase();
    connection
        .ensure_stream(&name, &prefix)
        .await
        .expect("the stream is created");
    connection
        .ensure_stream(&name, &prefix)
        .await
        .expect("a second ensure finds it");
    let subject = format!("{prefix}.shop_1.order.cancelled");
    assert!(!connection.publish(&subject, "evt_1", b"{\"n\":1}").await.unwrap());
    assert!(!connection.publish(&subject, "evt_2", b"{\"n\":2}").await.unwrap());
    assert!(
        connection.publish(&subject, "evt_1", b"{\"n\":1}").await.unwrap(),
        "a repeat is recognised"
    );
    let read = connection.read_stream(&name).await.expect("the stream is read");
    let ids: Vec<&str> = read.iter().map(|(_, id, _)| id.as_str()).collect();
    assert_eq!(ids, ["evt_1", "evt_2"]);
    assert!(read.iter().all(|(read_subject, ..)| *read_subject == subject));
    assert_eq!(read[1].2, b"{\"n\":2}");
    let deleted = connection
        .request(&format!("$JS.API.STREAM.DELETE.{name}"), &[], b"")
        .await
        .unwrap();
    assert_eq!(deleted["success"], true, "{deleted}");
}
