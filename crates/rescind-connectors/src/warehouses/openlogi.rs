//! OpenLogi API v1.5 (EXTERNAL_APIS.md): outbound requests ("shipments") — create, read, update
//! before confirmation, delete before confirmation, and after confirmation a cancel or modification
//! request with a fee. `Authorization: Bearer` and `X-Api-Version: 1.5`; errors as
//! `{"error", "error_description"}`; a 60-a-minute limit answered with 429 (requests are paced and
//! retried, never dropped); and a POST answered with 5xx may still have taken effect, so a failed
//! create is looked up by its identifier before anyone tries again.

use super::pacing::{pacer_for, Pacer};
use crate::{credential, CallError};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

pub const API_VERSION: &str = "1.5";
/// OpenLogi's published limit.
pub const RATE_LIMIT_PER_MINUTE: u32 = 60;
/// How often one request waits out a 429 before giving up for now (the workflow retries later).
const RATE_LIMITED_RETRIES_MAX: u32 = 20;
/// The wait after a 429 that names none.
const RATE_LIMIT_PAUSE_DEFAULT: Duration = Duration::from_secs(1);

/// The recipient of an outbound request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    pub name: String,
    pub postcode: String,
    pub prefecture: String,
    pub address1: String,
    pub address2: Option<String>,
    pub phone: Option<String>,
}

impl Recipient {
    fn json(&self) -> Value {
        let mut recipient = json!({"name": self.name, "postcode": self.postcode, "prefecture": self.prefecture, "address1": self.address1});
        if let Some(address2) = &self.address2 {
            recipient["address2"] = json!(address2);
        }
        if let Some(phone) = &self.phone {
            recipient["phone"] = json!(phone);
        }
        recipient
    }
}

/// An outbound request to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewShipment {
    /// rescind's id for it (the order id): how a lost answer is found again.
    pub identifier: String,
    pub order_no: String,
    pub recipient: Recipient,
    /// Product codes and quantities.
    pub items: Vec<(String, u32)>,
}

/// An outbound request as OpenLogi reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shipment {
    pub id: String,
    pub identifier: Option<String>,
    /// backordered, allocating, waiting, working, picking, picked, packed, shipped, suspended,
    /// modify_request, cancel_request.
    pub status: String,
    /// The fee of a cancel or modification request, in yen.
    pub fee: Option<i64>,
}

impl Shipment {
    fn from_json(value: &Value) -> Result<Shipment, CallError> {
        Ok(Shipment {
            id: value["id"]
                .as_str()
                .ok_or_else(|| CallError::Unknown {
                    message: "OpenLogi's shipment has no id".to_owned(),
                })?
                .to_owned(),
            identifier: value["identifier"].as_str().map(str::to_owned),
            status: value["status"].as_str().unwrap_or_default().to_owned(),
            fee: value["fee"].as_i64(),
        })
    }
}

/// An OpenLogi account.
#[derive(Clone, Debug)]
pub struct OpenLogi {
    http: reqwest::Client,
    base_url: String,
    access_token: String,
    account_id: Option<String>,
    pacer: Arc<Pacer>,
}

impl OpenLogi {
    /// `rate_limit`: requests per `window` (OpenLogi: 60 a minute).
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        credentials: Option<&str>,
        rate_limit: u32,
        window: Duration,
    ) -> Result<Self, CallError> {
        let access_token = credential(credentials, "access_token", "OpenLogi")?;
        let account_id = credential(credentials, "account_id", "OpenLogi").ok();
        let base_url = base_url.trim_end_matches('/').to_owned();
        let pacer = pacer_for(&format!("openlogi|{base_url}|{access_token}"), rate_limit, window);
        Ok(OpenLogi {
            http,
            base_url,
            access_token,
            account_id,
            pacer,
        })
    }

    /// One API call, paced; a 429 pushes every later call back and this one is tried again.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, CallError> {
        for _ in 0..RATE_LIMITED_RETRIES_MAX {
            self.pacer.wait_turn().await;
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.base_url))
                .bearer_auth(&self.access_token)
                .header("X-Api-Version", API_VERSION);
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(key) = idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
            let response = request
                .send()
                .await
                .map_err(|error| CallError::from_transport(&error))?;
            let status = response.status();
            if status.as_u16() == 429 {
                let pause = response
                    .headers()
                    .get("retry-after")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<f64>().ok())
                    .map_or(RATE_LIMIT_PAUSE_DEFAULT, Duration::from_secs_f64);
                self.pacer.back_off(pause).await;
                continue;
            }
            let text = response.text().await.map_err(|error| CallError::Unknown {
                message: error.to_string(),
            })?;
            let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let detail = match (parsed["error"].as_str(), parsed["error_description"].as_str()) {
                (Some(error), Some(description)) => format!("{error}: {description}"),
                _ => text.chars().take(300).collect(),
            };
            if status.is_server_error() {
                // A POST answered with 5xx may have taken effect.
                return Err(if method == reqwest::Method::GET {
                    CallError::Transient {
                        message: format!("OpenLogi answered {}: {detail}", status.as_u16()),
                    }
                } else {
                    CallError::Unknown {
                        message: format!("OpenLogi answered {}: {detail}", status.as_u16()),
                    }
                });
            }
            if !status.is_success() {
                return Err(CallError::Refused {
                    message: format!("OpenLogi answered {}: {detail}", status.as_u16()),
                });
            }
            return Ok(parsed);
        }
        Err(CallError::Transient {
            message: "OpenLogi kept answering 429 Too Many Requests".to_owned(),
        })
    }

    /// Creates the outbound request; a create whose answer was lost is found by its identifier.
    pub async fn create(&self, shipment: &NewShipment, idempotency_key: &str) -> Result<Shipment, CallError> {
        let body = json!({
            "identifier": shipment.identifier,
            "order_no": shipment.order_no,
            "recipient": shipment.recipient.json(),
            "items": shipment.items.iter().map(|(code, quantity)| json!({"code": code, "quantity": quantity})).collect::<Vec<_>>(),
        });
        match self
            .call(reqwest::Method::POST, "/shipments", Some(&body), Some(idempotency_key))
            .await
        {
            Ok(created) => Shipment::from_json(&created),
            Err(CallError::Unknown { message } | CallError::Transient { message }) => {
                match self.find_by_identifier(&shipment.identifier).await? {
                    Some(existing) => Ok(existing),
                    None => Err(CallError::Transient { message }),
                }
            }
            Err(other) => Err(other),
        }
    }

    pub async fn get(&self, id: &str) -> Result<Shipment, CallError> {
        Shipment::from_json(
            &self
                .call(reqwest::Method::GET, &format!("/shipments/{id}"), None, None)
                .await?,
        )
    }

    /// The outbound request rescind created under `identifier`, if any.
    pub async fn find_by_identifier(&self, identifier: &str) -> Result<Option<Shipment>, CallError> {
        let account = self.account_id.as_deref().unwrap_or("-");
        match self
            .call(
                reqwest::Method::GET,
                &format!("/shipments/{account}/{identifier}"),
                None,
                None,
            )
            .await
        {
            Ok(found) => Shipment::from_json(&found).map(Some),
            Err(CallError::Refused { message }) if message.contains(" 404") => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Deletes an outbound request before confirmation (F2); refused once picking has begun.
    pub async fn delete(&self, id: &str, idempotency_key: &str) -> Result<(), CallError> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/shipments/{id}"),
            None,
            Some(idempotency_key),
        )
        .await
        .map(|_| ())
    }

    /// Asks the warehouse to cancel an outbound request it is working on (C4); costs a fee.
    pub async fn request_cancel(&self, id: &str, idempotency_key: &str) -> Result<Shipment, CallError> {
        Shipment::from_json(
            &self
                .call(
                    reqwest::Method::POST,
                    &format!("/shipments/{id}/cancel"),
                    Some(&json!({})),
                    Some(idempotency_key),
                )
                .await?,
        )
    }

    /// Changes the recipient before confirmation (F4). Items are never sent.
    pub async fn update_recipient(
        &self,
        id: &str,
        recipient: &Recipient,
        idempotency_key: &str,
    ) -> Result<Shipment, CallError> {
        self.send_recipient(
            reqwest::Method::PUT,
            &format!("/shipments/{id}"),
            recipient,
            idempotency_key,
        )
        .await
    }

    /// Asks for a recipient change after confirmation (F4); costs a fee. Items are never sent.
    pub async fn request_modification(
        &self,
        id: &str,
        recipient: &Recipient,
        idempotency_key: &str,
    ) -> Result<Shipment, CallError> {
        self.send_recipient(
            reqwest::Method::POST,
            &format!("/shipments/{id}/modify"),
            recipient,
            idempotency_key,
        )
        .await
    }

    /// Sends a recipient, and nothing else, to `path`.
    async fn send_recipient(
        &self,
        method: reqwest::Method,
        path: &str,
        recipient: &Recipient,
        idempotency_key: &str,
    ) -> Result<Shipment, CallError> {
        let body = json!({"recipient": recipient.json()});
        Shipment::from_json(&self.call(method, path, Some(&body), Some(idempotency_key)).await?)
    }
}
