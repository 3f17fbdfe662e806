//! Simulated sales channels, each speaking its marketplace's wire format (EXTERNAL_APIS.md), with the
//! marketplace's own order statuses and refusals, fault injection per endpoint, and a ledger of the
//! cancels that took effect.
//!
//! Control API: `POST /_sim/{channel}/orders {"id", "status"?, "items"?}` creates an order;
//! `POST /_sim/{channel}/orders/{id}/status {"status"}` moves it (e.g. cancelled in the channel's
//! admin, or shipped).

use crate::faults::Decision;
use crate::Sim;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The marketplaces simulated here, by the name used in URLs, fault endpoints and the ledger.
pub const CHANNELS: [&str; 5] = ["shopify", "rakuten", "yahoo", "amazon", "shoplazza"];

/// An order as a channel sees it.
#[derive(Clone, Debug)]
pub struct ChannelOrder {
    pub id: String,
    /// In the channel's own terms: Rakuten orderProgress `300`, Yahoo! OrderStatus `2`, Amazon
    /// `Unshipped`, Shopify `open`/`fulfilled`/`cancelled`, Shoplazza `opened`/`finished`/`cancelled`.
    pub status: String,
    /// Item codes (Amazon's AmazonOrderItemCode).
    pub items: Vec<String>,
}

/// A cancel that took effect.
#[derive(Clone, Debug)]
pub struct CancelRecord {
    pub order_id: String,
    pub reason: Option<String>,
    pub detail: Option<String>,
    pub idempotency_key: Option<String>,
    /// Other parameters worth checking (Rakuten's inventoryRestoreType, Shopify's refund flag).
    pub parameters: Value,
}

/// A stock push that took effect: each listing's new level (I5).
#[derive(Clone, Debug)]
pub struct StockPush {
    /// `(the channel's listing id, quantity)`.
    pub items: Vec<(String, u64)>,
    pub idempotency_key: Option<String>,
}

/// One simulated marketplace.
#[derive(Debug, Default)]
pub struct Marketplace {
    pub orders: BTreeMap<String, ChannelOrder>,
    pub cancels: Vec<CancelRecord>,
    /// The stock the channel shows, by its listing id.
    pub stock: BTreeMap<String, u64>,
    pub stock_pushes: Vec<StockPush>,
    calls: BTreeMap<String, u64>,
    next_id: u64,
}

impl Marketplace {
    fn default_status(channel: &str) -> &'static str {
        match channel {
            "shopify" => "open",
            "rakuten" => "300",
            "yahoo" => "2",
            "amazon" => "Unshipped",
            _ => "opened",
        }
    }

    pub fn ledger(&self) -> Value {
        json!({
            "orders": self.orders.values().map(|order| json!({"id": order.id, "status": order.status, "items": order.items})).collect::<Vec<_>>(),
            "cancels": self.cancels.iter().map(|cancel| json!({
                "order_id": cancel.order_id, "reason": cancel.reason, "detail": cancel.detail,
                "idempotency_key": cancel.idempotency_key, "parameters": cancel.parameters,
            })).collect::<Vec<_>>(),
            "calls": self.calls,
            "stock": self.stock,
            "stock_pushes": self.stock_pushes.iter().map(|push| json!({
                "items": push.items.iter().map(|(id, quantity)| json!({"id": id, "quantity": quantity})).collect::<Vec<_>>(),
                "idempotency_key": push.idempotency_key,
            })).collect::<Vec<_>>(),
        })
    }

    /// Sets the listings' stock and keeps the push in the ledger.
    fn set_stock(&mut self, items: Vec<(String, u64)>, headers: &HeaderMap) {
        for (id, quantity) in &items {
            self.stock.insert(id.clone(), *quantity);
        }
        self.stock_pushes.push(StockPush {
            items,
            idempotency_key: header(headers, "idempotency-key").map(str::to_owned),
        });
    }
}

/// Amazon's feeds and documents.
#[derive(Debug, Default)]
pub struct Feeds {
    documents: BTreeMap<String, String>,
    feeds: BTreeMap<String, Feed>,
    next_id: u64,
}

#[derive(Debug)]
struct Feed {
    polls: u32,
    report_document: String,
}

pub fn router() -> Router<Sim> {
    Router::new()
        .route("/_sim/{channel}/orders", post(control_create_order))
        .route("/_sim/{channel}/orders/{id}/status", post(control_set_status))
        .route("/admin/api/{version}/graphql.json", post(shopify_graphql))
        .route("/es/2.0/order/{operation}/", post(rakuten))
        .route("/es/2.0/inventories/bulk-upsert", post(rakuten_inventory_upsert))
        .route("/ShoppingWebService/V1/setStock", post(yahoo_set_stock))
        .route("/ShoppingWebService/V1/{operation}", post(yahoo))
        .route("/feeds/2021-06-30/documents", post(amazon_create_document))
        .route("/feeds/2021-06-30/documents/{id}", get(amazon_get_document))
        .route("/feeds/2021-06-30/feeds", post(amazon_create_feed))
        .route("/feeds/2021-06-30/feeds/{id}", get(amazon_get_feed))
        .route("/_amazon/documents/{id}", put(amazon_upload).get(amazon_download))
        .route("/orders/v0/orders/{id}", get(amazon_get_order))
        .route("/openapi/2022-01/orders/{id}/cancel", post(shoplazza_cancel))
        .route("/openapi/2022-01/orders/{id}", get(shoplazza_get_order))
        .route("/openapi/2022-01/variants/{id}", put(shoplazza_update_variant))
}

/// An answer: status, content type, body.
type Answer = (StatusCode, &'static str, String);

fn json_answer(status: StatusCode, body: Value) -> Answer {
    (status, "application/json", body.to_string())
}

fn xml_answer(status: StatusCode, body: String) -> Answer {
    (status, "application/xml; charset=utf-8", body)
}

/// The channel's way of saying "try later" and "no".
fn channel_error(channel: &str, status: StatusCode, message: &str) -> Answer {
    match channel {
        "rakuten" => json_answer(
            status,
            json!({"MessageModelList": [{"messageType": "ERROR", "messageCode": "ORDER_EXT_API_SIM_ERROR", "message": message}]}),
        ),
        "yahoo" => xml_answer(
            status,
            format!("<Error><Message>{message}</Message><Code>sim-error</Code></Error>"),
        ),
        "amazon" => json_answer(
            status,
            json!({"errors": [{"code": "InternalFailure", "message": message}]}),
        ),
        "shoplazza" => json_answer(status, json!({"code": "InvalidParameter", "message": message})),
        _ => json_answer(status, json!({"errors": [{"message": message}]})),
    }
}

/// Runs one channel call: counts it, applies the endpoint's faults, then `effect`.
async fn run(
    sim: &Sim,
    channel: &'static str,
    endpoint: &str,
    authorized: bool,
    effect: impl FnOnce(&mut crate::World) -> Answer,
) -> Response {
    let (decision, latency) = {
        let mut world = sim.world();
        *world.channel(channel).calls.entry(endpoint.to_owned()).or_default() += 1;
        world.faults.decide(&format!("{channel}.{endpoint}"))
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (status, content_type, body) = if !authorized {
        channel_error(channel, StatusCode::UNAUTHORIZED, "authentication failed")
    } else {
        match decision {
            Decision::Error(status) => channel_error(
                channel,
                StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                "the simulator injected an error; nothing was done",
            ),
            Decision::Refuse => channel_error(channel, StatusCode::BAD_REQUEST, "the simulator refused the request"),
            Decision::Proceed | Decision::ApplyThenHang(_) => effect(&mut sim.world()),
        }
    };
    if let Decision::ApplyThenHang(hang) = decision {
        tokio::time::sleep(hang).await;
    }
    (status, [(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
}

fn record(
    market: &mut Marketplace,
    order_id: &str,
    reason: Option<String>,
    detail: Option<String>,
    headers: &HeaderMap,
    parameters: Value,
) {
    market.cancels.push(CancelRecord {
        order_id: order_id.to_owned(),
        reason,
        detail,
        idempotency_key: header(headers, "idempotency-key").map(str::to_owned),
        parameters,
    });
}

#[derive(Debug, Deserialize)]
struct NewOrder {
    id: String,
    status: Option<String>,
    #[serde(default)]
    items: Vec<String>,
}

async fn control_create_order(
    State(sim): State<Sim>,
    Path(channel): Path<String>,
    Json(order): Json<NewOrder>,
) -> Response {
    let Some(channel) = CHANNELS.iter().find(|name| **name == channel) else {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "unknown channel"}))).into_response();
    };
    let status = order
        .status
        .unwrap_or_else(|| Marketplace::default_status(channel).to_owned());
    let created = ChannelOrder {
        id: order.id.clone(),
        status,
        items: order.items,
    };
    sim.world().channel(channel).orders.insert(order.id, created.clone());
    Json(json!({"id": created.id, "status": created.status})).into_response()
}

#[derive(Debug, Deserialize)]
struct NewStatus {
    status: String,
}

async fn control_set_status(
    State(sim): State<Sim>,
    Path((channel, id)): Path<(String, String)>,
    Json(status): Json<NewStatus>,
) -> Response {
    let Some(channel) = CHANNELS.iter().find(|name| **name == channel) else {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "unknown channel"}))).into_response();
    };
    match sim.world().channel(channel).orders.get_mut(&id) {
        Some(order) => {
            order.status = status.status;
            Json(json!({"id": id, "status": order.status})).into_response()
        }
        None => (StatusCode::NOT_FOUND, Json(json!({"error": "no such order"}))).into_response(),
    }
}

// ---- Shopify: Admin GraphQL ----

async fn shopify_graphql(State(sim): State<Sim>, headers: HeaderMap, Json(request): Json<Value>) -> Response {
    let query = request["query"].as_str().unwrap_or_default().to_owned();
    let variables = request["variables"].clone();
    let authorized = header(&headers, "x-shopify-access-token").is_some();
    let endpoint = if query.contains("orderCancel(") {
        "orderCancel"
    } else if query.contains("inventorySetQuantities(") {
        "inventorySetQuantities"
    } else {
        "query"
    };
    run(&sim, "shopify", endpoint, authorized, move |world| {
        let market = world.channel("shopify");
        let order_id = |gid: &Value| gid.as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_owned();
        if query.contains("orderCancel(") {
            let id = order_id(&variables["orderId"]);
            let refusal = match market.orders.get(&id).map(|order| order.status.as_str()) {
                None => Some(("NOT_FOUND", "Order does not exist")),
                Some("cancelled") => Some(("INVALID", "Order has already been cancelled")),
                Some("fulfilled") => Some(("INVALID", "Cannot cancel an order that has been fulfilled")),
                Some(_) => None,
            };
            if let Some((code, message)) = refusal {
                return json_answer(
                    StatusCode::OK,
                    json!({"data": {"orderCancel": {"job": null, "orderCancelUserErrors": [{"field": ["orderId"], "message": message, "code": code}]}}}),
                );
            }
            if let Some(order) = market.orders.get_mut(&id) {
                order.status = "cancelled".to_owned();
            }
            market.next_id += 1;
            let job = format!("gid://shopify/Job/{}", market.next_id);
            record(
                market,
                &id,
                variables["reason"].as_str().map(str::to_owned),
                None,
                &headers,
                json!({"refund": variables["refund"], "restock": variables["restock"], "notifyCustomer": variables["notifyCustomer"], "staffNote": variables["staffNote"]}),
            );
            json_answer(StatusCode::OK, json!({"data": {"orderCancel": {"job": {"id": job, "done": false}, "orderCancelUserErrors": []}}}))
        } else if query.contains("inventorySetQuantities(") {
            let input = &variables["input"];
            if input["name"] != "available" {
                return json_answer(
                    StatusCode::OK,
                    json!({"data": {"inventorySetQuantities": {"inventoryAdjustmentGroup": null, "userErrors": [{"field": ["input", "name"], "message": "The quantity name must be available or on_hand", "code": "INVALID_NAME"}]}}}),
                );
            }
            let items = input["quantities"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|quantity| {
                    (
                        format!("{}@{}", quantity["inventoryItemId"].as_str().unwrap_or_default(), quantity["locationId"].as_str().unwrap_or_default()),
                        quantity["quantity"].as_u64().unwrap_or(0),
                    )
                })
                .collect();
            market.set_stock(items, &headers);
            market.next_id += 1;
            let group = format!("gid://shopify/InventoryAdjustmentGroup/{}", market.next_id);
            json_answer(StatusCode::OK, json!({"data": {"inventorySetQuantities": {"inventoryAdjustmentGroup": {"id": group}, "userErrors": []}}}))
        } else if query.contains("job(") {
            json_answer(StatusCode::OK, json!({"data": {"job": {"id": variables["id"], "done": true}}}))
        } else {
            let id = order_id(&variables["id"]);
            let order = market.orders.get(&id).map(|order| {
                json!({"id": format!("gid://shopify/Order/{id}"), "cancelledAt": (order.status == "cancelled").then_some("2026-01-01T00:00:00Z")})
            });
            json_answer(StatusCode::OK, json!({"data": {"order": order}}))
        }
    })
    .await
}

// ---- Rakuten: RMS Inventory API 2.0 ----

/// `bulk-upsert`: absolute quantities per manageNumber and variantId; 204 on success.
async fn rakuten_inventory_upsert(State(sim): State<Sim>, headers: HeaderMap, Json(request): Json<Value>) -> Response {
    let authorized = header(&headers, "authorization").is_some_and(|value| value.starts_with("ESA "));
    run(&sim, "rakuten", "inventoryBulkUpsert", authorized, move |world| {
        let mut items = Vec::new();
        for inventory in request["inventories"].as_array().into_iter().flatten() {
            let (Some(manage), Some(variant), Some(quantity)) = (
                inventory["manageNumber"].as_str(),
                inventory["variantId"].as_str(),
                inventory["quantity"].as_u64(),
            ) else {
                return json_answer(
                    StatusCode::BAD_REQUEST,
                    json!({"errors": [{"code": "IE0001", "message": "manageNumber, variantId and quantity are required"}]}),
                );
            };
            if inventory["mode"] != "ABSOLUTE" {
                return json_answer(
                    StatusCode::BAD_REQUEST,
                    json!({"errors": [{"code": "IE0002", "message": "only mode ABSOLUTE is simulated"}]}),
                );
            }
            items.push((format!("{manage}:{variant}"), quantity));
        }
        world.channel("rakuten").set_stock(items, &headers);
        (StatusCode::NO_CONTENT, "application/json", String::new())
    })
    .await
}

// ---- Rakuten: RMS RakutenPayOrderAPI ----

/// changeReasonDetailApply values RMS accepts.
const RAKUTEN_REASONS: [i64; 11] = [1, 2, 3, 4, 5, 6, 8, 10, 13, 14, 15];

fn rakuten_message(kind: &str, code: &str, message: &str, order: &str) -> Value {
    json!({"MessageModelList": [{"messageType": kind, "messageCode": code, "message": message, "orderNumber": order}]})
}

async fn rakuten(
    State(sim): State<Sim>,
    Path(operation): Path<String>,
    headers: HeaderMap,
    Json(request): Json<Value>,
) -> Response {
    let authorized = header(&headers, "authorization").is_some_and(|value| value.starts_with("ESA "));
    let endpoint = operation.clone();
    run(&sim, "rakuten", &endpoint, authorized, move |world| {
        let market = world.channel("rakuten");
        match operation.as_str() {
            "cancelOrder" => {
                let number = request["orderNumber"].as_str().unwrap_or_default().to_owned();
                let reason = request["changeReasonDetailApply"].as_i64();
                let Some(order) = market.orders.get_mut(&number) else {
                    return json_answer(
                        StatusCode::BAD_REQUEST,
                        rakuten_message("ERROR", "ORDER_EXT_API_CANCEL_ORDER_ERROR_001", "注文が存在しません。", &number),
                    );
                };
                if !reason.is_some_and(|reason| RAKUTEN_REASONS.contains(&reason)) {
                    return json_answer(
                        StatusCode::BAD_REQUEST,
                        rakuten_message("ERROR", "ORDER_EXT_API_CANCEL_ORDER_ERROR_014", "キャンセル理由が不正です。", &number),
                    );
                }
                if !["100", "200", "300"].contains(&order.status.as_str()) {
                    return json_answer(
                        StatusCode::BAD_REQUEST,
                        rakuten_message(
                            "ERROR",
                            "ORDER_EXT_API_CANCEL_ORDER_ERROR_017",
                            &format!("受注ステータスが{}のため、キャンセル申請できません。", order.status),
                            &number,
                        ),
                    );
                }
                order.status = "900".to_owned();
                record(
                    market,
                    &number,
                    reason.map(|reason| reason.to_string()),
                    None,
                    &headers,
                    json!({"inventoryRestoreType": request["inventoryRestoreType"]}),
                );
                json_answer(
                    StatusCode::OK,
                    rakuten_message("INFO", "ORDER_EXT_API_CANCEL_ORDER_INFO_101", "キャンセル申請を受け付けました。", &number),
                )
            }
            "getOrder" => {
                let orders: Vec<Value> = request["orderNumberList"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|number| market.orders.get(number.as_str().unwrap_or_default()))
                    .map(|order| json!({"orderNumber": order.id, "orderProgress": order.status.parse::<i64>().unwrap_or(0)}))
                    .collect();
                json_answer(
                    StatusCode::OK,
                    json!({"OrderModelList": orders, "MessageModelList": [{"messageType": "INFO", "messageCode": "ORDER_EXT_API_GET_ORDER_INFO_101", "message": "受注情報取得に成功しました。"}]}),
                )
            }
            _ => json_answer(StatusCode::NOT_FOUND, rakuten_message("ERROR", "NOT_FOUND", "no such operation", "")),
        }
    })
    .await
}

// ---- Yahoo!ショッピング ----

/// The text of the first `<tag>…</tag>`.
fn tag(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(
        xml[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

fn yahoo_error(code: &str, message: &str) -> Answer {
    xml_answer(
        StatusCode::BAD_REQUEST,
        format!("<Error><Message>{message}</Message><Code>{code}</Code></Error>"),
    )
}

/// `setStock`: form-encoded `seller_id`, comma-separated `item_code` and `quantity`.
async fn yahoo_set_stock(
    State(sim): State<Sim>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<BTreeMap<String, String>>,
) -> Response {
    let authorized = header(&headers, "authorization").is_some_and(|value| value.starts_with("Bearer "));
    run(&sim, "yahoo", "setStock", authorized, move |world| {
        if form.get("seller_id").is_none_or(|seller| seller.is_empty()) {
            return yahoo_error("st00001", "seller_idが指定されていません。");
        }
        let codes: Vec<&str> = form
            .get("item_code")
            .map(|codes| codes.split(',').collect())
            .unwrap_or_default();
        let quantities: Vec<Option<u64>> = form
            .get("quantity")
            .map(|quantities| quantities.split(',').map(|quantity| quantity.parse().ok()).collect())
            .unwrap_or_default();
        if codes.is_empty() || codes.len() != quantities.len() || quantities.iter().any(Option::is_none) {
            return yahoo_error("st00002", "item_codeとquantityの数が一致しません。");
        }
        let items: Vec<(String, u64)> = codes
            .iter()
            .zip(&quantities)
            .map(|(code, quantity)| ((*code).to_owned(), quantity.unwrap_or(0)))
            .collect();
        let results: String = items
            .iter()
            .map(|(code, quantity)| {
                format!("<Result><ItemCode>{code}</ItemCode><Quantity>{quantity}</Quantity></Result>")
            })
            .collect();
        world.channel("yahoo").set_stock(items.clone(), &headers);
        xml_answer(
            StatusCode::OK,
            format!(
                "<ResultSet totalResultsAvailable=\"{}\">{results}</ResultSet>",
                items.len()
            ),
        )
    })
    .await
}

async fn yahoo(State(sim): State<Sim>, Path(operation): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let authorized = header(&headers, "authorization").is_some_and(|value| value.starts_with("Bearer "));
    let xml = String::from_utf8_lossy(&body).into_owned();
    let endpoint = operation.clone();
    run(&sim, "yahoo", &endpoint, authorized, move |world| {
        let market = world.channel("yahoo");
        let order_id = tag(&xml, "OrderId").unwrap_or_default();
        if tag(&xml, "SellerId").is_none_or(|seller| seller.is_empty()) {
            return yahoo_error("od00001", "SellerIdが指定されていません。");
        }
        let Some(order) = market.orders.get_mut(&order_id) else {
            return yahoo_error("od00002", "該当する注文が存在しません。");
        };
        match operation.as_str() {
            "orderStatusChange" => {
                if tag(&xml, "OrderStatus").as_deref() != Some("4") {
                    return yahoo_error("od00004", "このシミュレーターはキャンセル（4）だけを受け付けます。");
                }
                let reason = tag(&xml, "CancelReason").unwrap_or_default();
                let detail = tag(&xml, "CancelReasonDetail");
                let valid = ["100", "110", "120", "130", "140", "150", "160", "170", "180", "200", "210", "220", "230"];
                if !valid.contains(&reason.as_str()) {
                    return yahoo_error("od90101", "キャンセル理由が不正です。");
                }
                if reason == "230" && !detail.as_ref().is_some_and(|detail| (10..=200).contains(&detail.chars().count())) {
                    return yahoo_error("od90102", "ストア都合：その他の場合、キャンセル理由詳細（10文字以上200文字以内）は必須です。");
                }
                match order.status.as_str() {
                    "4" => return yahoo_error("od90191", "既にキャンセルされた注文のステータスは変更できません。"),
                    "5" => return yahoo_error("od90192", "完了した注文はキャンセルできません。"),
                    _ => {}
                }
                order.status = "4".to_owned();
                record(market, &order_id, Some(reason), detail, &headers, json!({}));
                xml_answer(StatusCode::OK, "<ResultSet totalResultsAvailable=\"1\"><Result><Status>OK</Status></Result></ResultSet>".to_owned())
            }
            "orderInfo" => xml_answer(
                StatusCode::OK,
                format!(
                    "<ResultSet totalResultsAvailable=\"1\"><Result><Status>OK</Status><OrderInfo><OrderId>{}</OrderId><OrderStatus>{}</OrderStatus></OrderInfo></Result></ResultSet>",
                    order.id, order.status
                ),
            ),
            _ => yahoo_error("od00404", "no such operation"),
        }
    })
    .await
}

// ---- Amazon: Feeds API 2021-06-30 and Orders v0 ----

fn amazon_authorized(headers: &HeaderMap) -> bool {
    header(headers, "x-amz-access-token").is_some()
}

fn base_url(headers: &HeaderMap) -> String {
    format!("http://{}", header(headers, "host").unwrap_or("127.0.0.1"))
}

async fn amazon_create_document(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    let base = base_url(&headers);
    run(
        &sim,
        "amazon",
        "createFeedDocument",
        amazon_authorized(&headers),
        move |world| {
            world.feeds.next_id += 1;
            let id = format!("amzn1.tortuga.sim.{}", world.feeds.next_id);
            world.feeds.documents.insert(id.clone(), String::new());
            json_answer(
                StatusCode::CREATED,
                json!({"feedDocumentId": id, "url": format!("{base}/_amazon/documents/{id}")}),
            )
        },
    )
    .await
}

async fn amazon_upload(State(sim): State<Sim>, Path(id): Path<String>, body: Bytes) -> Response {
    let mut world = sim.world();
    match world.feeds.documents.get_mut(&id) {
        Some(document) => {
            *document = String::from_utf8_lossy(&body).into_owned();
            StatusCode::OK.into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn amazon_download(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    match sim.world().feeds.documents.get(&id) {
        Some(document) => ([(axum::http::header::CONTENT_TYPE, "text/xml")], document.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn amazon_get_document(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let base = base_url(&headers);
    run(
        &sim,
        "amazon",
        "getFeedDocument",
        amazon_authorized(&headers),
        move |world| {
            if world.feeds.documents.contains_key(&id) {
                json_answer(
                    StatusCode::OK,
                    json!({"feedDocumentId": id, "url": format!("{base}/_amazon/documents/{id}")}),
                )
            } else {
                channel_error("amazon", StatusCode::NOT_FOUND, "no such document")
            }
        },
    )
    .await
}

/// Processes an order acknowledgement feed at once; its report says per order what happened.
fn process_feed(world: &mut crate::World, document: &str, headers: &HeaderMap) -> String {
    let order_id = tag(document, "AmazonOrderID").unwrap_or_default();
    let status_code = tag(document, "StatusCode").unwrap_or_default();
    let reason = tag(document, "CancelReason");
    let market = world.channel("amazon");
    let failure = match market.orders.get(&order_id).map(|order| order.status.as_str()) {
        _ if status_code != "Failure" => Some((
            "25",
            "Only cancellations (StatusCode Failure) are simulated.".to_owned(),
        )),
        None => Some(("18028", format!("The order ID {order_id} was not found."))),
        Some("Canceled") => Some(("18000", format!("The order {order_id} has already been canceled."))),
        Some("Shipped") => Some((
            "18002",
            format!("The order {order_id} has shipped and cannot be canceled."),
        )),
        Some(_) if reason.is_none() => Some(("18003", "A CancelReason is required.".to_owned())),
        Some(_) => None,
    };
    if failure.is_none() {
        // Items with a Quantity cancel that much of the item and leave the order open; without, the
        // whole order is canceled.
        let items: Vec<Value> = document
            .split("<Item>")
            .skip(1)
            .map(|item| json!({"code": tag(item, "AmazonOrderItemCode"), "quantity": tag(item, "Quantity")}))
            .collect();
        let partial = items.iter().any(|item| !item["quantity"].is_null());
        if let Some(order) = market.orders.get_mut(&order_id) {
            if !partial {
                order.status = "Canceled".to_owned();
            }
        }
        record(
            market,
            &order_id,
            reason,
            None,
            headers,
            json!({"items": items, "partial": partial}),
        );
    }
    let (errors, result) = match failure {
        Some((code, description)) => (
            1,
            format!(
                "<Result><MessageID>1</MessageID><ResultCode>Error</ResultCode><ResultMessageCode>{code}</ResultMessageCode><ResultDescription>{description}</ResultDescription></Result>"
            ),
        ),
        None => (0, String::new()),
    };
    format!(
        "<?xml version=\"1.0\"?><AmazonEnvelope><Header><DocumentVersion>1.02</DocumentVersion></Header><MessageType>ProcessingReport</MessageType><Message><MessageID>1</MessageID><ProcessingReport><StatusCode>Complete</StatusCode><ProcessingSummary><MessagesProcessed>1</MessagesProcessed><MessagesSuccessful>{}</MessagesSuccessful><MessagesWithError>{errors}</MessagesWithError></ProcessingSummary>{result}</ProcessingReport></Message></AmazonEnvelope>",
        1 - errors
    )
}

/// A listings feed's fulfillment_availability patches set the SKUs' stock; the report is JSON.
fn process_listings_feed(world: &mut crate::World, document: &str, headers: &HeaderMap) -> String {
    let feed: Value = serde_json::from_str(document).unwrap_or(Value::Null);
    let mut items = Vec::new();
    let mut issues = Vec::new();
    for message in feed["messages"].as_array().into_iter().flatten() {
        let quantity = message["patches"][0]["value"][0]["quantity"].as_u64();
        match (message["sku"].as_str(), quantity) {
            (Some(sku), Some(quantity)) if message["patches"][0]["path"] == "/attributes/fulfillment_availability" => {
                items.push((sku.to_owned(), quantity));
            }
            _ => issues.push(
                json!({"messageId": message["messageId"], "code": "4000001", "severity": "ERROR",
                                    "message": "sku and a fulfillment_availability quantity are required"}),
            ),
        }
    }
    let accepted = items.len();
    if !items.is_empty() {
        world.channel("amazon").set_stock(items, headers);
    }
    json!({
        "header": {"sellerId": feed["header"]["sellerId"], "version": "2.0", "feedId": "sim"},
        "issues": issues,
        "summary": {"errors": issues.len(), "warnings": 0, "messagesProcessed": accepted + issues.len(), "messagesAccepted": accepted, "messagesInvalid": issues.len()},
    })
    .to_string()
}

async fn amazon_create_feed(State(sim): State<Sim>, headers: HeaderMap, Json(request): Json<Value>) -> Response {
    run(&sim, "amazon", "createFeed", amazon_authorized(&headers), |world| {
        let document_id = request["inputFeedDocumentId"].as_str().unwrap_or_default().to_owned();
        let Some(document) = world.feeds.documents.get(&document_id).cloned() else {
            return channel_error("amazon", StatusCode::BAD_REQUEST, "inputFeedDocumentId does not exist");
        };
        let report = match request["feedType"].as_str() {
            Some("POST_ORDER_ACKNOWLEDGEMENT_DATA") => process_feed(world, &document, &headers),
            Some("JSON_LISTINGS_FEED") => process_listings_feed(world, &document, &headers),
            _ => return channel_error("amazon", StatusCode::BAD_REQUEST, "unsupported feedType"),
        };
        world.feeds.next_id += 1;
        let report_document = format!("amzn1.tortuga.sim.report.{}", world.feeds.next_id);
        world.feeds.documents.insert(report_document.clone(), report);
        let feed_id = format!("{}", 50000 + world.feeds.next_id);
        world.feeds.feeds.insert(
            feed_id.clone(),
            Feed {
                polls: 0,
                report_document,
            },
        );
        json_answer(StatusCode::ACCEPTED, json!({"feedId": feed_id}))
    })
    .await
}

async fn amazon_get_feed(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    run(
        &sim,
        "amazon",
        "getFeed",
        amazon_authorized(&headers),
        move |world| match world.feeds.feeds.get_mut(&id) {
            // A feed is queued, then in progress, then done: rescind must poll.
            Some(feed) => {
                feed.polls += 1;
                let status = match feed.polls {
                    1 => "IN_QUEUE",
                    2 => "IN_PROGRESS",
                    _ => "DONE",
                };
                let mut body =
                    json!({"feedId": id, "feedType": "POST_ORDER_ACKNOWLEDGEMENT_DATA", "processingStatus": status});
                if status == "DONE" {
                    body["resultFeedDocumentId"] = json!(feed.report_document);
                }
                json_answer(StatusCode::OK, body)
            }
            None => channel_error("amazon", StatusCode::NOT_FOUND, "no such feed"),
        },
    )
    .await
}

async fn amazon_get_order(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    run(
        &sim,
        "amazon",
        "getOrder",
        amazon_authorized(&headers),
        move |world| match world.channel("amazon").orders.get(&id) {
            Some(order) => json_answer(
                StatusCode::OK,
                json!({"payload": {"AmazonOrderId": order.id, "OrderStatus": order.status}}),
            ),
            None => channel_error("amazon", StatusCode::NOT_FOUND, "order not found"),
        },
    )
    .await
}

// ---- Shoplazza ----

/// A variant's `inventory_quantity`.
async fn shoplazza_update_variant(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    run(
        &sim,
        "shoplazza",
        "updateVariant",
        header(&headers, "access-token").is_some(),
        move |world| {
            let Some(quantity) = request["variant"]["inventory_quantity"].as_u64() else {
                return json_answer(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({"code": "InvalidParameter", "message": "variant.inventory_quantity is required"}),
                );
            };
            world
                .channel("shoplazza")
                .set_stock(vec![(id.clone(), quantity)], &headers);
            json_answer(
                StatusCode::OK,
                json!({"variant": {"id": id, "inventory_quantity": quantity}}),
            )
        },
    )
    .await
}

async fn shoplazza_cancel(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
    run(
        &sim,
        "shoplazza",
        "cancel",
        header(&headers, "access-token").is_some(),
        move |world| {
            let market = world.channel("shoplazza");
            let refusal = match market.orders.get(&id).map(|order| order.status.as_str()) {
                None => Some((StatusCode::NOT_FOUND, "order not found")),
                Some("cancelled") => Some((StatusCode::UNPROCESSABLE_ENTITY, "order has already been cancelled")),
                Some("finished") => Some((StatusCode::UNPROCESSABLE_ENTITY, "a finished order cannot be cancelled")),
                Some(_) => None,
            };
            if let Some((status, message)) = refusal {
                return json_answer(status, json!({"code": "InvalidParameter", "message": message}));
            }
            if let Some(order) = market.orders.get_mut(&id) {
                order.status = "cancelled".to_owned();
            }
            record(
                market,
                &id,
                request["reason"].as_str().map(str::to_owned),
                None,
                &headers,
                json!({}),
            );
            json_answer(StatusCode::OK, json!({"order": {"id": id, "status": "cancelled"}}))
        },
    )
    .await
}

async fn shoplazza_get_order(State(sim): State<Sim>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    run(
        &sim,
        "shoplazza",
        "getOrder",
        header(&headers, "access-token").is_some(),
        move |world| match world.channel("shoplazza").orders.get(&id) {
            Some(order) => json_answer(
                StatusCode::OK,
                json!({"order": {"id": order.id, "status": order.status}}),
            ),
            None => json_answer(
                StatusCode::NOT_FOUND,
                json!({"code": "NotFound", "message": "order not found"}),
            ),
        },
    )
    .await
}
