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

impl StockMove {
    /// The moves that take each SKU of `lines` out of stock (a deduction at import, an undo's).
    pub fn take_out(lines: &[(String, u32)], kind: StockMoveKind, reason: &str) -> Vec<StockMove> {
        lines
            .iter()
            .map(|(sku, quantity)| StockMove {
                sku: sku.clone(),
                delta: -i64::from(*quantity),
                kind,
                reason: Some(reason.to_owned()),
            })
            .collect()
    }
}

/// `TEA-001 × 2, CUP-002 × 1`.
pub fn describe_stock(lines: &[(String, u32)]) -> String {
    lines
        .iter()
        .map(|(sku, quantity)| format!("{sku} × {quantity}"))
        .collect::<Vec<_>>()
        .join(", ")
}
