//! The store keeps the channels and payment providers it has read (`Known`), so the workflow's steps
//! do not read the same row for every call. That is right only while those rows never change once
//! created: these tests read the store's own SQL and fail when a statement that updates or deletes
//! one appears — that change must then forget the row it changes.

mod common;

use common::open_shop;
use rescind_store::{now, PaymentProvider, PaymentProviderKind, Store};

const SOURCES: [(&str, &str); 3] = [
    ("backend.rs", include_str!("../src/backend.rs")),
    ("lib.rs", include_str!("../src/lib.rs")),
    ("outbox.rs", include_str!("../src/outbox.rs")),
];

#[test]
fn no_statement_of_the_store_updates_or_deletes_a_channel_or_a_payment_provider() {
    for (file, source) in SOURCES {
        let source = source.split_whitespace().collect::<Vec<_>>().join(" ").to_uppercase();
        for table in ["CHANNELS", "PAYMENT_PROVIDERS"] {
            for statement in [format!("UPDATE {table} "), format!("DELETE FROM {table} ")] {
                assert!(
                    !source.contains(&statement),
                    "{file} has `{statement}…`: the rows `Known` keeps would go stale"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_and_a_payment_provider_read_again_are_the_rows_created() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}", folder.path().join("rescind.db").display());
    let store = Store::open(&url).await.expect("the store opens");
    let shop_id = open_shop(&store, "shop_known").await;
    let channel_id = format!("ch_{shop_id}");
    let provider = PaymentProvider {
        id: "pp_known".into(),
        shop_id: shop_id.clone(),
        kind: PaymentProviderKind::Stripe,
        name: "Stripe".into(),
        base_url: "http://127.0.0.1:9".into(),
        credentials: Some("sk_test_known".into()),
        created_at: now(),
    };
    store
        .create_payment_provider(&provider)
        .await
        .expect("the provider is created");
    for _ in 0..2 {
        let channel = store
            .channel(&shop_id, &channel_id)
            .await
            .expect("read")
            .expect("the channel");
        assert_eq!(channel.id, channel_id);
        assert_eq!(channel.name, "Own store");
        assert_eq!(
            store.payment_provider(&shop_id, "pp_known").await.expect("read"),
            Some(provider.clone()),
            "the row as it was created"
        );
    }
    assert_eq!(
        store.channel("another_shop", &channel_id).await.expect("read"),
        None,
        "B6: kept by shop, never handed to another"
    );
    assert_eq!(
        store.payment_provider(&shop_id, "pp_missing").await.expect("read"),
        None
    );
    store.close().await;
}
