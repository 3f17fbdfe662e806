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
}

crate::named_enum! {
    /// The payment providers rescind speaks to.
    pub enum PaymentProviderKind {
        Stripe => "stripe",
    }
}
