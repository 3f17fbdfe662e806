//! Stock per SKU (PRODUCT.md §8): the movements a decision asks the store to make.

crate::named_enum! {
    /// Why stock moved; every movement is kept in the stock ledger.
    pub enum StockMoveKind {
        /// Taken out at import (I1).
        Deduction => "deduction",
        /// Put back on cancel (I2, I3).
        Restock => "restock",
        /// Changed by hand (I4).
        Adjustment => "adjustment",
        /// Set by hand to a level.
        Set => "set",
        /// Taken out again by an undo (U2).
        Undo => "undo",
    }
}

/// A change of one SKU's stock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockMove {
    pub sku: String,
    pub delta: i64,
    pub kind: StockMoveKind,
    pub reason: Option<String>,
}
