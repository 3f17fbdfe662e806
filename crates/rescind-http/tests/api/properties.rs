//! Property test over the API: random sequences of cancels, refunds and bulk cancels on random orders.
//! Whatever the sequence, no order is refunded more than it paid, every completed cancellation is
//! fully refunded, and the server never answers with a 5xx.

use crate::helpers::{TestApp, TestShop};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};

crate::on_both_backends!(no_sequence_of_cancels_refunds_and_bulk_cancels_refunds_more_than_was_paid);

/// Orders per case; operations pick among them.
const ORDERS_PER_CASE: usize = 3;

#[derive(Clone, Debug)]
struct OrderSpec {
    price_yen: u32,
    quantity: u32,
    points_yen: u32,
    paid: bool,
    payment_method: &'static str,
    fulfillment_status: &'static str,
}

#[derive(Clone, Debug)]
enum Operation {
    Cancel {
        order: usize,
        refund: bool,
        method: Option<&'static str>,
    },
    Refund {
        order: usize,
        percent: u32,
        method: &'static str,
    },
    Bulk {
        orders: Vec<usize>,
        method: Option<&'static str>,
    },
}

fn order_spec() -> impl Strategy<Value = OrderSpec> {
    (
        0u32..5000,
        1u32..4,
        0u32..500,
        any::<bool>(),
        prop::sample::select(vec!["bank_transfer", "points", "store_credit", "cod", "credit_card"]),
        prop::sample::select(vec!["awaiting_payment", "awaiting_shipment", "in_progress", "shipped"]),
    )
        .prop_map(
            |(price_yen, quantity, points_yen, paid, payment_method, fulfillment_status)| OrderSpec {
                price_yen,
                quantity,
                points_yen,
                paid,
                payment_method,
                fulfillment_status,
            },
        )
}

fn refund_method() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "store_credit",
        "points",
        "bank_transfer",
        "original_payment",
        "channel",
    ])
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        (0..ORDERS_PER_CASE, any::<bool>(), prop::option::of(refund_method()))
            .prop_map(|(order, refund, method)| Operation::Cancel { order, refund, method }),
        (0..ORDERS_PER_CASE, 1u32..130, refund_method())
            .prop_map(|(order, percent, method)| { Operation::Refund { order, percent, method } }),
        (
            prop::collection::vec(0..ORDERS_PER_CASE, 1..4),
            prop::option::of(refund_method())
        )
            .prop_map(|(orders, method)| Operation::Bulk { orders, method }),
    ]
}

fn yen(value: &Value) -> i64 {
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("not a yen amount: {value}"))
}

async fn import(app: &TestApp, shop: &TestShop, spec: &OrderSpec) -> String {
    let total = spec.price_yen * spec.quantity;
    let points = spec.points_yen.min(total);
    let body = crate::helpers::order_body(
        &shop.channel_id,
        json!({
            "line_items": [{"sku": "SKU", "title": "Item", "quantity": spec.quantity, "price": spec.price_yen.to_string()}],
            "total_shipping": "0",
            "payment": {"method": spec.payment_method, "amount": (total - points).to_string(), "points_amount": points.to_string()},
            "financial_status": if spec.paid { "paid" } else { "pending" },
            "fulfillment_status": spec.fulfillment_status,
        }),
    );
    let answer = app.post("/api/v1/orders", &shop.token, body).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    answer.body["id"].as_str().unwrap().to_owned()
}

fn check_order(order: &Value) -> Result<(), TestCaseError> {
    let paid = yen(&order["total_paid"]);
    let refunded = yen(&order["total_refund_price"]);
    let ledger: i64 = order["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|refund| yen(&refund["amount"]))
        .sum();
    prop_assert!(refunded <= paid, "refunded {refunded} of {paid} paid: {order}");
    prop_assert_eq!(ledger, refunded, "the refund ledger adds up to total_refund_price");
    let cancellation_status = order["cancellation"]["status"].as_str();
    if cancellation_status == Some("completed") {
        prop_assert_eq!(refunded, paid, "a completed cancellation is fully refunded: {}", order);
    }
    let in_effect = matches!(cancellation_status, Some("awaiting_refund" | "completed"));
    prop_assert_eq!(
        order["status"] == "cancelled",
        in_effect,
        "cancelled exactly when a cancellation is in effect: {}",
        order
    );
    Ok(())
}

async fn run_case(
    app: &TestApp,
    shop: &TestShop,
    specs: &[OrderSpec],
    operations: &[Operation],
) -> Result<(), TestCaseError> {
    let mut ids = Vec::new();
    for spec in specs {
        ids.push(import(app, shop, spec).await);
    }
    for operation in operations {
        let answer = match operation {
            Operation::Cancel { order, refund, method } => {
                let mut options = json!({"refund": refund});
                if let Some(method) = method {
                    options["refund_method"] = json!(method);
                }
                app.cancel(shop, &ids[*order], options).await
            }
            Operation::Refund { order, percent, method } => {
                let current = app.order_now(shop, &ids[*order]).await;
                let amount = (yen(&current["total_paid"]) * i64::from(*percent) / 100).max(1);
                app.post(
                    &format!("/api/v1/orders/{}/refunds", ids[*order]),
                    &shop.token,
                    json!({"amount": amount.to_string(), "method": method}),
                )
                .await
            }
            Operation::Bulk { orders, method } => {
                let order_ids: Vec<&String> = orders.iter().map(|index| &ids[*index]).collect();
                let mut body = json!({"order_ids": order_ids});
                if let Some(method) = method {
                    body["refund_method"] = json!(method);
                }
                app.post("/api/v1/orders/cancel", &shop.token, body).await
            }
        };
        prop_assert!(
            answer.status < 500,
            "{:?} answered {}: {}",
            operation,
            answer.status,
            answer.text
        );
        for id in &ids {
            check_order(&app.order_now(shop, id).await)?;
        }
    }
    Ok(())
}

async fn no_sequence_of_cancels_refunds_and_bulk_cancels_refunds_more_than_was_paid(app: TestApp) {
    let shop = app.shop().await;
    let strategy = (
        prop::collection::vec(order_spec(), ORDERS_PER_CASE),
        prop::collection::vec(operation(), 1..10),
    );
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    let handle = tokio::runtime::Handle::current();
    let outcome = tokio::task::block_in_place(|| {
        runner.run(&strategy, |(specs, operations)| {
            handle.block_on(run_case(&app, &shop, &specs, &operations))
        })
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
