//! Yahoo!ショッピング's store API: `orderStatusChange` to OrderStatus 4 with a CancelReason, and
//! `orderInfo` for the order's status; XML both ways, `Authorization: Bearer`.

use super::ListingLevel;
use crate::encoding::{xml_escape, xml_value};
use crate::{credential, send, transient_if_server_error, CallError};
use rescind_domain::ChannelCall;

/// OrderStatus 4: キャンセル.
const CANCELLED_STATUS: &str = "4";

#[derive(Clone, Debug)]
pub struct Yahoo {
    http: reqwest::Client,
    base_url: String,
    access_token: String,
    seller_id: String,
}

impl Yahoo {
    pub fn new(http: reqwest::Client, base_url: String, credentials: Option<&str>) -> Result<Self, CallError> {
        Ok(Yahoo {
            http,
            base_url,
            access_token: credential(credentials, "access_token", "Yahoo!")?,
            seller_id: credential(credentials, "seller_id", "Yahoo!")?,
        })
    }

    async fn post(&self, operation: &str, xml: String, idempotency_key: Option<&str>) -> Result<String, CallError> {
        let mut request = self
            .http
            .post(format!("{}/ShoppingWebService/V1/{operation}", self.base_url))
            .bearer_auth(&self.access_token)
            .header("Content-Type", "application/xml; charset=utf-8")
            .body(xml);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let (status, body) = send(request).await?;
        let error = || {
            let code = xml_value(&body, "Code").unwrap_or_default();
            let message = xml_value(&body, "Message").unwrap_or_else(|| body.chars().take(300).collect());
            if code.is_empty() {
                message
            } else {
                format!("{code}: {message}")
            }
        };
        if let Some(transient) = transient_if_server_error(status, "Yahoo!", &error()) {
            return Err(transient);
        }
        if !status.is_success() || xml_value(&body, "Status").is_some_and(|status| status != "OK") {
            return Err(CallError::Refused { message: error() });
        }
        Ok(body)
    }

    /// `setStock` (I5): the item codes and their quantities, comma-separated, form-encoded.
    pub async fn push_stock(&self, levels: &[ListingLevel], idempotency_key: &str) -> Result<String, CallError> {
        let join = |values: Vec<String>| values.join(",");
        let form = [
            ("seller_id", self.seller_id.clone()),
            (
                "item_code",
                join(levels.iter().map(|level| level.external_id.clone()).collect()),
            ),
            (
                "quantity",
                join(levels.iter().map(|level| level.available.to_string()).collect()),
            ),
        ];
        let request = self
            .http
            .post(format!("{}/ShoppingWebService/V1/setStock", self.base_url))
            .bearer_auth(&self.access_token)
            .header("Idempotency-Key", idempotency_key)
            .form(&form);
        let (status, body) = send(request).await?;
        let error = || xml_value(&body, "Message").unwrap_or_else(|| body.chars().take(300).collect());
        if let Some(transient) = transient_if_server_error(status, "Yahoo!", &error()) {
            return Err(transient);
        }
        if !status.is_success() {
            return Err(CallError::Refused { message: error() });
        }
        Ok(format!("Yahoo! set the stock of {} items", levels.len()))
    }

    pub async fn cancel(&self, call: &ChannelCall) -> Result<String, CallError> {
        let reason = call.reason_code.as_deref().unwrap_or_default();
        // The reason detail travels with the reason; Yahoo! requires it for 230 (store: other).
        let detail = call
            .reason_detail
            .as_deref()
            .map(|detail| format!("<CancelReasonDetail>{}</CancelReasonDetail>", xml_escape(detail)))
            .unwrap_or_default();
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Req><Target><OrderId>{}</OrderId><IsPointFix>true</IsPointFix>\
             <OperationUser>rescind</OperationUser></Target><Order><OrderStatus>{CANCELLED_STATUS}</OrderStatus>\
             <CancelReason>{}</CancelReason>{detail}</Order><SellerId>{}</SellerId></Req>",
            xml_escape(&call.channel_order_id),
            xml_escape(reason),
            xml_escape(&self.seller_id)
        );
        self.post("orderStatusChange", xml, Some(&call.idempotency_key)).await?;
        Ok(format!(
            "Yahoo! set order {} to status 4 (cancelled), reason {reason}",
            call.channel_order_id
        ))
    }

    pub async fn is_cancelled(&self, order_id: &str) -> Result<bool, CallError> {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Req><Target><OrderId>{}</OrderId><Field>OrderStatus</Field>\
             </Target><SellerId>{}</SellerId></Req>",
            xml_escape(order_id),
            xml_escape(&self.seller_id)
        );
        let body = self.post("orderInfo", xml, None).await.map_err(|error| match error {
            CallError::Refused { message } => CallError::Transient { message },
            other => other,
        })?;
        Ok(xml_value(&body, "OrderStatus").as_deref() == Some(CANCELLED_STATUS))
    }
}
