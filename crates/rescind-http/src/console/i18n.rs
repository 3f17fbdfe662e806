//! The console's words in Japanese and English (shared/GLOSSARY.md gives the Japanese), and the
//! labels of every value the API names. Each label is written once, both languages side by side; a
//! label missing in one language does not compile.

use rescind_domain::{
    CancellationStatus, ChannelKind, FinancialStatus, FulfillmentStatus, OrderStatus, OutboundStatus, RefundMethod,
    RequestStatus, RequestedBy, StepKind, StepStatus, SyncKind, Warning,
};

/// The console's language: chosen by the `rescind_lang` cookie, else by `Accept-Language`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Ja,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ja => "ja",
            Lang::En => "en",
        }
    }

    pub fn parse(code: &str) -> Option<Lang> {
        match code {
            "ja" => Some(Lang::Ja),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The language an `Accept-Language` header prefers most among Japanese and English; Japanese
    /// when it names neither, since most of the console's users are Japanese merchants.
    pub fn from_accept_language(header: Option<&str>) -> Lang {
        let Some(header) = header else {
            return Lang::Ja;
        };
        let mut best: Option<(Lang, f32)> = None;
        for part in header.split(',') {
            let mut pieces = part.split(';');
            let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let weight = pieces
                .filter_map(|piece| piece.trim().strip_prefix("q="))
                .filter_map(|q| q.parse::<f32>().ok())
                .next()
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or("");
            let Some(lang) = Lang::parse(primary) else {
                continue;
            };
            if weight > 0.0 && best.is_none_or(|(_, best_weight)| weight > best_weight) {
                best = Some((lang, weight));
            }
        }
        best.map_or(Lang::Ja, |(lang, _)| lang)
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::Ja => &JA,
            Lang::En => &EN,
        }
    }
}

macro_rules! texts {
    ($($name:ident: $ja:literal / $en:literal,)+) => {
        /// Every fixed word of the console in one language.
        #[derive(Debug)]
        pub struct Texts {
            pub lang: Lang,
            $(pub $name: &'static str,)+
        }

        static JA: Texts = Texts { lang: Lang::Ja, $($name: $ja,)+ };
        static EN: Texts = Texts { lang: Lang::En, $($name: $en,)+ };
    };
}

texts! {
    product: "rescind 注文キャンセル" / "rescind order cancellation",
    skip_to_content: "本文へ移動" / "Skip to content",
    nav_orders: "注文" / "Orders",
    nav_requests: "キャンセル要求" / "Cancellation requests",
    nav_attention: "要対応" / "Needs attention",
    nav_sync_history: "連携履歴" / "Sync history",
    nav_inventory: "在庫" / "Inventory",
    sign_in: "ログイン" / "Sign in",
    sign_in_intro: "ショップのAPIトークンでログインします。" / "Sign in with your shop's API token.",
    sign_out: "ログアウト" / "Sign out",
    token: "APIトークン" / "API token",
    sign_in_failed: "このトークンは使えません。" / "This token is not valid.",
    session_expired: "セッションの有効期限が切れました。もう一度ログインしてください。" / "Your session has ended. Please sign in again.",
    csrf_failed: "フォームの有効期限が切れました。もう一度お試しください。" / "This form has expired. Please try again.",
    language: "言語" / "Language",
    filter: "絞り込み" / "Filter",
    reset: "リセット" / "Reset",
    search_number: "注文番号・お客様で検索" / "Search by order number or customer",
    all: "すべて" / "All",
    status: "ステータス" / "Status",
    order_status: "注文ステータス" / "Order status",
    shipment_status: "出荷ステータス" / "Shipment status",
    payment_status: "支払いステータス" / "Payment status",
    cancellation_status: "キャンセル状況" / "Cancellation status",
    channel: "販売チャネル" / "Channel",
    number: "注文番号" / "Order number",
    channel_order_id: "チャネル注文番号" / "Channel order id",
    customer: "お客様" / "Customer",
    total: "合計" / "Total",
    created_at: "注文日時" / "Ordered at",
    select: "選択" / "Select",
    select_all: "すべて選択" / "Select all",
    cancel_selected: "選択した注文をキャンセル" / "Cancel the selected orders",
    nothing_selected: "注文を選択してください。" / "Select at least one order.",
    no_orders: "該当する注文はありません。" / "No orders match.",
    next_page: "次のページ" / "Next page",
    first_page: "最初のページ" / "First page",
    cancel_dialog: "キャンセル申請" / "Cancel orders",
    orders_selected: "件の注文を選択中" / "orders selected",
    reason: "キャンセル理由" / "Reason",
    reason_text: "理由（自由記述）" / "Reason (free text)",
    reason_code: "キャンセル理由（チャネル）" / "Reason at the channel",
    reason_group_customer: "お客様都合" / "Customer's reason",
    reason_group_store: "店舗都合" / "Store's reason",
    reason_none: "選択してください" / "Choose a reason",
    reason_detail: "キャンセル理由詳細" / "Reason detail",
    reason_detail_hint: "Yahoo!ショッピングで「ストア都合：その他」のときは10〜200文字で必須です。" / "Required for Yahoo! \"store: other\": 10 to 200 characters.",
    reason_detail_invalid: "キャンセル理由詳細は10〜200文字で入力してください。" / "The reason detail must be 10 to 200 characters.",
    reason_code_missing: "この販売チャネルのキャンセル理由を選択してください。" / "Choose this channel's cancel reason.",
    refund_method: "返金方法" / "Refund method",
    refund_method_default: "支払い方法どおり" / "The way the customer paid",
    restock: "在庫を戻す" / "Restock",
    notify_customer: "お客様に通知する" / "Notify the customer",
    staff_note: "スタッフメモ" / "Staff note",
    preview: "内容を確認（ドライラン）" / "Preview (dry run)",
    preview_title: "実行内容の確認" / "What will happen",
    preview_more: "件はプレビューを省略しました" / "more orders not previewed",
    refund_amount: "返金額" / "Refund",
    fee: "費用" / "Fee",
    steps: "処理" / "Steps",
    restock_lines: "在庫戻し" / "Restock",
    warnings: "注意" / "Warnings",
    submit_cancel: "キャンセルを実行" / "Cancel now",
    back: "戻る" / "Back",
    result_title: "キャンセル申請 実行結果" / "Cancellation results",
    result_ok: "成功" / "Done",
    result_failed: "失敗" / "Failed",
    result_summary_ok: "件成功" / "succeeded",
    result_summary_failed: "件失敗" / "failed",
    message_channel: "モール" / "Channel",
    message_warehouse: "倉庫" / "Warehouse",
    message_restock: "在庫戻し" / "Restock",
    message_other: "その他" / "Other",
    back_to_orders: "注文一覧へ" / "Back to orders",
    order_detail: "注文詳細" / "Order",
    line_items: "商品" / "Line items",
    sku: "SKU" / "SKU",
    title: "商品名" / "Title",
    quantity: "数量" / "Quantity",
    cancelled_quantity: "キャンセル済数量" / "Cancelled",
    price: "単価" / "Price",
    cancel_quantity: "キャンセルする数量" / "Quantity to cancel",
    sub_total: "小計" / "Subtotal",
    shipping: "送料" / "Shipping",
    tax: "税" / "Tax",
    discount: "割引" / "Discount",
    paid: "支払済" / "Paid",
    refunded: "返金済" / "Refunded",
    shipping_address: "配送先" / "Shipping address",
    outbound: "出庫依頼" / "Outbound request",
    outbound_none: "出庫依頼はありません。" / "No outbound request.",
    cancellation: "キャンセル" / "Cancellation",
    no_cancellation: "キャンセルはありません。" / "Not cancelled.",
    requested_by: "依頼元" / "Requested by",
    attempts: "試行回数" / "Attempts",
    last_error: "最後のエラー" / "Last error",
    message: "メッセージ" / "Message",
    updated_at: "更新日時" / "Updated at",
    history: "履歴" / "History",
    at: "日時" / "At",
    kind: "種別" / "Kind",
    actor: "実行者" / "By",
    actions: "操作" / "Actions",
    cancel_order: "この注文をキャンセル" / "Cancel this order",
    cancel_lines: "一部をキャンセル" / "Cancel part of it",
    cancel_lines_hint: "キャンセルする数量を入力します。残りは出荷されます。" / "Enter the quantities to cancel; the rest still ships.",
    undo: "キャンセルの取り消し" / "Undo the cancellation",
    force: "在庫が足りなくても取り消す" / "Undo even if the stock is no longer there",
    record_refund: "銀行振込の返金を記録" / "Record a bank-transfer refund",
    amount: "金額" / "Amount",
    note: "メモ" / "Note",
    done: "完了しました。" / "Done.",
    cancelled_done: "キャンセルを受け付けました。" / "The cancellation was accepted.",
    undone_done: "キャンセルを取り消しました。" / "The cancellation was undone.",
    refund_done: "返金を記録しました。" / "The refund was recorded.",
    retry_done: "再実行しました。" / "Retried.",
    accept_done: "キャンセル要求を承認しました。" / "The request was accepted.",
    reject_done: "キャンセル要求を却下しました。" / "The request was rejected.",
    adjust_done: "在庫を調整しました。" / "The stock was adjusted.",
    requests_title: "キャンセル要求（お客様）" / "Cancellation requests (customers)",
    request_reason: "お客様の理由" / "Customer's reason",
    decision_reason: "判断の理由" / "Reason for the decision",
    accept: "承認してキャンセル" / "Accept and cancel",
    reject: "却下" / "Reject",
    no_requests: "キャンセル要求はありません。" / "No cancellation requests.",
    attention_title: "要対応のキャンセル" / "Cancellations that need attention",
    no_attention: "要対応のキャンセルはありません。" / "Nothing needs attention.",
    retry: "再実行" / "Retry",
    sync_title: "連携履歴" / "Sync history",
    target: "連携先" / "Target",
    request: "リクエスト" / "Request",
    result: "結果" / "Result",
    result_success: "成功" / "OK",
    result_error: "エラー" / "Error",
    no_sync: "連携履歴はありません。" / "No calls recorded.",
    inventory_title: "在庫" / "Inventory",
    search_sku: "SKUで検索" / "Search by SKU",
    available: "在庫数" / "Available",
    adjust: "手動調整" / "Adjust by hand",
    delta: "増減" / "Change",
    adjust_reason: "調整理由" / "Reason",
    no_stock: "在庫はありません。" / "No stock levels.",
    error_title: "実行できませんでした" / "This could not be done",
    not_found: "見つかりません。" / "Not found.",
    yes: "はい" / "Yes",
    no: "いいえ" / "No",
    none: "なし" / "None",
}

impl Texts {
    fn pick(&self, ja: &'static str, en: &'static str) -> &'static str {
        match self.lang {
            Lang::Ja => ja,
            Lang::En => en,
        }
    }

    /// The label of an API value, or the value itself when it is not one this console knows.
    fn label<'v, T: Copy>(
        &self,
        value: &'v str,
        parse: fn(&str) -> Option<T>,
        label: fn(&Self, T) -> &'static str,
    ) -> &'v str {
        parse(value).map_or(value, |parsed| label(self, parsed))
    }

    pub fn order_status<'v>(&self, value: &'v str) -> &'v str {
        self.label(value, OrderStatus::parse, |t, status| match status {
            OrderStatus::Open => t.pick("受付中", "Open"),
            OrderStatus::Cancelled => t.pick("キャンセル済", "Cancelled"),
            OrderStatus::Closed => t.pick("完了", "Closed"),
        })
    }

    pub fn financial_status<'v>(&self, value: &'v str) -> &'v str {
        self.label(value, FinancialStatus::parse, |t, status| match status {
            FinancialStatus::Pending => t.pick("入金待ち", "Pending"),
            FinancialStatus::Authorized => t.pick("与信済", "Authorized"),
            FinancialStatus::Paid => t.pick("支払済", "Paid"),
            FinancialStatus::PartiallyRefunded => t.pick("一部返金済", "Partially refunded"),
            FinancialStatus::Refunded => t.pick("返金済", "Refunded"),
            FinancialStatus::Voided => t.pick("与信取消", "Voided"),
        })
    }

    pub fn fulfillment_status<'v>(&self, value: &'v str) -> &'v str {
        self.label(value, FulfillmentStatus::parse, |t, status| match status {
            FulfillmentStatus::AwaitingPayment => t.pick("入金待ち", "Awaiting payment"),
            FulfillmentStatus::AwaitingAllocation => t.pick("引当待ち", "Awaiting allocation"),
            FulfillmentStatus::AwaitingConfirmation => t.pick("確認待ち", "Awaiting confirmation"),
            FulfillmentStatus::AwaitingShipment => t.pick("出荷待ち", "Awaiting shipment"),
            FulfillmentStatus::InProgress => t.pick("出荷作業中", "In progress at the warehouse"),
            FulfillmentStatus::Packed => t.pick("梱包済", "Packed"),
            FulfillmentStatus::Shipped => t.pick("出荷済み", "Shipped"),
            FulfillmentStatus::Delivered => t.pick("配達済み", "Delivered"),
            FulfillmentStatus::Cancelled => t.pick("キャンセル", "Cancelled"),
        })
    }

    pub fn cancellation_status<'v>(&self, value: &'v str) -> &'v str {
        self.label(value, CancellationStatus::parse, |t, status| match status {
            CancellationStatus::Requested => t.pick("キャンセル要求（お客様）", "Requested (customer)"),
            CancellationStatus::Processing => t.pick("処理中", "Processing"),
            CancellationStatus::AwaitingRefund => t.pick("返金待ち", "Awaiting refund"),
            CancellationStatus::Completed => t.pick("完了", "Completed"),
            CancellationStatus::Rejected => t.pick("却下", "Rejected"),
            CancellationStatus::Failed => t.pick("失敗", "Failed"),
            CancellationStatus::Undone => t.pick("取り消し済", "Undone"),
        })
    }

    pub fn requested_by<'v>(&self, value: &'v str) -> &'v str {
        self.label(value, RequestedBy::parse, |t, by| match by {
            RequestedBy::Merchant => t.pick("店舗", "Merchant"),
            RequestedBy::Customer => t.pick("お客様", "Customer"),
            RequestedBy::Channel => t.pick("販売チャネル", "Channel"),
            RequestedBy::Warehouse => t.pick("倉庫", "Warehouse"),
        })
    }

    pub fn step_kind<'v>(&self, value: &'v str) -> &'v str {
        self.label(value, StepKind::parse, |t, kind| match kind {
            StepKind::ChannelCancel => t.pick("モールキャンセル", "Cancel at the channel"),
            StepKind::WarehouseCancel => t.pick("出庫依頼の停止", "Stop the outbound request"),
            StepKind::Refund => t.pick("返金", "Refund"),
            StepKind::Restock => t.pick("在庫戻し", "Restock"),
            StepKind::Notify => t.pick("お客様への通知", "Notify the customer"),
        })
    }

    pub fn step_status<'v>(&self, value: &'v str) -> &'v str {
        self.label(value, StepStatus::parse, |t, status| match status {
            StepStatus::Pending => t.pick("待機中", "Pending"),
            StepStatus::Running => t.pick("実行中", "Running"),
            StepStatus::Succeeded => t.pick("成功", "Succeeded"),
            StepStatus::Failed => t.pick("失敗", "Failed"),
            StepStatus::Skipped => t.pick("スキップ", "Skipped"),
            StepStatus::Waiting => t.pick("応答待ち", "Waiting"),
        })
    }

    pub fn refund_method<'v>(&self, value: &'v str) -> &'v str {
        self.label(value, RefundMethod::parse, |t, method| match method {
            RefundMethod::OriginalPayment => t.pick("元の支払い方法", "Original payment"),
            RefundMethod::StoreCredit => t.pick("ストアクレジット", "Store credit"),
            RefundMethod::Points => t.pick("ポイント", "Points"),
            RefundMethod::BankTransfer => t.pick("銀行振込", "Bank transfer"),
            RefundMethod::Channel => t.pick("モールが返金", "Refunded by the channel"),
        })
    }

    /// Every refund method, with its label, for the dialog's select.
    pub fn refund_methods(&self) -> Vec<(&'static str, &'static str)> {
        RefundMethod::ALL
            .iter()
            .map(|method| (method.as_str(), self.refund_method(method.as_str())))
            .collect()
    }

    pub fn channel_kind<'v>(&self, value: &'v str) -> &'v str {
        self.label(value, ChannelKind::parse, |t, kind| match kind {
            ChannelKind::OwnStore => t.pick("自社サイト", "Own store"),
            ChannelKind::Shopify => "Shopify",
            ChannelKind::Rakuten => t.pick("楽天市場", "Rakuten"),
            ChannelKind::Yahoo => t.pick("Yahoo!ショッピング", "Yahoo! Shopping"),
            ChannelKind::Amazon => "Amazon",
            ChannelKind::Shoplazza => "Shoplazza",
        })
    }

    pub fn outbound_status<'v>(&self, value: &'v str) -> &'v str {
        self.label(value, OutboundStatus::parse, |t, status| match status {
            OutboundStatus::Requested => t.pick("依頼中", "Requested"),
            OutboundStatus::Backordered => t.pick("入荷待ち", "Backordered"),
            OutboundStatus::Allocating => t.pick("引当中", "Allocating"),
            OutboundStatus::Waiting => t.pick("出庫待ち", "Waiting"),
            OutboundStatus::Working => t.pick("作業中", "Working"),
            OutboundStatus::Picking => t.pick("ピッキング中", "Picking"),
            OutboundStatus::Picked => t.pick("ピッキング済", "Picked"),
            OutboundStatus::Packed => t.pick("梱包済", "Packed"),
            OutboundStatus::Shipped => t.pick("出荷済み", "Shipped"),
            OutboundStatus::Suspended => t.pick("保留", "Suspended"),
            OutboundStatus::ModifyRequest => t.pick("修正依頼中", "Modification requested"),
            OutboundStatus::CancelRequest => t.pick("キャンセル依頼中", "Cancellation requested"),
            OutboundStatus::Deleted => t.pick("削除済", "Deleted"),
        })
    }

    pub fn sync_kind<'v>(&self, value: &'v str) -> &'v str {
        self.label(value, SyncKind::parse, |t, kind| match kind {
            SyncKind::Cancel => t.pick("注文キャンセル連携", "Cancel"),
            SyncKind::Modify => t.pick("注文修正連携", "Modification"),
            SyncKind::Restock => t.pick("在庫戻し", "Restock"),
            SyncKind::InventoryPush => t.pick("在庫反映", "Stock push"),
        })
    }

    pub fn request_status<'v>(&self, value: &'v str) -> &'v str {
        self.label(value, RequestStatus::parse, |t, status| match status {
            RequestStatus::Requested => t.pick("承認待ち", "Waiting"),
            RequestStatus::Accepted => t.pick("承認済", "Accepted"),
            RequestStatus::Rejected => t.pick("却下", "Rejected"),
        })
    }

    pub fn warning<'v>(&self, value: &'v str) -> &'v str {
        self.label(value, Warning::parse, |t, warning| match warning {
            Warning::RefundedButWillShip => t.pick(
                "返金済みですが、注文をキャンセルしない限り出荷されます。",
                "Refunded, but the goods still ship unless the order is cancelled.",
            ),
            Warning::ShippedAfterCancel => t.pick(
                "キャンセル後に出荷されました。お客様に受取拒否をお願いしてください。",
                "Shipped after the cancellation: ask the recipient to refuse delivery.",
            ),
            Warning::CancelRequestedMayShip => t.pick(
                "倉庫へキャンセル依頼中です。承認されるまで出荷される可能性があります。",
                "A cancellation request is with the warehouse; until it accepts, the goods may ship.",
            ),
        })
    }

    /// The heading of an API error, by its code; the API's own sentence follows it.
    pub fn error_heading(&self, code: &str) -> &'static str {
        match code {
            "channel_refused" => self.pick(
                "販売チャネルがキャンセルを拒否しました",
                "The channel refused the cancel",
            ),
            "warehouse_refused" => self.pick(
                "倉庫がキャンセルを受け付けませんでした",
                "The warehouse refused the cancel",
            ),
            "payment_failed" => self.pick("決済サービスで失敗しました", "The payment provider failed"),
            "return_required" => self.pick(
                "出荷済みのため返品として対応してください",
                "Shipped: handle it as a return",
            ),
            "order_not_cancellable" => self.pick("この注文はキャンセルできません", "This order cannot be cancelled"),
            "already_cancelled" => self.pick("すでにキャンセルされています", "Already cancelled"),
            "cancellation_irreversible" => {
                self.pick("このキャンセルは取り消せません", "This cancellation cannot be undone")
            }
            "insufficient_stock" => self.pick("在庫が足りません", "Not enough stock"),
            "invalid_request" => self.pick("入力内容を確認してください", "Please check the form"),
            "forbidden" => self.pick("このトークンには権限がありません", "This token lacks the permission"),
            "not_found" => self.not_found,
            _ => self.error_title,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_language_picks_the_most_wanted_of_japanese_and_english() {
        assert_eq!(Lang::from_accept_language(Some("en-US,en;q=0.9,ja;q=0.8")), Lang::En);
        assert_eq!(Lang::from_accept_language(Some("ja-JP,ja;q=0.9,en;q=0.8")), Lang::Ja);
        assert_eq!(Lang::from_accept_language(Some("fr-FR,en;q=0.5,ja;q=0.7")), Lang::Ja);
        assert_eq!(Lang::from_accept_language(Some("de, en;q=0.1")), Lang::En);
        assert_eq!(Lang::from_accept_language(Some("fr")), Lang::Ja);
        assert_eq!(Lang::from_accept_language(None), Lang::Ja);
    }

    #[test]
    fn labels_translate_api_values_and_keep_unknown_ones() {
        assert_eq!(Lang::Ja.texts().fulfillment_status("awaiting_shipment"), "出荷待ち");
        assert_eq!(Lang::En.texts().fulfillment_status("packed"), "Packed");
        assert_eq!(Lang::Ja.texts().order_status("something_new"), "something_new");
    }
}
