//! Rakuten RMS RakutenPayOrderAPI: `cancelOrder` with `changeReasonDetailApply`, `getOrder` for the
//! order's progress, the ESA authorization, and answers as a `MessageModelList`.

use super::ListingLevel;
use crate::encoding::base64;
use crate::{credential, send, transient_if_server_error, CallError};
use rescind_domain::ChannelCall;
use serde_json::{json, Value};

/// orderProgress values meaning the order is cancelled (800 waiting for confirmation, 900 confirmed).
const CANCELLED_PROGRESS: [i64; 2] = [800, 900];
/// getOrder takes at most this many order numbers at once.
const GET_ORDER_BATCH_MAX: usize = 100;
/// The getOrder answer version rescind reads.
const GET_ORDER_VERSION: i64 = 7;

#[derive(Clone, Debug)]
pub struct Rakuten {
    http: reqwest::Client,
    base_url: String,
    authorization: String,
}

/// The messages of an answer, `code: message` each, or the body when it has none.
fn messages(body: &str, kind: &str) -> String {
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let texts: Vec<String> = parsed["MessageModelList"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter(|message| message["messageType"] == kind)
                .map(|message| {
                    format!(
                        "{}: {}",
                        message["messageCode"].as_str().unwrap_or("?"),
                        message["message"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if texts.is_empty() {
        body.chars().take(300).collect()
    } else {
        texts.join("; ")
    }
}

impl Rakuten {
    pub fn new(http: reqwest::Client, base_url: String, credentials: Option<&str>) -> Result<Self, CallError> {
        let secret = credential(credentials, "service_secret", "Rakuten")?;
        let license = credential(credentials, "license_key", "Rakuten")?;
        Ok(Rakuten {
            http,
            base_url,
            authorization: format!("ESA {}", base64(format!("{secret}:{license}").as_bytes())),
        })
    }

    async fn post(&self, operation: &str, body: Value, idempotency_key: Option<&str>) -> Result<String, CallError> {
        self.post_to(&format!("order/{operation}/"), body, idempotency_key)
            .await
    }

    async fn post_to(&self, path: &str, body: Value, idempotency_key: Option<&str>) -> Result<String, CallError> {
        let mut request = self
            .http
            .post(format!("{}/es/2.0/{path}", self.base_url))
            .header("Authorization", &self.authorization)
            .header("Content-Type", "application/json; charset=utf-8")
            .json(&body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let (status, body) = send(request).await?;
        if let Some(error) = transient_if_server_error(status, "Rakuten", &messages(&body, "ERROR")) {
            return Err(error);
        }
        if !status.is_success() {
            return Err(CallError::Refused {
                message: messages(&body, "ERROR"),
            });
        }
        Ok(body)
    }

    pub async fn cancel(&self, call: &ChannelCall) -> Result<String, CallError> {
        let reason: i64 = call
            .reason_code
            .as_deref()
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| CallError::Refused {
                message: "Rakuten needs a numeric changeReasonDetailApply".to_owned(),
            })?;
        let body = self
            .post(
                "cancelOrder",
                json!({
                    "orderNumber": call.channel_order_id,
                    // 1 restores Rakuten's stock, 2 leaves it to rescind's own restock.
                    "inventoryRestoreType": if call.restock_at_channel { 1 } else { 2 },
                    "changeReasonDetailApply": reason,
                }),
                Some(&call.idempotency_key),
            )
            .await?;
        Ok(messages(&body, "INFO"))
    }

    /// The inventory API's `bulk-upsert` with absolute quantities (I5): the listing's manageNumber, and
    /// the SKU as its variantId.
    pub async fn push_stock(&self, levels: &[ListingLevel], idempotency_key: &str) -> Result<String, CallError> {
        let inventories: Vec<Value> = levels
            .iter()
            .map(|level| {
                json!({"manageNumber": level.external_id, "variantId": level.sku, "mode": "ABSOLUTE", "quantity": level.available})
            })
            .collect();
        self.post_to(
            "inventories/bulk-upsert",
            json!({"inventories": inventories}),
            Some(idempotency_key),
        )
        .await?;
        Ok(format!("Rakuten upserted {} inventories", levels.len()))
    }

    /// Of `order_numbers`, those whose orderProgress is cancelled (getOrder, in batches of 100).
    pub async fn cancelled_among(&self, order_numbers: &[String]) -> Result<Vec<String>, CallError> {
        let mut cancelled = Vec::new();
        for batch in order_numbers.chunks(GET_ORDER_BATCH_MAX) {
            let body = self
                .post(
                    "getOrder",
                    json!({"orderNumberList": batch, "version": GET_ORDER_VERSION}),
                    None,
                )
                .await?;
            let parsed: Value = serde_json::from_str(&body).map_err(|error| CallError::Unknown {
                message: format!("unexpected getOrder answer: {error}"),
            })?;
            for order in parsed["OrderModelList"].as_array().into_iter().flatten() {
                if order["orderProgress"]
                    .as_i64()
                    .is_some_and(|progress| CANCELLED_PROGRESS.contains(&progress))
                {
                    cancelled.extend(order["orderNumber"].as_str().map(str::to_owned));
                }
            }
        }
        Ok(cancelled)
    }
}
