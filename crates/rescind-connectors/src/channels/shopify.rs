//! Shopify's Admin GraphQL API: `orderCancel` with reason, refund, restock, notifyCustomer and
//! staffNote, authenticated by `X-Shopify-Access-Token`; the cancel runs as a Job that is polled.

use super::ListingLevel;
use crate::{credential, send, transient_if_server_error, CallError};
use rescind_domain::ChannelCall;
use serde_json::{json, Value};
use std::time::Duration;

/// The Admin API version rescind speaks.
pub const API_VERSION: &str = "2025-01";
/// How often the cancel's Job is looked at before the cancel counts as accepted anyway.
const JOB_POLLS_MAX: u32 = 5;
const JOB_POLL_INTERVAL: Duration = Duration::from_millis(100);

const ORDER_CANCEL: &str = "mutation orderCancel($orderId: ID!, $reason: OrderCancelReason!, $refund: Boolean!, \
$restock: Boolean!, $notifyCustomer: Boolean, $staffNote: String) { orderCancel(orderId: $orderId, reason: $reason, \
refund: $refund, restock: $restock, notifyCustomer: $notifyCustomer, staffNote: $staffNote) { job { id done } \
orderCancelUserErrors { field message code } } }";
const JOB: &str = "query job($id: ID!) { job(id: $id) { id done } }";
const INVENTORY_SET_QUANTITIES: &str = "mutation inventorySetQuantities($input: InventorySetQuantitiesInput!) { \
inventorySetQuantities(input: $input) { inventoryAdjustmentGroup { id } userErrors { field message code } } }";
const ORDER: &str = "query order($id: ID!) { order(id: $id) { id cancelledAt } }";

#[derive(Clone, Debug)]
pub struct Shopify {
    http: reqwest::Client,
    endpoint: String,
    access_token: String,
}

/// Shopify order ids are global ids; a bare number is turned into one.
fn order_gid(channel_order_id: &str) -> String {
    if channel_order_id.starts_with("gid://") {
        channel_order_id.to_owned()
    } else {
        format!("gid://shopify/Order/{channel_order_id}")
    }
}

/// A mutation's user errors are Shopify's business no: nothing happened.
fn refuse_on_user_errors(errors: &Value) -> Result<(), CallError> {
    match errors.as_array().filter(|errors| !errors.is_empty()) {
        Some(errors) => Err(CallError::Refused {
            message: errors
                .iter()
                .filter_map(|error| error["message"].as_str())
                .collect::<Vec<_>>()
                .join("; "),
        }),
        None => Ok(()),
    }
}

impl Shopify {
    pub fn new(http: reqwest::Client, base_url: String, credentials: Option<&str>) -> Result<Self, CallError> {
        Ok(Shopify {
            http,
            endpoint: format!("{base_url}/admin/api/{API_VERSION}/graphql.json"),
            access_token: credential(credentials, "access_token", "Shopify")?,
        })
    }

    async fn graphql(&self, query: &str, variables: Value, idempotency_key: Option<&str>) -> Result<Value, CallError> {
        let mut request = self
            .http
            .post(&self.endpoint)
            .header("X-Shopify-Access-Token", &self.access_token)
            .json(&json!({"query": query, "variables": variables}));
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let (status, body) = send(request).await?;
        if let Some(error) = transient_if_server_error(status, "Shopify", &body) {
            return Err(error);
        }
        if !status.is_success() {
            return Err(CallError::Refused {
                message: format!("Shopify answered {}: {body}", status.as_u16()),
            });
        }
        let answer: Value = serde_json::from_str(&body).map_err(|error| CallError::Unknown {
            message: format!("unexpected answer from Shopify: {error}"),
        })?;
        if let Some(errors) = answer
            .get("errors")
            .and_then(Value::as_array)
            .filter(|errors| !errors.is_empty())
        {
            // GraphQL-level errors (throttling, internal) did nothing.
            return Err(CallError::Transient {
                message: format!("Shopify: {}", errors[0]["message"].as_str().unwrap_or("error")),
            });
        }
        Ok(answer["data"].clone())
    }

    pub async fn cancel(&self, call: &ChannelCall) -> Result<String, CallError> {
        let reason = call.reason_code.clone().unwrap_or_else(|| "OTHER".to_owned());
        let data = self
            .graphql(
                ORDER_CANCEL,
                json!({
                    "orderId": order_gid(&call.channel_order_id), "reason": reason, "refund": call.refund_at_channel,
                    "restock": call.restock_at_channel, "notifyCustomer": call.notify_customer, "staffNote": call.staff_note,
                }),
                Some(&call.idempotency_key),
            )
            .await?;
        let result = &data["orderCancel"];
        refuse_on_user_errors(&result["orderCancelUserErrors"])?;
        let job_id = result["job"]["id"].as_str().unwrap_or_default().to_owned();
        let mut done = result["job"]["done"].as_bool().unwrap_or(false);
        // The Job is looked at once at once (it is often done by then), then at intervals.
        for poll in 0..JOB_POLLS_MAX {
            if done || job_id.is_empty() {
                break;
            }
            if poll > 0 {
                tokio::time::sleep(JOB_POLL_INTERVAL).await;
            }
            done = self.graphql(JOB, json!({"id": job_id}), None).await?["job"]["done"]
                .as_bool()
                .unwrap_or(false);
        }
        Ok(if done {
            format!("Shopify cancelled the order (job {job_id} done)")
        } else {
            format!("Shopify accepted the cancel (job {job_id} still running)")
        })
    }

    /// `inventorySetQuantities` of the `available` quantity at each listing's location (I5).
    pub async fn push_stock(&self, levels: &[ListingLevel], idempotency_key: &str) -> Result<String, CallError> {
        let mut quantities = Vec::new();
        for level in levels {
            let location = level.location_id.as_deref().ok_or_else(|| CallError::Misconfigured {
                message: format!("the Shopify listing of {} has no location_id", level.sku),
            })?;
            quantities.push(
                json!({"inventoryItemId": level.external_id, "locationId": location, "quantity": level.available}),
            );
        }
        let data = self
            .graphql(
                INVENTORY_SET_QUANTITIES,
                json!({"input": {"name": "available", "reason": "correction", "ignoreCompareQuantity": true, "quantities": quantities}}),
                Some(idempotency_key),
            )
            .await?;
        let result = &data["inventorySetQuantities"];
        refuse_on_user_errors(&result["userErrors"])?;
        Ok(format!(
            "Shopify set {} quantities (adjustment group {})",
            levels.len(),
            result["inventoryAdjustmentGroup"]["id"].as_str().unwrap_or("?")
        ))
    }

    pub async fn is_cancelled(&self, channel_order_id: &str) -> Result<bool, CallError> {
        let data = self
            .graphql(ORDER, json!({"id": order_gid(channel_order_id)}), None)
            .await?;
        if data["order"].is_null() {
            return Err(CallError::Refused {
                message: format!("Shopify has no order {channel_order_id}"),
            });
        }
        Ok(!data["order"]["cancelledAt"].is_null())
    }
}
