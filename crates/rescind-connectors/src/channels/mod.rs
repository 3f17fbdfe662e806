//! Sales channels: one module per marketplace, each the only place that knows its wire format.
//! A cancel that the channel refuses is checked against the order's state there: an order the
//! channel already shows as cancelled counts as cancelled (a lost answer, or a cancel made in the
//! channel's admin), so retries never fail on their own earlier success.

pub mod amazon;
pub mod rakuten;
pub mod shopify;
pub mod shoplazza;
pub mod yahoo;

use crate::CallError;
use rescind_domain::{ChannelCall, ChannelKind};

/// The most SKUs one stock push sends at once (Shopify's inventorySetQuantities takes 250; the
/// others take more).
pub const STOCK_PUSH_BATCH_MAX: usize = 250;

/// One SKU's level for one listing at a channel (I5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListingLevel {
    pub sku: String,
    /// The channel's id of what it sells: Shopify's inventory item, Rakuten's manageNumber, Yahoo!'s
    /// item code, Amazon's seller SKU, Shoplazza's variant.
    pub external_id: String,
    /// Where the stock is (Shopify's location).
    pub location_id: Option<String>,
    /// Never below zero: a channel is told "none left", not a debt.
    pub available: u32,
}

/// A sales channel integration, ready to call.
#[derive(Clone, Debug)]
pub enum ChannelConnector {
    Shopify(shopify::Shopify),
    Rakuten(rakuten::Rakuten),
    Yahoo(yahoo::Yahoo),
    Amazon(amazon::Amazon),
    Shoplazza(shoplazza::Shoplazza),
}

impl ChannelConnector {
    /// Builds the connector of a channel from its stored settings.
    pub fn new(
        kind: ChannelKind,
        base_url: Option<&str>,
        credentials: Option<&str>,
        http: reqwest::Client,
    ) -> Result<ChannelConnector, CallError> {
        let base_url = base_url
            .map(|url| url.trim_end_matches('/').to_owned())
            .ok_or_else(|| CallError::Misconfigured {
                message: format!("the {kind} channel has no base_url"),
            })?;
        Ok(match kind {
            ChannelKind::Shopify => ChannelConnector::Shopify(shopify::Shopify::new(http, base_url, credentials)?),
            ChannelKind::Rakuten => ChannelConnector::Rakuten(rakuten::Rakuten::new(http, base_url, credentials)?),
            ChannelKind::Yahoo => ChannelConnector::Yahoo(yahoo::Yahoo::new(http, base_url, credentials)?),
            ChannelKind::Amazon => ChannelConnector::Amazon(amazon::Amazon::new(http, base_url, credentials)?),
            ChannelKind::Shoplazza => {
                ChannelConnector::Shoplazza(shoplazza::Shoplazza::new(http, base_url, credentials)?)
            }
            ChannelKind::OwnStore => {
                return Err(CallError::Misconfigured {
                    message: "the own store has no channel API to call".to_owned(),
                })
            }
        })
    }

    /// Whether the channel shows the order as cancelled.
    pub async fn is_cancelled(&self, channel_order_id: &str) -> Result<bool, CallError> {
        match self {
            ChannelConnector::Shopify(channel) => channel.is_cancelled(channel_order_id).await,
            ChannelConnector::Rakuten(channel) => Ok(channel
                .cancelled_among(&[channel_order_id.to_owned()])
                .await?
                .contains(&channel_order_id.to_owned())),
            ChannelConnector::Yahoo(channel) => channel.is_cancelled(channel_order_id).await,
            ChannelConnector::Amazon(channel) => channel.is_cancelled(channel_order_id).await,
            ChannelConnector::Shoplazza(channel) => channel.is_cancelled(channel_order_id).await,
        }
    }

    /// Of `channel_order_ids`, those the channel shows as cancelled (H3's poll).
    pub async fn cancelled_among(&self, channel_order_ids: &[String]) -> Result<Vec<String>, CallError> {
        if let ChannelConnector::Rakuten(channel) = self {
            return channel.cancelled_among(channel_order_ids).await;
        }
        let mut cancelled = Vec::new();
        for id in channel_order_ids {
            if self.is_cancelled(id).await? {
                cancelled.push(id.clone());
            }
        }
        Ok(cancelled)
    }

    /// Sets the channel's stock of each listing to its level (I5), through the channel's inventory API;
    /// absolute levels, so a repeated push changes nothing. Returns what the channel answered.
    pub async fn push_stock(&self, levels: &[ListingLevel], idempotency_key: &str) -> Result<String, CallError> {
        match self {
            ChannelConnector::Shopify(channel) => channel.push_stock(levels, idempotency_key).await,
            ChannelConnector::Rakuten(channel) => channel.push_stock(levels, idempotency_key).await,
            ChannelConnector::Yahoo(channel) => channel.push_stock(levels, idempotency_key).await,
            ChannelConnector::Amazon(channel) => channel.push_stock(levels, idempotency_key).await,
            ChannelConnector::Shoplazza(channel) => channel.push_stock(levels, idempotency_key).await,
        }
    }

    /// Cancels the order at the channel (C3); returns what the channel answered.
    pub async fn cancel(&self, call: &ChannelCall) -> Result<String, CallError> {
        if call.earlier_attempts && self.is_cancelled(&call.channel_order_id).await? {
            return Ok(format!("already cancelled at {}", call.kind));
        }
        let sent = match self {
            ChannelConnector::Shopify(channel) => channel.cancel(call).await,
            ChannelConnector::Rakuten(channel) => channel.cancel(call).await,
            ChannelConnector::Yahoo(channel) => channel.cancel(call).await,
            ChannelConnector::Amazon(channel) => channel.cancel(call).await,
            ChannelConnector::Shoplazza(channel) => channel.cancel(call).await,
        };
        match sent {
            Err(CallError::Refused { message }) => match self.is_cancelled(&call.channel_order_id).await {
                Ok(true) => Ok(format!("already cancelled at {} ({message})", call.kind)),
                _ => Err(CallError::Refused { message }),
            },
            other => other,
        }
    }
}
