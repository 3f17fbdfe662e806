//! Cancel reasons per channel (PRODUCT.md H2): each channel's own codes, grouped by whose fault it is,
//! with Japanese and English labels, and the checks a reason must pass before the channel is called.

use crate::channel::ChannelKind;

crate::named_enum! {
    /// Whose fault the cancellation is (お客様都合 / 店舗都合).
    pub enum ReasonGroup {
        Customer => "customer",
        Store => "store",
    }
}

/// One reason of a channel's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CancelReason {
    /// The channel's own code: Rakuten `4`, Yahoo! `230`, Amazon `NoInventory`, Shopify `CUSTOMER`.
    pub code: &'static str,
    pub label_en: &'static str,
    pub label_ja: &'static str,
    pub group: ReasonGroup,
    /// A reason detail must be given with this code.
    pub detail_required: bool,
}

const fn reason(
    code: &'static str,
    label_en: &'static str,
    label_ja: &'static str,
    group: ReasonGroup,
) -> CancelReason {
    CancelReason {
        code,
        label_en,
        label_ja,
        group,
        detail_required: false,
    }
}

use ReasonGroup::{Customer, Store};

const OWN_STORE: &[CancelReason] = &[
    reason("customer", "Customer request", "お客様都合", Customer),
    reason("duplicate", "Duplicate order", "重複注文", Customer),
    reason("unpaid", "Not paid", "未入金", Customer),
    reason("out_of_stock", "Out of stock", "欠品", Store),
    reason("fraud", "Suspected fraud", "不正注文の疑い", Store),
    reason("other", "Other", "その他", Store),
];

/// changeReasonDetailApply of RakutenPayOrderAPI `cancelOrder`.
const RAKUTEN: &[CancelReason] = &[
    reason("1", "Cancel", "キャンセル", Customer),
    reason("2", "Return after receipt", "受取後の返品", Customer),
    reason("3", "Refused after a long absence", "長期不在による受取拒否", Customer),
    reason("4", "Not paid", "未入金", Customer),
    reason("5", "Cash on delivery refused", "代引決済の受取拒否", Customer),
    reason("6", "Other", "その他", Customer),
    reason("8", "Out of stock", "欠品", Store),
    reason("10", "Other", "その他", Store),
    reason("13", "Shipping delay", "発送遅延", Store),
    reason("14", "Customer or delivery caution", "顧客・配送対応注意表示", Store),
    reason("15", "Return (damaged or wrong item)", "返品（破損・品間違い）", Store),
];

/// CancelReason of Yahoo!ショッピング `orderStatusChange`.
const YAHOO: &[CancelReason] = &[
    reason("100", "Cancel", "キャンセル", Customer),
    reason("110", "Return", "返品", Customer),
    reason("120", "Not paid", "未入金", Customer),
    reason("130", "Unknown address", "住所不明", Customer),
    reason("140", "Delivery refused", "受け取り拒否", Customer),
    reason("150", "Unreachable", "連絡不通", Customer),
    reason("160", "Duplicate order", "重複注文", Customer),
    reason("170", "Payment screening failed", "決済審査不可", Customer),
    reason("180", "Other", "その他", Customer),
    reason("200", "Payment method", "決済方法都合", Store),
    reason("210", "Out of stock", "欠品", Store),
    reason("220", "Discontinued", "販売中止", Store),
    CancelReason {
        code: "230",
        label_en: "Other",
        label_ja: "その他",
        group: Store,
        detail_required: true,
    },
];

/// CancelReason of Amazon's order acknowledgement feed.
const AMAZON: &[CancelReason] = &[
    reason("BuyerCanceled", "Buyer canceled", "購入者都合のキャンセル", Customer),
    reason("CustomerExchange", "Customer exchange", "お客様による交換", Customer),
    reason("CustomerReturn", "Customer return", "お客様による返品", Customer),
    reason(
        "MerchandiseNotReceived",
        "Merchandise not received",
        "商品未着",
        Customer,
    ),
    reason("NoInventory", "No inventory", "在庫切れ", Store),
    reason(
        "ShippingAddressUndeliverable",
        "Shipping address undeliverable",
        "配送先に配達できない",
        Store,
    ),
    reason("GeneralAdjustment", "General adjustment", "一般的な調整", Store),
    reason(
        "CarrierCreditDecision",
        "Carrier credit decision",
        "配送業者の与信判断",
        Store,
    ),
    reason(
        "RiskAssessmentInformationNotValid",
        "Risk assessment information not valid",
        "リスク評価情報が無効",
        Store,
    ),
    reason(
        "CarrierCoverageFailure",
        "Carrier coverage failure",
        "配送対象外",
        Store,
    ),
];

/// OrderCancelReason of Shopify's Admin GraphQL API.
const SHOPIFY: &[CancelReason] = &[
    reason(
        "CUSTOMER",
        "The customer wanted to cancel the order",
        "お客様都合",
        Customer,
    ),
    reason("DECLINED", "Payment was declined", "決済が承認されなかった", Customer),
    reason("FRAUD", "The order was fraudulent", "不正注文", Store),
    reason("INVENTORY", "There was insufficient inventory", "在庫不足", Store),
    reason("STAFF", "Staff made an error", "スタッフのミス", Store),
    reason("OTHER", "Other", "その他", Store),
];

/// Shoplazza takes a free-text reason only.
const SHOPLAZZA: &[CancelReason] = &[];

/// The shortest and longest Yahoo! reason detail (seed 002: 10 to 200 characters).
pub const YAHOO_REASON_DETAIL_LENGTH: std::ops::RangeInclusive<usize> = 10..=200;

/// The reasons of a channel.
pub fn cancel_reasons(kind: ChannelKind) -> &'static [CancelReason] {
    match kind {
        ChannelKind::OwnStore => OWN_STORE,
        ChannelKind::Rakuten => RAKUTEN,
        ChannelKind::Yahoo => YAHOO,
        ChannelKind::Amazon => AMAZON,
        ChannelKind::Shopify => SHOPIFY,
        ChannelKind::Shoplazza => SHOPLAZZA,
    }
}

/// Whether the channel's cancel call needs a reason code.
pub const fn reason_code_required(kind: ChannelKind) -> bool {
    match kind {
        ChannelKind::Rakuten | ChannelKind::Yahoo | ChannelKind::Amazon | ChannelKind::Shopify => true,
        ChannelKind::OwnStore | ChannelKind::Shoplazza => false,
    }
}

/// Checks a reason code and detail against the channel (H2); one entry per problem.
pub fn check_reason(kind: ChannelKind, code: Option<&str>, detail: Option<&str>) -> Result<(), Vec<String>> {
    let reasons = cancel_reasons(kind);
    let valid_codes = || reasons.iter().map(|reason| reason.code).collect::<Vec<_>>().join(", ");
    let mut problems = Vec::new();
    let chosen = match code {
        None if reason_code_required(kind) => {
            problems.push(format!(
                "reason_code: {kind} needs one of its reason codes: {}",
                valid_codes()
            ));
            None
        }
        None => None,
        Some(code) if reasons.is_empty() => {
            problems.push(format!(
                "reason_code: {kind} takes no reason code (`{code}` given); send a free-text reason"
            ));
            None
        }
        Some(code) => match reasons.iter().find(|reason| reason.code == code) {
            Some(reason) => Some(reason),
            None => {
                problems.push(format!(
                    "reason_code: `{code}` is not a {kind} reason; valid codes: {}",
                    valid_codes()
                ));
                None
            }
        },
    };
    if kind == ChannelKind::Yahoo {
        let length = detail.map(|detail| detail.chars().count());
        match (chosen, length) {
            (Some(reason), None) if reason.detail_required => problems.push(format!(
                "reason_detail: is required with yahoo reason {} ({}), {} to {} characters",
                reason.code,
                reason.label_en,
                YAHOO_REASON_DETAIL_LENGTH.start(),
                YAHOO_REASON_DETAIL_LENGTH.end()
            )),
            (_, Some(length)) if !YAHOO_REASON_DETAIL_LENGTH.contains(&length) => problems.push(format!(
                "reason_detail: has {length} characters; yahoo takes {} to {}",
                YAHOO_REASON_DETAIL_LENGTH.start(),
                YAHOO_REASON_DETAIL_LENGTH.end()
            )),
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_marketplace_needs_one_of_its_own_codes() {
        assert!(check_reason(ChannelKind::Rakuten, Some("8"), None).is_ok());
        let missing = check_reason(ChannelKind::Rakuten, None, None).unwrap_err();
        assert!(
            missing[0].contains("1, 2, 3, 4, 5, 6, 8, 10, 13, 14, 15"),
            "{missing:?}"
        );
        assert!(check_reason(ChannelKind::Rakuten, Some("NoInventory"), None).is_err());
        assert!(check_reason(ChannelKind::Amazon, Some("NoInventory"), None).is_ok());
        assert!(check_reason(ChannelKind::Shopify, Some("CUSTOMER"), None).is_ok());
        assert!(check_reason(ChannelKind::Shoplazza, None, None).is_ok());
        assert!(check_reason(ChannelKind::Shoplazza, Some("CUSTOMER"), None).is_err());
        assert!(check_reason(ChannelKind::OwnStore, None, None).is_ok());
    }

    #[test]
    fn yahoo_details_run_from_10_to_200_characters_and_store_other_needs_one() {
        assert!(check_reason(ChannelKind::Yahoo, Some("230"), None).is_err());
        assert!(check_reason(ChannelKind::Yahoo, Some("230"), Some(&"あ".repeat(9))).is_err());
        assert!(check_reason(ChannelKind::Yahoo, Some("230"), Some(&"あ".repeat(10))).is_ok());
        assert!(check_reason(ChannelKind::Yahoo, Some("230"), Some(&"あ".repeat(200))).is_ok());
        assert!(check_reason(ChannelKind::Yahoo, Some("210"), Some(&"あ".repeat(201))).is_err());
        assert!(check_reason(ChannelKind::Yahoo, Some("210"), None).is_ok());
    }
}
