//! Shoplazza's Open API: `POST /openapi/2022-01/orders/{id}/cancel` with an optional reason, and the
//! order itself for its status; authenticated by `Access-Token`.

use super::ListingLevel;
use crate::{credential, send, transient_if_server_error, CallError};
use rescind_domain::ChannelCall;
use serde_json::{json, Value};

#[derive(Clone, Debug)]
pub struct Shoplazza {
    http: reqwest::Client,
    base_url: String,
    access_token: String,
}

fn error_message(body: &str) -> String {
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    match (parsed["code"].as_str(), parsed["message"].as_str()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        _ => body.chars().take(300).collect(),
    }
}

impl Shoplazza {
    pub fn new(http: reqwest::Client, base_url: String, credentials: Option<&str>) -> Result<Self, CallError> {
        Ok(Shoplazza {
            http,
            base_url,
            access_token: credential(credentials, "access_token", "Shoplazza")?,
        })
    }

    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Value, CallError> {
        let (status, body) = send(request.header("Access-Token", &self.access_token)).await?;
        if let Some(error) = transient_if_server_error(status, "Shoplazza", &error_message(&body)) {
            return Err(error);
        }
        if !status.is_success() {
            return Err(CallError::Refused {
                message: error_message(&body),
            });
        }
        serde_json::from_str(&body).map_err(|error| CallError::Unknown {
            message: format!("unexpected answer from Shoplazza: {error}"),
        })
    }

    /// The variant's `inventory_quantity`, one variant per call (I5).
    pub async fn push_stock(&self, levels: &[ListingLevel], idempotency_key: &str) -> Result<String, CallError> {
        for level in levels {
            self.call(
                self.http
                    .put(format!(
                        "{}/openapi/2022-01/variants/{}",
                        self.base_url, level.external_id
                    ))
                    .header("Idempotency-Key", format!("{idempotency_key}-{}", level.sku))
                    .json(&json!({"variant": {"inventory_quantity": level.available}})),
            )
            .await?;
        }
        Ok(format!("Shoplazza set {} variants", levels.len()))
    }

    pub async fn cancel(&self, call: &ChannelCall) -> Result<String, CallError> {
        let mut body = json!({});
        if let Some(reason) = &call.reason {
            body["reason"] = json!(reason);
        }
        self.call(
            self.http
                .post(format!(
                    "{}/openapi/2022-01/orders/{}/cancel",
                    self.base_url, call.channel_order_id
                ))
                .header("Idempotency-Key", &call.idempotency_key)
                .json(&body),
        )
        .await?;
        Ok(format!("Shoplazza cancelled order {}", call.channel_order_id))
    }

    pub async fn is_cancelled(&self, order_id: &str) -> Result<bool, CallError> {
        let answer = self
            .call(
                self.http
                    .get(format!("{}/openapi/2022-01/orders/{order_id}", self.base_url)),
            )
            .await?;
        Ok(answer["order"]["status"] == "cancelled")
    }
}
