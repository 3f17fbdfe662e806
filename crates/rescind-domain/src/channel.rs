//! Sales channels (PRODUCT.md §6) as far as the decisions need them.

crate::named_enum! {
    /// Where an order was placed (H1).
    pub enum ChannelKind {
        OwnStore => "own_store",
        Shopify => "shopify",
        Rakuten => "rakuten",
        Yahoo => "yahoo",
        Amazon => "amazon",
        Shoplazza => "shoplazza",
    }
}

impl ChannelKind {
    /// Whether a cancel must first be made at the channel through its API (C3). Only the merchant's
    /// own store is cancelled natively.
    pub const fn requires_channel_cancel(self) -> bool {
        match self {
            ChannelKind::OwnStore => false,
            ChannelKind::Shopify
            | ChannelKind::Rakuten
            | ChannelKind::Yahoo
            | ChannelKind::Amazon
            | ChannelKind::Shoplazza => true,
        }
    }

    /// Whether the channel's cancel API can take some lines of an order and leave the rest (B1):
    /// Amazon's acknowledgement feed cancels item by item; Rakuten's cancelOrder, Yahoo!'s
    /// orderStatusChange, Shopify's orderCancel and Shoplazza's cancel take the whole order.
    pub const fn cancels_lines(self) -> bool {
        match self {
            ChannelKind::OwnStore | ChannelKind::Amazon => true,
            ChannelKind::Shopify | ChannelKind::Rakuten | ChannelKind::Yahoo | ChannelKind::Shoplazza => false,
        }
    }
}

crate::named_enum! {
    /// The payment providers rescind speaks to.
    pub enum PaymentProviderKind {
        Stripe => "stripe",
    }
}
