//! Importing, reading and listing orders (API.md "Orders", PRODUCT.md §1).

use crate::helpers::{order_body, TestApp};
use serde_json::{json, Value};
use std::collections::HashSet;

crate::on_both_backends!(
    an_imported_order_has_every_field_with_money_as_decimal_strings,
    amounts_follow_the_currencys_minor_units,
    a_second_import_of_the_same_channel_order_is_a_duplicate_naming_the_first,
    an_invalid_import_lists_one_error_per_problem,
    money_sent_as_a_json_number_is_refused,
    orders_are_numbered_per_shop_when_the_import_names_no_number,
    the_order_list_filters_and_pages_with_a_cursor,
    page_sizes_beyond_the_limit_are_refused,
    marketplace_orders_need_their_channel_order_id,
);

async fn an_imported_order_has_every_field_with_money_as_decimal_strings(app: TestApp) {
    let shop = app.shop().await;
    let order = app.order(&shop, json!({"total_tax": "260", "total_discount": "100", "payment": {"method": "bank_transfer", "amount": "2760"}})).await;
    for field in [
        "id",
        "number",
        "channel_id",
        "channel_order_id",
        "status",
        "financial_status",
        "fulfillment_status",
        "currency",
        "sub_total",
        "total_shipping",
        "total_tax",
        "total_discount",
        "total_price",
        "total_paid",
        "total_refund_price",
        "cancel_reason",
        "canceled_at",
        "created_at",
        "updated_at",
        "customer",
        "shipping_address",
        "line_items",
        "outbound",
        "cancellation",
        "warnings",
    ] {
        assert!(order.get(field).is_some(), "the order lacks `{field}`: {order}");
    }
    assert_eq!(order["status"], "open");
    assert_eq!(order["financial_status"], "paid");
    assert_eq!(order["fulfillment_status"], "awaiting_shipment");
    assert_eq!(order["sub_total"], "2000");
    assert_eq!(
        order["total_price"], "2760",
        "2000 + 600 shipping + 260 tax - 100 discount"
    );
    assert_eq!(order["total_paid"], "2760");
    assert_eq!(order["total_refund_price"], "0");
    assert_eq!(order["line_items"][1]["quantity"], 2);
    assert_eq!(order["line_items"][1]["cancelled_quantity"], 0);
    assert_eq!(order["line_items"][1]["price"], "500");
    assert!(order["line_items"][0]["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert_eq!(order["cancellation"], Value::Null);
    assert_eq!(order["outbound"], Value::Null);
    assert_eq!(order["warnings"], json!([]));
    assert_eq!(order["shipping_address"]["prefecture"], "東京都");
    assert!(
        order["created_at"].as_str().unwrap().ends_with('Z'),
        "times are RFC 3339 UTC"
    );
    let read = app.order_now(&shop, order["id"].as_str().unwrap()).await;
    assert_eq!(read, order, "what is read back is what the import answered");
}

async fn amounts_follow_the_currencys_minor_units(app: TestApp) {
    let shop = app.shop().await;
    let dollars = app
        .order(
            &shop,
            json!({"currency": "USD", "line_items": [{"sku": "A", "title": "Tea", "quantity": 3, "price": "3.3"}],
                   "total_shipping": "0.1", "payment": {"method": "bank_transfer", "amount": "10.00"}}),
        )
        .await;
    assert_eq!(dollars["sub_total"], "9.90", "3 × 3.30 exactly, never 9.899999");
    assert_eq!(dollars["total_price"], "10.00");
    let yen_with_cents = app
        .post(
            "/api/v1/orders",
            &shop.token,
            order_body(&shop.channel_id, json!({"total_shipping": "600.5"})),
        )
        .await;
    assert_eq!(yen_with_cents.status, 400);
    assert!(
        yen_with_cents.body["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("total_shipping:"),
        "{}",
        yen_with_cents.text
    );
}

async fn a_second_import_of_the_same_channel_order_is_a_duplicate_naming_the_first(app: TestApp) {
    let shop = app.shop().await;
    let first = app.order(&shop, json!({"channel_order_id": "WEB-1001"})).await;
    let again = app
        .post(
            "/api/v1/orders",
            &shop.token,
            order_body(&shop.channel_id, json!({"channel_order_id": "WEB-1001"})),
        )
        .await;
    assert_eq!((again.status, again.code()), (409, "duplicate_order"));
    let first_id = first["id"].as_str().unwrap();
    assert!(
        again.body["error"].as_str().unwrap().contains(first_id),
        "{}",
        again.text
    );
    let list = app.get("/api/v1/orders", &shop.token).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    // Another shop may import its own WEB-1001.
    let other = app.shop().await;
    app.order(&other, json!({"channel_order_id": "WEB-1001"})).await;
}

async fn an_invalid_import_lists_one_error_per_problem(app: TestApp) {
    let shop = app.shop().await;
    let body = order_body(
        &shop.channel_id,
        json!({
            "currency": "yen",
            "customer": {"email": "not-an-email"},
            "line_items": [{"sku": "", "title": "Tea", "quantity": 0, "price": "-1"}],
            "financial_status": "refunded",
            "fulfillment_status": "teleported",
        }),
    );
    let answer = app.post("/api/v1/orders", &shop.token, body).await;
    assert_eq!((answer.status, answer.code()), (400, "invalid_request"));
    let errors: Vec<&str> = answer.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    for field in [
        "currency:",
        "customer.email:",
        "customer.name:",
        "line_items[0].sku:",
        "line_items[0].quantity:",
        "financial_status:",
        "fulfillment_status:",
    ] {
        assert_eq!(
            errors.iter().filter(|error| error.starts_with(field)).count(),
            1,
            "one entry for {field} in {errors:?}"
        );
    }
    let missing = app.post("/api/v1/orders", &shop.token, json!({})).await;
    let errors = missing.body["errors"].as_array().unwrap();
    assert!(errors.len() >= 6, "every missing field is named: {errors:?}");
    assert!(app.get("/api/v1/orders", &shop.token).await.body["items"]
        .as_array()
        .unwrap()
        .is_empty());
}

async fn money_sent_as_a_json_number_is_refused(app: TestApp) {
    let shop = app.shop().await;
    let answer = app
        .post(
            "/api/v1/orders",
            &shop.token,
            order_body(
                &shop.channel_id,
                json!({"line_items": [{"sku": "A", "title": "Tea", "quantity": 1, "price": 9.99}]}),
            ),
        )
        .await;
    assert_eq!(answer.status, 400);
    assert_eq!(
        answer.body["errors"][0],
        "line_items[0].price: must be a decimal string such as \"9.99\", not 9.99"
    );
}

async fn orders_are_numbered_per_shop_when_the_import_names_no_number(app: TestApp) {
    let shop = app.shop().await;
    let first = app.order(&shop, json!({})).await;
    let second = app.order(&shop, json!({})).await;
    let named = app.order(&shop, json!({"number": "R-77"})).await;
    assert_eq!(
        (
            first["number"].as_str(),
            second["number"].as_str(),
            named["number"].as_str()
        ),
        (Some("#1001"), Some("#1002"), Some("R-77"))
    );
    let other = app.shop().await;
    assert_eq!(
        app.order(&other, json!({})).await["number"],
        "#1001",
        "each shop counts on its own"
    );
}

async fn the_order_list_filters_and_pages_with_a_cursor(app: TestApp) {
    let shop = app.shop().await;
    let mut ids = Vec::new();
    for index in 0..7 {
        let status = if index % 2 == 0 {
            "awaiting_shipment"
        } else {
            "awaiting_payment"
        };
        let name = if index == 3 { "Emma Clarke" } else { "山田 太郎" };
        let order = app
            .order(&shop, json!({"fulfillment_status": status, "customer": {"name": name, "email": format!("c{index}@example.com")}}))
            .await;
        ids.push(order["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/api/v1/orders?limit=3&cursor={cursor}"),
            None => "/api/v1/orders?limit=3".to_owned(),
        };
        let page = app.get(&path, &shop.token).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|order| order["id"].as_str().unwrap().to_owned()));
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "every order once: {seen:?}");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 7);
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first, "newest first");

    let count = |answer: crate::helpers::Answer| answer.body["items"].as_array().map_or(0, Vec::len);
    assert_eq!(
        count(
            app.get("/api/v1/orders?fulfillment_status=awaiting_payment", &shop.token)
                .await
        ),
        3
    );
    assert_eq!(
        count(app.get("/api/v1/orders?q=emma", &shop.token).await),
        1,
        "q matches the customer name, case-insensitively"
    );
    assert_eq!(
        count(app.get("/api/v1/orders?q=c5%40example", &shop.token).await),
        1,
        "q matches the email"
    );
    assert_eq!(
        count(app.get("/api/v1/orders?q=%25", &shop.token).await),
        0,
        "LIKE wildcards in q match literally"
    );
    assert_eq!(
        count(
            app.get(&format!("/api/v1/orders?channel_id={}", shop.channel_id), &shop.token)
                .await
        ),
        7
    );
    app.cancel(&shop, &ids[0], json!({"refund_method": "store_credit"}))
        .await;
    assert_eq!(count(app.get("/api/v1/orders?status=cancelled", &shop.token).await), 1);
    assert_eq!(
        count(
            app.get("/api/v1/orders?cancellation_status=completed", &shop.token)
                .await
        ),
        1
    );
    assert_eq!(count(app.get("/api/v1/orders?status=open", &shop.token).await), 6);
    let bad = app.get("/api/v1/orders?status=gone", &shop.token).await;
    assert_eq!((bad.status, bad.code()), (400, "invalid_request"));
}

async fn page_sizes_beyond_the_limit_are_refused(app: TestApp) {
    let shop = app.shop().await;
    for limit in ["0", "501", "ten"] {
        let answer = app.get(&format!("/api/v1/orders?limit={limit}"), &shop.token).await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, "invalid_request"),
            "limit={limit}"
        );
    }
    assert_eq!(app.get("/api/v1/orders?limit=500", &shop.token).await.status, 200);
}

async fn marketplace_orders_need_their_channel_order_id(app: TestApp) {
    let shop = app.shop().await;
    let rakuten = app
        .post("/api/v1/channels", &shop.token, json!({"kind": "rakuten", "name": "楽天市場店", "base_url": "http://127.0.0.1:9", "credentials": {"service_secret": "s", "license_key": "k"}}))
        .await;
    assert_eq!(rakuten.status, 201, "{}", rakuten.text);
    assert!(rakuten.body.get("credentials").is_none(), "credentials are write-only");
    let channel_id = rakuten.body["id"].as_str().unwrap();
    let without = app
        .post("/api/v1/orders", &shop.token, order_body(channel_id, json!({})))
        .await;
    assert_eq!(without.status, 400);
    assert!(without.body["errors"][0]
        .as_str()
        .unwrap()
        .starts_with("channel_order_id:"));
    let with = app
        .post(
            "/api/v1/orders",
            &shop.token,
            order_body(channel_id, json!({"channel_order_id": "354396-20260525-0036329794"})),
        )
        .await;
    assert_eq!(with.status, 201, "{}", with.text);
    assert_eq!(with.body["channel_kind"], "rakuten");
}
