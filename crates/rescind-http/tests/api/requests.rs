//! Customer cancellation requests (PRODUCT.md Q1–Q2): asked for by the customer, accepted or rejected by
//! an operator.

use crate::helpers::{order_body, TestApp, TestShop, TestSim};
use serde_json::{json, Value};

crate::on_both_backends!(
    a_request_with_the_setting_off_is_refused_and_changes_nothing,
    a_request_accepted_cancels_and_refunds_the_order_as_asked_by_the_customer,
    a_request_rejected_leaves_the_order_as_it_was,
    a_customer_cannot_ask_once_the_order_has_shipped_or_twice_at_once,
    requests_are_listed_by_status_and_decided_only_once,
    bad_request_bodies_name_every_problem,
    ten_operators_accepting_at_once_cancel_and_refund_once,
    a_merchants_own_cancel_grants_the_open_request,
    a_request_whose_cancel_the_channel_refuses_is_open_again,
);

async fn ask(app: &TestApp, shop: &TestShop, order_id: &str, reason: &str) -> crate::helpers::Answer {
    app.post(
        &format!("/api/v1/orders/{order_id}/cancellation_requests"),
        &shop.token,
        json!({"reason": reason}),
    )
    .await
}

/// A shop taking requests, with a ¥2,600 order paid by card at the simulated Stripe.
async fn card_paid_order(app: &TestApp) -> (TestSim, TestShop, String, Value) {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    app.take_requests(&shop).await;
    let provider = app.stripe(&shop, &sim).await;
    let payment = sim.payment(2600, "jpy", "succeeded").await;
    let order = app.card_order(&shop, &provider, &payment, json!({})).await;
    (sim, shop, payment, order)
}

fn id(value: &Value) -> &str {
    value["id"].as_str().unwrap()
}

async fn history_kinds(app: &TestApp, shop: &TestShop, order_id: &str) -> Vec<String> {
    let history = app
        .get(&format!("/api/v1/orders/{order_id}/history"), &shop.token)
        .await;
    history.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["kind"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_request_with_the_setting_off_is_refused_and_changes_nothing(app: TestApp) {
    let shop = app.shop().await;
    let order = app.order(&shop, json!({})).await;
    let answer = ask(&app, &shop, id(&order), "ordered twice by mistake").await;
    assert_eq!(answer.status, 409, "{}", answer.text);
    assert_eq!(answer.code(), "requests_disabled");
    assert!(answer.body["error"]
        .as_str()
        .unwrap()
        .contains("customer_cancellation_requests"));
    let now = app.order_now(&shop, id(&order)).await;
    assert_eq!(now["cancellation_request"], Value::Null);
    assert!(!history_kinds(&app, &shop, id(&order))
        .await
        .contains(&"cancellation.requested".to_owned()));
}

async fn a_request_accepted_cancels_and_refunds_the_order_as_asked_by_the_customer(app: TestApp) {
    let (sim, shop, payment, order) = card_paid_order(&app).await;

    let request = ask(&app, &shop, id(&order), "ordered twice by mistake").await;
    assert_eq!(request.status, 201, "{}", request.text);
    assert_eq!(request.body["status"], "requested");
    assert_eq!(request.body["order_id"], id(&order));
    assert_eq!(request.body["reason"], "ordered twice by mistake");
    let shown = app.order_now(&shop, id(&order)).await;
    assert_eq!(
        shown["cancellation_request"]["status"], "requested",
        "Q1: shown on the order"
    );
    assert_eq!(shown["status"], "open", "asking changes nothing else");
    assert!(sim.refunds_of(&payment).await.is_empty());

    let accepted = app
        .post(
            &format!("/api/v1/cancellation_requests/{}/accept", id(&request.body)),
            &shop.token,
            json!({"reason": "duplicate order", "refund_method": "original_payment"}),
        )
        .await;
    assert_eq!(accepted.status, 200, "{}", accepted.text);
    assert_eq!(accepted.body["status"], "cancelled");
    assert_eq!(accepted.body["financial_status"], "refunded");
    assert_eq!(accepted.body["cancellation"]["requested_by"], "customer");
    assert_eq!(accepted.body["cancellation"]["reason"], "duplicate order");
    assert_eq!(accepted.body["cancellation_request"]["status"], "accepted");
    assert_eq!(
        accepted.body["cancellation_request"]["cancellation_id"],
        accepted.body["cancellation"]["id"]
    );
    let refunds = sim.refunds_of(&payment).await;
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0]["amount"], 2600);
    let kinds = history_kinds(&app, &shop, id(&order)).await;
    for kind in [
        "cancellation.requested",
        "cancellation_request.accepted",
        "cancellation.created",
    ] {
        assert!(kinds.contains(&kind.to_owned()), "{kind} in {kinds:?}");
    }
}

async fn a_request_rejected_leaves_the_order_as_it_was(app: TestApp) {
    let shop = app.shop().await;
    app.take_requests(&shop).await;
    let order = app.order(&shop, json!({})).await;
    let request = ask(&app, &shop, id(&order), "changed my mind").await;
    let rejected = app
        .post(
            &format!("/api/v1/cancellation_requests/{}/reject", id(&request.body)),
            &shop.token,
            json!({"reason": "already handed to the carrier"}),
        )
        .await;
    assert_eq!(rejected.status, 200, "{}", rejected.text);
    assert_eq!(rejected.body["status"], "rejected");
    assert_eq!(rejected.body["decision_reason"], "already handed to the carrier");

    let now = app.order_now(&shop, id(&order)).await;
    for field in [
        "status",
        "financial_status",
        "fulfillment_status",
        "total_refund_price",
        "cancellation",
    ] {
        assert_eq!(now[field], order[field], "{field} unchanged");
    }
    assert_eq!(now["cancellation_request"]["status"], "rejected");
    assert!(history_kinds(&app, &shop, id(&order))
        .await
        .contains(&"cancellation_request.rejected".to_owned()));

    let again = ask(&app, &shop, id(&order), "please, really").await;
    assert_eq!(
        again.status, 201,
        "a decided request does not block a new one: {}",
        again.text
    );
}

async fn a_customer_cannot_ask_once_the_order_has_shipped_or_twice_at_once(app: TestApp) {
    let shop = app.shop().await;
    app.take_requests(&shop).await;
    let shipped = app.order(&shop, json!({"fulfillment_status": "shipped"})).await;
    let answer = ask(&app, &shop, id(&shipped), "too late").await;
    assert_eq!(answer.status, 409, "{}", answer.text);
    assert_eq!(answer.code(), "order_not_cancellable");

    let order = app.order(&shop, json!({})).await;
    let first = ask(&app, &shop, id(&order), "first").await;
    assert_eq!(first.status, 201);
    let second = ask(&app, &shop, id(&order), "second").await;
    assert_eq!(second.status, 409);
    assert_eq!(second.code(), "request_pending");
    assert!(second.body["error"].as_str().unwrap().contains(id(&first.body)));

    let cancelled = app.order(&shop, json!({})).await;
    app.cancel(&shop, id(&cancelled), json!({"refund_method": "store_credit"}))
        .await;
    assert_eq!(
        ask(&app, &shop, id(&cancelled), "late").await.code(),
        "already_cancelled"
    );
    assert_eq!(ask(&app, &shop, "ord_nowhere", "who").await.status, 404);
}

async fn requests_are_listed_by_status_and_decided_only_once(app: TestApp) {
    let shop = app.shop().await;
    app.take_requests(&shop).await;
    let waiting = app.order(&shop, json!({})).await;
    let refused = app.order(&shop, json!({})).await;
    let waiting_request = ask(&app, &shop, id(&waiting), "one").await;
    let refused_request = ask(&app, &shop, id(&refused), "two").await;
    let reject_path = format!("/api/v1/cancellation_requests/{}/reject", id(&refused_request.body));
    let rejected = app.post(&reject_path, &shop.token, json!({"reason": "no"})).await;
    assert_eq!(rejected.status, 200);

    let open = app
        .get("/api/v1/cancellation_requests?status=requested", &shop.token)
        .await;
    assert_eq!(open.status, 200, "{}", open.text);
    let ids: Vec<&str> = open.body["items"].as_array().unwrap().iter().map(id).collect();
    assert_eq!(ids, [id(&waiting_request.body)]);
    assert_eq!(open.body["items"][0]["number"], waiting["number"]);
    let all = app.get("/api/v1/cancellation_requests", &shop.token).await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 2);
    let bad = app.get("/api/v1/cancellation_requests?status=maybe", &shop.token).await;
    assert_eq!(bad.status, 400);

    let twice = app.post(&reject_path, &shop.token, json!({"reason": "no again"})).await;
    assert_eq!(twice.status, 409);
    assert_eq!(twice.code(), "request_decided");
    let accept_rejected = app
        .post(
            &format!("/api/v1/cancellation_requests/{}/accept", id(&refused_request.body)),
            &shop.token,
            json!({"reason": "changed our mind", "refund_method": "store_credit"}),
        )
        .await;
    assert_eq!(accept_rejected.code(), "request_decided");
    assert_eq!(app.order_now(&shop, id(&refused)).await["status"], "open");
    let unknown = app
        .post(
            "/api/v1/cancellation_requests/req_nowhere/reject",
            &shop.token,
            json!({"reason": "no"}),
        )
        .await;
    assert_eq!(unknown.status, 404);

    let other = app.shop().await;
    let foreign = app.get("/api/v1/cancellation_requests", &other.token).await;
    assert_eq!(foreign.body["items"], json!([]), "another shop sees none");
}

async fn bad_request_bodies_name_every_problem(app: TestApp) {
    let shop = app.shop().await;
    app.take_requests(&shop).await;
    let order = app.order(&shop, json!({})).await;
    let no_reason = app
        .post(
            &format!("/api/v1/orders/{}/cancellation_requests", id(&order)),
            &shop.token,
            json!({}),
        )
        .await;
    assert_eq!(no_reason.status, 400);
    assert!(no_reason.text.contains("reason: is required"), "{}", no_reason.text);

    let request = ask(&app, &shop, id(&order), "please").await;
    let accept_path = format!("/api/v1/cancellation_requests/{}/accept", id(&request.body));
    let empty = app.post(&accept_path, &shop.token, json!({})).await;
    assert_eq!(empty.status, 400);
    assert!(empty.text.contains("reason: is required"), "{}", empty.text);
    assert!(empty.text.contains("refund_method: is required"), "{}", empty.text);
    let wrong = app
        .post(
            &accept_path,
            &shop.token,
            json!({"reason": "ok", "refund_method": "gold"}),
        )
        .await;
    assert_eq!(wrong.status, 400);
    assert!(wrong.text.contains("refund_method"), "{}", wrong.text);
    assert_eq!(
        app.order_now(&shop, id(&order)).await["cancellation_request"]["status"],
        "requested",
        "a bad accept leaves the request open"
    );
}

async fn ten_operators_accepting_at_once_cancel_and_refund_once(app: TestApp) {
    let (sim, shop, payment, order) = card_paid_order(&app).await;
    let request = ask(&app, &shop, id(&order), "duplicate").await;
    let url = app.url(&format!("/api/v1/cancellation_requests/{}/accept", id(&request.body)));
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(10));
    let accepts: Vec<_> = (0..10)
        .map(|_| {
            let (client, url, token, start) = (reqwest::Client::new(), url.clone(), shop.token.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let answer = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"reason": "duplicate", "refund_method": "original_payment"}))
                    .send()
                    .await
                    .unwrap();
                let status = answer.status().as_u16();
                let body: Value = answer.json().await.unwrap();
                (status, body["code"].as_str().unwrap_or_default().to_owned())
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for accept in accepts {
        outcomes.push(accept.await.unwrap());
    }
    let accepted = outcomes.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(accepted, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|(status, code)| *status == 200 || (*status == 409 && code == "request_decided")),
        "{outcomes:?}"
    );
    assert_eq!(sim.refunds_of(&payment).await.len(), 1, "C7: one refund");
}

async fn a_merchants_own_cancel_grants_the_open_request(app: TestApp) {
    let shop = app.shop().await;
    app.take_requests(&shop).await;
    let order = app.order(&shop, json!({})).await;
    let request = ask(&app, &shop, id(&order), "wrong colour").await;
    let cancelled = app
        .cancel(
            &shop,
            id(&order),
            json!({"reason": "customer phoned", "refund_method": "store_credit"}),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    let granted = &cancelled.body["cancellation_request"];
    assert_eq!(granted["id"], request.body["id"]);
    assert_eq!(granted["status"], "accepted");
    assert_eq!(granted["cancellation_id"], cancelled.body["cancellation"]["id"]);
    let open = app
        .get("/api/v1/cancellation_requests?status=requested", &shop.token)
        .await;
    assert_eq!(open.body["items"], json!([]), "nothing left for an operator to decide");
}

async fn a_request_whose_cancel_the_channel_refuses_is_open_again(app: TestApp) {
    let sim = TestSim::start().await;
    let shop = app.shop().await;
    app.take_requests(&shop).await;
    let channel = app
        .post(
            "/api/v1/channels",
            &shop.token,
            json!({"kind": "shoplazza", "name": "Shoplazza", "base_url": sim.url(), "credentials": {"access_token": "shoplazza-token"}}),
        )
        .await;
    assert_eq!(channel.status, 201, "{}", channel.text);
    let known = app
        .client
        .post(format!("{}/_sim/shoplazza/orders", sim.url()))
        .json(&json!({"id": "SL-1", "items": ["item-1"], "status": "finished"}))
        .send()
        .await
        .unwrap();
    assert!(known.status().is_success());
    let body = order_body(
        channel.body["id"].as_str().unwrap(),
        json!({"channel_order_id": "SL-1",
               "line_items": [{"sku": "TEA-001", "title": "Sencha", "quantity": 1, "price": "2000", "channel_line_item_id": "item-1"}],
               "payment": {"method": "channel", "amount": "2600"}}),
    );
    let order = app.post("/api/v1/orders", &shop.token, body).await;
    assert_eq!(order.status, 201, "{}", order.text);
    let request = ask(&app, &shop, id(&order.body), "too slow").await;
    assert_eq!(request.status, 201, "{}", request.text);

    let accepted = app
        .post(
            &format!("/api/v1/cancellation_requests/{}/accept", id(&request.body)),
            &shop.token,
            json!({"reason": "customer asked", "refund_method": "channel"}),
        )
        .await;
    assert_eq!(
        (accepted.status, accepted.code()),
        (502, "channel_refused"),
        "{}",
        accepted.text
    );
    let now = app.order_now(&shop, id(&order.body)).await;
    assert_eq!(now["status"], "open");
    assert_eq!(
        now["cancellation_request"]["status"], "requested",
        "nothing was cancelled, so the request waits for a decision again"
    );
    assert!(history_kinds(&app, &shop, id(&order.body))
        .await
        .contains(&"cancellation_request.reopened".to_owned()));
    let rejected = app
        .post(
            &format!("/api/v1/cancellation_requests/{}/reject", id(&request.body)),
            &shop.token,
            json!({"reason": "the order is already finished at Shoplazza"}),
        )
        .await;
    assert_eq!(rejected.status, 200, "{}", rejected.text);
}
