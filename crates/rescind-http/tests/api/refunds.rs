//! Recording refunds (API.md `POST /orders/{id}/refunds`, PRODUCT.md W6, W9).

use crate::helpers::TestApp;
use serde_json::json;

crate::on_both_backends!(
    a_refund_on_an_order_that_will_still_ship_raises_a_warning,
    refunds_never_exceed_what_was_paid,
    refunds_need_a_positive_amount_and_a_method_rescind_can_record,
);

async fn a_refund_on_an_order_that_will_still_ship_raises_a_warning(app: TestApp) {
    let shop = app.shop().await;
    let order = app.order(&shop, json!({})).await;
    let id = order["id"].as_str().unwrap();
    let refund = app
        .post(
            &format!("/api/v1/orders/{id}/refunds"),
            &shop.token,
            json!({"amount": "500", "method": "store_credit"}),
        )
        .await;
    assert_eq!(refund.status, 201, "{}", refund.text);
    assert_eq!(
        refund.body["order"]["warnings"],
        json!(["refunded_but_will_ship"]),
        "W9"
    );
    assert_eq!(refund.body["order"]["status"], "open");
    assert_eq!(refund.body["order"]["financial_status"], "partially_refunded");
    let history = app.get(&format!("/api/v1/orders/{id}/history"), &shop.token).await;
    assert!(history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|entry| entry["kind"] == "warning.refunded_but_will_ship"));
    // The cancel afterwards refunds only what is left.
    let cancelled = app.cancel(&shop, id, json!({"refund_method": "store_credit"})).await;
    assert_eq!(cancelled.body["total_refund_price"], "2600");
    assert_eq!(cancelled.body["refunds"].as_array().unwrap().len(), 2);
    assert_eq!(cancelled.body["refunds"][1]["amount"], "2100");
}

async fn refunds_never_exceed_what_was_paid(app: TestApp) {
    let shop = app.shop().await;
    let order = app.order(&shop, json!({})).await;
    let id = order["id"].as_str().unwrap();
    let too_much = app
        .post(
            &format!("/api/v1/orders/{id}/refunds"),
            &shop.token,
            json!({"amount": "2601", "method": "bank_transfer"}),
        )
        .await;
    assert_eq!((too_much.status, too_much.code()), (400, "invalid_request"));
    assert!(
        too_much.body["errors"][0].as_str().unwrap().contains("2600"),
        "{}",
        too_much.text
    );
    app.cancel(&shop, id, json!({"refund_method": "store_credit"})).await;
    let after_cancel = app
        .post(
            &format!("/api/v1/orders/{id}/refunds"),
            &shop.token,
            json!({"amount": "1", "method": "store_credit"}),
        )
        .await;
    assert_eq!(after_cancel.status, 400, "everything was already refunded");
    assert_eq!(app.order_now(&shop, id).await["total_refund_price"], "2600");
}

async fn refunds_need_a_positive_amount_and_a_method_rescind_can_record(app: TestApp) {
    let shop = app.shop().await;
    let order = app.order(&shop, json!({})).await;
    let path = format!("/api/v1/orders/{}/refunds", order["id"].as_str().unwrap());
    let zero = app
        .post(&path, &shop.token, json!({"amount": "0", "method": "store_credit"}))
        .await;
    assert_eq!(zero.body["errors"], json!(["amount: must be more than zero"]));
    let missing = app.post(&path, &shop.token, json!({})).await;
    assert_eq!(
        missing.body["errors"],
        json!(["amount: is required", "method: is required"])
    );
    let card = app
        .post(
            &path,
            &shop.token,
            json!({"amount": "100", "method": "original_payment"}),
        )
        .await;
    assert_eq!((card.status, card.code()), (409, "payment_provider_required"));
    let channel = app
        .post(&path, &shop.token, json!({"amount": "100", "method": "channel"}))
        .await;
    assert_eq!(channel.status, 400);
    assert_eq!(
        app.order_now(&shop, order["id"].as_str().unwrap()).await["refunds"],
        json!([])
    );
}
