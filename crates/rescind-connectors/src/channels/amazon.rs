//! Amazon SP-API: a cancel is an order acknowledgement feed with StatusCode Failure and a
//! CancelReason per item, sent through the Feeds API 2021-06-30 (create a document, upload it, create
//! the feed, poll its processing status, read the processing report). Orders v0 tells an order's
//! status. Authenticated by `x-amz-access-token`.

use super::ListingLevel;
use crate::encoding::{xml_escape, xml_value};
use crate::{credential, send, transient_if_server_error, CallError};
use rescind_domain::ChannelCall;
use serde_json::{json, Value};
use std::time::Duration;

const FEED_TYPE: &str = "POST_ORDER_ACKNOWLEDGEMENT_DATA";
const LISTINGS_FEED_TYPE: &str = "JSON_LISTINGS_FEED";
/// How often the feed's processing status is read before the outcome counts as unknown (the next
/// attempt then looks the order up).
const FEED_POLLS_MAX: u32 = 30;
const FEED_POLL_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Clone, Debug)]
pub struct Amazon {
    http: reqwest::Client,
    base_url: String,
    access_token: String,
    merchant_id: String,
    marketplace_id: String,
}

impl Amazon {
    pub fn new(http: reqwest::Client, base_url: String, credentials: Option<&str>) -> Result<Self, CallError> {
        Ok(Amazon {
            http,
            base_url,
            access_token: credential(credentials, "access_token", "Amazon")?,
            merchant_id: credential(credentials, "merchant_id", "Amazon")?,
            marketplace_id: credential(credentials, "marketplace_id", "Amazon")?,
        })
    }

    /// Sends a request with the access token; answers the JSON body, classifying Amazon's errors.
    async fn call(&self, request: reqwest::RequestBuilder) -> Result<Value, CallError> {
        let (status, body) = send(request.header("x-amz-access-token", &self.access_token)).await?;
        let detail = || {
            let parsed: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            parsed["errors"][0]["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| body.chars().take(300).collect())
        };
        if let Some(error) = transient_if_server_error(status, "Amazon", &detail()) {
            return Err(error);
        }
        if !status.is_success() {
            return Err(CallError::Refused {
                message: format!("Amazon answered {}: {}", status.as_u16(), detail()),
            });
        }
        if body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&body).map_err(|error| CallError::Unknown {
            message: format!("unexpected answer from Amazon: {error}"),
        })
    }

    fn feed_xml(&self, call: &ChannelCall) -> String {
        let reason = call.reason_code.as_deref().unwrap_or("GeneralAdjustment");
        // A partial cancel (B1) names the items and the quantity of each that is cancelled.
        let items: String = call
            .lines
            .iter()
            .filter_map(|line| Some((line.channel_line_item_id.as_deref()?, line.quantity)))
            .map(|(code, quantity)| {
                let quantity = if call.partial {
                    format!("<Quantity>{quantity}</Quantity>")
                } else {
                    String::new()
                };
                format!(
                    "<Item><AmazonOrderItemCode>{}</AmazonOrderItemCode><CancelReason>{}</CancelReason>{quantity}</Item>",
                    xml_escape(code),
                    xml_escape(reason)
                )
            })
            .collect();
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><AmazonEnvelope xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
             xsi:noNamespaceSchemaLocation=\"amzn-envelope.xsd\"><Header><DocumentVersion>1.01</DocumentVersion>\
             <MerchantIdentifier>{}</MerchantIdentifier></Header><MessageType>OrderAcknowledgement</MessageType>\
             <Message><MessageID>1</MessageID><OrderAcknowledgement><AmazonOrderID>{}</AmazonOrderID>\
             <StatusCode>Failure</StatusCode>{items}</OrderAcknowledgement></Message></AmazonEnvelope>",
            xml_escape(&self.merchant_id),
            xml_escape(&call.channel_order_id)
        )
    }

    pub async fn cancel(&self, call: &ChannelCall) -> Result<String, CallError> {
        let feed_id = self
            .submit_feed(
                FEED_TYPE,
                "text/xml; charset=UTF-8",
                self.feed_xml(call),
                &call.idempotency_key,
            )
            .await?;
        Ok(format!("Amazon processed the cancellation feed {feed_id}"))
    }

    /// A JSON_LISTINGS_FEED that replaces each listing's `fulfillment_availability` quantity (I5).
    pub async fn push_stock(&self, levels: &[ListingLevel], idempotency_key: &str) -> Result<String, CallError> {
        let messages: Vec<Value> = levels
            .iter()
            .enumerate()
            .map(|(index, level)| {
                json!({
                    "messageId": index + 1, "sku": level.external_id, "operationType": "PATCH", "productType": "PRODUCT",
                    "patches": [{"op": "replace", "path": "/attributes/fulfillment_availability",
                                 "value": [{"fulfillment_channel_code": "DEFAULT", "quantity": level.available}]}],
                })
            })
            .collect();
        let feed = json!({
            "header": {"sellerId": self.merchant_id, "version": "2.0", "issueLocale": "ja_JP"},
            "messages": messages,
        });
        let feed_id = self
            .submit_feed(
                LISTINGS_FEED_TYPE,
                "application/json; charset=UTF-8",
                feed.to_string(),
                idempotency_key,
            )
            .await?;
        Ok(format!(
            "Amazon processed the listings feed {feed_id} ({} SKUs)",
            levels.len()
        ))
    }

    /// Creates a feed document, uploads `content`, creates the feed and waits for its processing report;
    /// answers the feed id once the report shows no error.
    async fn submit_feed(
        &self,
        feed_type: &str,
        content_type: &str,
        content: String,
        idempotency_key: &str,
    ) -> Result<String, CallError> {
        let feeds = format!("{}/feeds/2021-06-30", self.base_url);
        let document = self
            .call(
                self.http
                    .post(format!("{feeds}/documents"))
                    .header("Idempotency-Key", idempotency_key)
                    .json(&json!({"contentType": content_type})),
            )
            .await?;
        let (Some(document_id), Some(upload_url)) = (document["feedDocumentId"].as_str(), document["url"].as_str())
        else {
            return Err(CallError::Unknown {
                message: "Amazon's feed document has no id or url".to_owned(),
            });
        };
        let (status, body) = send(
            self.http
                .put(upload_url)
                .header("Content-Type", content_type)
                .body(content),
        )
        .await?;
        if !status.is_success() {
            return Err(CallError::Transient {
                message: format!("uploading the feed failed ({}): {body}", status.as_u16()),
            });
        }
        let feed = self
            .call(self.http.post(format!("{feeds}/feeds")).header("Idempotency-Key", idempotency_key).json(&json!({
                "feedType": feed_type, "marketplaceIds": [self.marketplace_id], "inputFeedDocumentId": document_id,
            })))
            .await?;
        let feed_id = feed["feedId"]
            .as_str()
            .ok_or_else(|| CallError::Unknown {
                message: "Amazon's feed has no feedId".to_owned(),
            })?
            .to_owned();
        for _ in 0..FEED_POLLS_MAX {
            let state = self.call(self.http.get(format!("{feeds}/feeds/{feed_id}"))).await?;
            match state["processingStatus"].as_str().unwrap_or_default() {
                "DONE" => {
                    self.read_report(&feeds, &feed_id, state["resultFeedDocumentId"].as_str())
                        .await?;
                    return Ok(feed_id);
                }
                "CANCELLED" | "FATAL" => {
                    return Err(CallError::Refused {
                        message: format!(
                            "Amazon's feed {feed_id} ended {}",
                            state["processingStatus"].as_str().unwrap_or_default()
                        ),
                    })
                }
                _ => tokio::time::sleep(FEED_POLL_INTERVAL).await,
            }
        }
        Err(CallError::Unknown {
            message: format!("Amazon's feed {feed_id} is still being processed"),
        })
    }

    /// Reads the processing report (XML for order feeds, JSON for listings feeds): any error refuses.
    async fn read_report(&self, feeds: &str, feed_id: &str, report_id: Option<&str>) -> Result<(), CallError> {
        let report_id = report_id.ok_or_else(|| CallError::Unknown {
            message: format!("feed {feed_id} has no report"),
        })?;
        let document = self
            .call(self.http.get(format!("{feeds}/documents/{report_id}")))
            .await?;
        let url = document["url"].as_str().ok_or_else(|| CallError::Unknown {
            message: "the report has no url".to_owned(),
        })?;
        let (status, report) = send(self.http.get(url)).await?;
        if !status.is_success() {
            return Err(CallError::Transient {
                message: format!("reading the report failed ({})", status.as_u16()),
            });
        }
        if report.trim_start().starts_with('{') {
            let parsed: Value = serde_json::from_str(&report).unwrap_or(Value::Null);
            let errors = parsed["summary"]["errors"].as_u64().unwrap_or(0);
            if errors > 0 {
                return Err(CallError::Refused {
                    message: format!(
                        "Amazon's listings feed {feed_id} had {errors} errors: {}",
                        parsed["issues"][0]["message"]
                            .as_str()
                            .unwrap_or("see the processing report")
                    ),
                });
            }
            return Ok(());
        }
        let with_error: u32 = xml_value(&report, "MessagesWithError")
            .and_then(|count| count.parse().ok())
            .unwrap_or(0);
        if with_error > 0 {
            let code = xml_value(&report, "ResultMessageCode").unwrap_or_default();
            let description =
                xml_value(&report, "ResultDescription").unwrap_or_else(|| "the order was not cancelled".to_owned());
            return Err(CallError::Refused {
                message: format!("{code}: {description}"),
            });
        }
        Ok(())
    }

    pub async fn is_cancelled(&self, order_id: &str) -> Result<bool, CallError> {
        let order = self
            .call(self.http.get(format!("{}/orders/v0/orders/{order_id}", self.base_url)))
            .await?;
        Ok(order["payload"]["OrderStatus"] == "Canceled")
    }
}
