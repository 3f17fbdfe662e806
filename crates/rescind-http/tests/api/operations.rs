//! Health, metrics, the OpenAPI document, body limits, malformed input and idempotency (B3).

use crate::helpers::{order_body, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

crate::on_both_backends!(
    health_answers_ok_without_a_token,
    metrics_count_requests_by_route_and_status_and_cancellations_by_outcome,
    the_openapi_document_covers_every_endpoint_and_the_error_body,
    malformed_json_is_a_bad_request_with_the_error_body,
    a_body_over_one_mebibyte_is_refused_with_413,
    a_huge_declared_body_is_refused_before_it_is_sent,
    unknown_paths_and_methods_answer_with_the_error_body,
    a_retry_with_the_same_idempotency_key_replays_the_first_answer,
    the_same_idempotency_key_with_another_body_is_refused,
);

async fn health_answers_ok_without_a_token(app: TestApp) {
    let answer = app.send(Method::GET, "/healthz", None, None, None).await;
    assert_eq!((answer.status, answer.body.clone()), (200, json!({"status": "ok"})));
}

async fn metrics_count_requests_by_route_and_status_and_cancellations_by_outcome(app: TestApp) {
    let shop = app.shop().await;
    let order = app.order(&shop, json!({})).await;
    app.cancel(
        &shop,
        order["id"].as_str().unwrap(),
        json!({"refund_method": "store_credit"}),
    )
    .await;
    app.cancel(
        &shop,
        order["id"].as_str().unwrap(),
        json!({"refund_method": "store_credit"}),
    )
    .await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            r#"rescind_http_requests_total{method="POST",route="/api/v1/orders/{order_id}/cancel",status="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(metrics.contains(
        r#"rescind_http_requests_total{method="POST",route="/api/v1/orders/{order_id}/cancel",status="409"} 1"#
    ));
    assert!(metrics.contains(r#"rescind_cancellations_total{outcome="completed"} 1"#));
    assert!(metrics.contains(r#"rescind_cancellations_total{outcome="already_cancelled"} 1"#));
}

async fn the_openapi_document_covers_every_endpoint_and_the_error_body(app: TestApp) {
    let answer = app.send(Method::GET, "/api/v1/openapi.json", None, None, None).await;
    assert_eq!(answer.status, 200);
    let document = answer.body;
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = document["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/shops", "post"),
        ("/api/v1/shops/{shop_id}/tokens", "post"),
        ("/api/v1/settings", "get"),
        ("/api/v1/settings", "patch"),
        ("/api/v1/channels", "post"),
        ("/api/v1/channels", "get"),
        ("/api/v1/channels/{channel_id}", "get"),
        ("/api/v1/orders", "post"),
        ("/api/v1/orders", "get"),
        ("/api/v1/orders/{order_id}", "get"),
        ("/api/v1/orders/{order_id}/history", "get"),
        ("/api/v1/orders/{order_id}/cancel", "post"),
        ("/api/v1/orders/cancel", "post"),
        ("/api/v1/orders/{order_id}/refunds", "post"),
        ("/api/v1/orders/{order_id}/uncancel", "post"),
        ("/api/v1/cancellations", "get"),
        ("/api/v1/cancellations/{cancellation_id}/retry", "post"),
        ("/api/v1/payment_providers", "post"),
        ("/api/v1/payment_providers", "get"),
        ("/api/v1/payment_providers/{provider_id}", "get"),
        ("/api/v1/channels/{channel_id}/cancel_reasons", "get"),
        ("/api/v1/channels/{channel_id}/poll", "post"),
        ("/api/v1/channels/{channel_id}/webhooks", "post"),
        ("/api/v1/sync_history", "get"),
        ("/api/v1/warehouses", "post"),
        ("/api/v1/warehouses", "get"),
        ("/api/v1/warehouses/{warehouse_id}", "get"),
        ("/api/v1/warehouses/{warehouse_id}/events", "post"),
        ("/api/v1/orders/{order_id}/cancellation_requests", "post"),
        ("/api/v1/cancellation_requests", "get"),
        ("/api/v1/cancellation_requests/{request_id}/accept", "post"),
        ("/api/v1/cancellation_requests/{request_id}/reject", "post"),
        ("/api/v1/inventory/{sku}", "get"),
        ("/api/v1/inventory/{sku}", "put"),
        ("/api/v1/inventory/{sku}/adjust", "post"),
        ("/healthz", "get"),
        ("/metrics", "get"),
        ("/api/v1/openapi.json", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|item| item.get(method)).is_some(),
            "{method} {path} is documented"
        );
    }
    let error_body = &document["components"]["schemas"]["ErrorBody"]["properties"];
    assert!(
        error_body.get("error").is_some() && error_body.get("code").is_some() && error_body.get("errors").is_some()
    );
    let statuses = &document["components"]["schemas"]["OrderBody"]["properties"]["status"]["enum"];
    assert_eq!(
        statuses,
        &json!(["open", "cancelled", "closed"]),
        "enumerations come from the domain"
    );
    let cancel_responses = paths["/api/v1/orders/{order_id}/cancel"]["post"]["responses"]
        .as_object()
        .unwrap();
    for status in ["200", "202", "400", "401", "403", "404", "409"] {
        assert!(cancel_responses.contains_key(status), "cancel documents {status}");
    }
}

async fn malformed_json_is_a_bad_request_with_the_error_body(app: TestApp) {
    let shop = app.shop().await;
    let response = app
        .client
        .post(app.url("/api/v1/orders"))
        .bearer_auth(&shop.token)
        .header("Content-Type", "application/json")
        .body("{\"channel_id\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "invalid_request");
    assert!(body["errors"][0].as_str().unwrap().contains("not valid JSON"), "{body}");
    let wrong_type = app
        .post("/api/v1/orders", &shop.token, json!({"line_items": "many"}))
        .await;
    assert_eq!((wrong_type.status, wrong_type.code()), (400, "invalid_request"));
}

async fn a_body_over_one_mebibyte_is_refused_with_413(app: TestApp) {
    let shop = app.shop().await;
    let huge = format!("{{\"reason\": \"{}\"}}", "x".repeat(1024 * 1024 + 1));
    let response = app
        .client
        .post(app.url("/api/v1/orders/cancel"))
        .bearer_auth(&shop.token)
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "payload_too_large");
}

async fn a_huge_declared_body_is_refused_before_it_is_sent(app: TestApp) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let shop = app.shop().await;
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let head = format!(
        "POST /api/v1/orders/cancel HTTP/1.1\r\nHost: rescind\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1073741824\r\nExpect: 100-continue\r\n\r\n",
        shop.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("payload_too_large") {
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert!(
            read > 0,
            "the server closed without answering: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buffer[..read]);
    }
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

async fn unknown_paths_and_methods_answer_with_the_error_body(app: TestApp) {
    let shop = app.shop().await;
    let answer = app.get("/api/v1/nowhere", &shop.token).await;
    assert_eq!((answer.status, answer.code()), (404, "not_found"));
    let wrong_method = app
        .send(Method::DELETE, "/api/v1/orders", Some(&shop.token), None, None)
        .await;
    assert_eq!((wrong_method.status, wrong_method.code()), (405, "method_not_allowed"));
    // An API path's wrong method is answered behind its token: without one, 401 first.
    let without_token = app.send(Method::DELETE, "/api/v1/orders", None, None, None).await;
    assert_eq!((without_token.status, without_token.code()), (401, "unauthorized"));
    let metrics = app.metrics().await;
    for status in [405, 401] {
        let line =
            format!(r#"rescind_http_requests_total{{method="DELETE",route="/api/v1/orders",status="{status}"}} 1"#);
        assert!(metrics.contains(&line), "{line} in {metrics}");
    }
}

async fn a_retry_with_the_same_idempotency_key_replays_the_first_answer(app: TestApp) {
    let shop = app.shop().await;
    let body = order_body(&shop.channel_id, json!({}));
    let first = app
        .send(
            Method::POST,
            "/api/v1/orders",
            Some(&shop.token),
            Some(body.clone()),
            Some("import-1"),
        )
        .await;
    let retry = app
        .send(
            Method::POST,
            "/api/v1/orders",
            Some(&shop.token),
            Some(body),
            Some("import-1"),
        )
        .await;
    assert_eq!((first.status, retry.status), (201, 201));
    assert_eq!(first.body, retry.body, "the stored answer is replayed");
    assert_eq!(
        retry.headers.get("idempotent-replayed").map(|v| v.to_str().unwrap()),
        Some("true")
    );
    let list = app.get("/api/v1/orders", &shop.token).await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        1,
        "the retry imported nothing"
    );

    let id = first.body["id"].as_str().unwrap();
    let path = format!("/api/v1/orders/{id}/cancel");
    let cancel = json!({"refund_method": "store_credit"});
    let cancelled = app
        .send(
            Method::POST,
            &path,
            Some(&shop.token),
            Some(cancel.clone()),
            Some("cancel-1"),
        )
        .await;
    let again = app
        .send(Method::POST, &path, Some(&shop.token), Some(cancel), Some("cancel-1"))
        .await;
    assert_eq!(
        (cancelled.status, again.status),
        (200, 200),
        "a retried cancel answers as the first did, not already_cancelled"
    );
    assert_eq!(cancelled.body["cancellation"]["id"], again.body["cancellation"]["id"]);
    assert_eq!(app.order_now(&shop, id).await["refunds"].as_array().unwrap().len(), 1);

    // Keys belong to one shop: another shop's identical key is a new request.
    let other = app.shop().await;
    let elsewhere = app
        .send(
            Method::POST,
            "/api/v1/orders",
            Some(&other.token),
            Some(order_body(&other.channel_id, json!({}))),
            Some("import-1"),
        )
        .await;
    assert_eq!(elsewhere.status, 201);
    assert_ne!(elsewhere.body["id"], first.body["id"]);
}

async fn the_same_idempotency_key_with_another_body_is_refused(app: TestApp) {
    let shop = app.shop().await;
    let first = app
        .send(
            Method::POST,
            "/api/v1/orders",
            Some(&shop.token),
            Some(order_body(&shop.channel_id, json!({}))),
            Some("k"),
        )
        .await;
    assert_eq!(first.status, 201);
    let other = app
        .send(
            Method::POST,
            "/api/v1/orders",
            Some(&shop.token),
            Some(order_body(&shop.channel_id, json!({"number": "X"}))),
            Some("k"),
        )
        .await;
    assert_eq!((other.status, other.code()), (422, "idempotency_key_reused"));
    let too_long = app
        .send(
            Method::POST,
            "/api/v1/orders",
            Some(&shop.token),
            Some(json!({})),
            Some(&"k".repeat(256)),
        )
        .await;
    assert_eq!(too_long.status, 400);
}
