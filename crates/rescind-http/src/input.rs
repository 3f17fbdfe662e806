//! Turning request bodies into validated domain values, once, at the edge. Each problem becomes one
//! entry of the 400's `errors`, named by its field.

use crate::wire::{
    AddressBody, CancelLineItemInput, CancelOptionsBody, CustomerBody, ImportOrderRequest, RecordRefundRequest,
};
use rescind_domain::{
    Address, CancelOptions, ChannelKind, Currency, Customer, FinancialStatus, FulfillmentStatus, Money, NewLineItem,
    NewOrder, Payment, PaymentMethod, RefundMethod, RefundRequest, RequestedBy,
};
use serde_json::Value;

/// The most lines one order may have.
pub const LINE_ITEMS_MAX: usize = 500;
/// The most units of one line.
pub const LINE_QUANTITY_MAX: i64 = 1_000_000;
/// The longest free-text field (names, addresses, reasons, notes).
pub const TEXT_LENGTH_MAX: usize = 1000;
/// The longest identifier-like field (SKU, order number, channel order id, reason code).
pub const CODE_LENGTH_MAX: usize = 128;

/// Collects the problems of one request.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<String>);

impl Problems {
    pub fn push(&mut self, field: &str, problem: impl std::fmt::Display) {
        self.0.push(format!("{field}: {problem}"));
    }

    /// An optional text, trimmed, at most `max` characters; empty counts as absent.
    pub fn text(&mut self, field: &str, value: &Option<String>, max: usize) -> Option<String> {
        let value = value.as_deref().map(str::trim).filter(|value| !value.is_empty())?;
        if value.chars().count() > max {
            self.push(field, format_args!("is longer than {max} characters"));
            return None;
        }
        Some(value.to_owned())
    }

    /// A required text.
    pub fn required_text(&mut self, field: &str, value: &Option<String>, max: usize) -> String {
        let text = self.text(field, value, max);
        if text.is_none() && !self.0.iter().any(|problem| problem.starts_with(&format!("{field}:"))) {
            self.push(field, "is required");
        }
        text.unwrap_or_default()
    }

    /// An optional value of a named enumeration.
    pub fn named<T>(
        &mut self,
        field: &str,
        value: &Option<String>,
        parse: fn(&str) -> Option<T>,
        names: Vec<&str>,
    ) -> Option<T> {
        let text = value.as_deref()?;
        let parsed = parse(text);
        if parsed.is_none() {
            self.push(field, format_args!("`{text}` is not one of {}", names.join(", ")));
        }
        parsed
    }

    /// An optional money value: a decimal string in `currency`.
    pub fn money(&mut self, field: &str, value: &Option<Value>, currency: Option<Currency>) -> Option<Money> {
        match value.as_ref()? {
            Value::String(text) => {
                let parsed = match currency {
                    Some(currency) => Money::parse(text, currency),
                    None => Money::parse_stored(text),
                };
                parsed.map_err(|error| self.push(field, error)).ok()
            }
            Value::Null => None,
            other => {
                self.push(
                    field,
                    format_args!("must be a decimal string such as \"9.99\", not {other}"),
                );
                None
            }
        }
    }

    pub fn into_result<T>(self, value: T) -> Result<T, Vec<String>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }
}

pub fn customer(problems: &mut Problems, customer: &Option<CustomerBody>) -> Customer {
    let Some(customer) = customer else {
        problems.push("customer", "is required");
        return Customer {
            name: String::new(),
            email: None,
            phone: None,
        };
    };
    let email = problems.text("customer.email", &customer.email, TEXT_LENGTH_MAX);
    if email.as_deref().is_some_and(|email| !email.contains('@')) {
        problems.push("customer.email", "is not an email address");
    }
    Customer {
        name: problems.required_text("customer.name", &customer.name, TEXT_LENGTH_MAX),
        email,
        phone: problems.text("customer.phone", &customer.phone, CODE_LENGTH_MAX),
    }
}

/// Validates an address (also used by order modifications).
pub fn address(problems: &mut Problems, field: &str, address: &Option<AddressBody>) -> Address {
    let Some(body) = address else {
        problems.push(field, "is required");
        return Address {
            name: String::new(),
            postcode: String::new(),
            prefecture: None,
            province: None,
            address1: String::new(),
            address2: None,
            phone: None,
        };
    };
    let prefecture = problems.text(&format!("{field}.prefecture"), &body.prefecture, TEXT_LENGTH_MAX);
    let province = problems.text(&format!("{field}.province"), &body.province, TEXT_LENGTH_MAX);
    if prefecture.is_none() && province.is_none() {
        problems.push(field, "needs a prefecture or a province");
    }
    Address {
        name: problems.required_text(&format!("{field}.name"), &body.name, TEXT_LENGTH_MAX),
        postcode: problems.required_text(&format!("{field}.postcode"), &body.postcode, CODE_LENGTH_MAX),
        prefecture,
        province,
        address1: problems.required_text(&format!("{field}.address1"), &body.address1, TEXT_LENGTH_MAX),
        address2: problems.text(&format!("{field}.address2"), &body.address2, TEXT_LENGTH_MAX),
        phone: problems.text(&format!("{field}.phone"), &body.phone, CODE_LENGTH_MAX),
    }
}

/// Validates an import. `channel_kind` is the kind of the channel the request names, when it exists
/// in the shop (the caller looked it up).
/// `provider_known`: the payment's `provider_id`, if any, names a payment provider of the shop;
/// `warehouse_id`: the warehouse the order ships from (the request's, checked, or the shop's only one).
pub fn new_order(
    request: &ImportOrderRequest,
    channel_kind: Option<ChannelKind>,
    provider_known: bool,
    warehouse_id: Option<String>,
) -> Result<NewOrder, Vec<String>> {
    let mut problems = Problems::default();
    let channel_id = problems.required_text("channel_id", &request.channel_id, CODE_LENGTH_MAX);
    if !channel_id.is_empty() && channel_kind.is_none() {
        problems.push("channel_id", format_args!("no channel `{channel_id}` in this shop"));
    }
    let channel_order_id = problems.text("channel_order_id", &request.channel_order_id, CODE_LENGTH_MAX);
    if channel_kind.is_some_and(ChannelKind::requires_channel_cancel) && channel_order_id.is_none() {
        problems.push(
            "channel_order_id",
            "is required for marketplace orders (rescind cancels them at the channel by it)",
        );
    }
    let number = problems.text("number", &request.number, CODE_LENGTH_MAX);
    let currency = match request.currency.as_deref() {
        None => {
            problems.push("currency", "is required");
            None
        }
        Some(code) => Currency::parse(code)
            .map_err(|error| problems.push("currency", error))
            .ok(),
    };
    let customer = customer(&mut problems, &request.customer);
    let shipping_address = address(&mut problems, "shipping_address", &request.shipping_address);

    let mut line_items = Vec::new();
    match &request.line_items {
        None => problems.push("line_items", "is required"),
        Some(lines) if lines.is_empty() => problems.push("line_items", "needs at least one line"),
        Some(lines) if lines.len() > LINE_ITEMS_MAX => problems.push(
            "line_items",
            format_args!("has {} lines; at most {LINE_ITEMS_MAX} are accepted", lines.len()),
        ),
        Some(lines) => {
            for (index, line) in lines.iter().enumerate() {
                let field = |name: &str| format!("line_items[{index}].{name}");
                let sku = problems.required_text(&field("sku"), &line.sku, CODE_LENGTH_MAX);
                let title = problems.required_text(&field("title"), &line.title, TEXT_LENGTH_MAX);
                let quantity = match line.quantity {
                    None => {
                        problems.push(&field("quantity"), "is required");
                        0
                    }
                    Some(quantity) if !(1..=LINE_QUANTITY_MAX).contains(&quantity) => {
                        problems.push(
                            &field("quantity"),
                            format_args!("must be between 1 and {LINE_QUANTITY_MAX}"),
                        );
                        0
                    }
                    Some(quantity) => quantity as u32,
                };
                let price = problems.money(&field("price"), &line.price, currency);
                if line.price.is_none() {
                    problems.push(&field("price"), "is required");
                }
                let channel_line_item_id = problems.text(
                    &field("channel_line_item_id"),
                    &line.channel_line_item_id,
                    CODE_LENGTH_MAX,
                );
                if channel_kind == Some(ChannelKind::Amazon) && channel_line_item_id.is_none() {
                    problems.push(
                        &field("channel_line_item_id"),
                        "is required for Amazon orders: the AmazonOrderItemCode its cancel names",
                    );
                }
                line_items.push(NewLineItem {
                    channel_line_item_id,
                    sku,
                    title,
                    quantity,
                    price: price.unwrap_or(Money::ZERO),
                });
            }
        }
    }
    let total_shipping = problems
        .money("total_shipping", &request.total_shipping, currency)
        .unwrap_or(Money::ZERO);
    let total_tax = problems
        .money("total_tax", &request.total_tax, currency)
        .unwrap_or(Money::ZERO);
    let total_discount = problems
        .money("total_discount", &request.total_discount, currency)
        .unwrap_or(Money::ZERO);

    let payment = request.payment.as_ref().map(|payment| {
        let method = problems.named(
            "payment.method",
            &payment.method,
            PaymentMethod::parse,
            PaymentMethod::names(),
        );
        if payment.method.is_none() {
            problems.push("payment.method", "is required");
        }
        let amount = problems.money("payment.amount", &payment.amount, currency);
        if payment.amount.is_none() {
            problems.push("payment.amount", "is required");
        }
        let provider_id = problems.text("payment.provider_id", &payment.provider_id, CODE_LENGTH_MAX);
        let reference = problems.text("payment.reference", &payment.reference, CODE_LENGTH_MAX);
        if let Some(provider_id) = &provider_id {
            if !provider_known {
                problems.push(
                    "payment.provider_id",
                    format_args!("no payment provider `{provider_id}` in this shop"),
                );
            } else if reference.is_none() {
                problems.push(
                    "payment.reference",
                    "is required with a payment provider: the provider's payment id (Stripe: the PaymentIntent pi_…)",
                );
            }
        }
        Payment {
            method: method.unwrap_or(PaymentMethod::BankTransfer),
            amount: amount.unwrap_or(Money::ZERO),
            provider_id,
            reference,
            points_amount: problems
                .money("payment.points_amount", &payment.points_amount, currency)
                .unwrap_or(Money::ZERO),
        }
    });

    let financial_status = problems.named(
        "financial_status",
        &request.financial_status,
        FinancialStatus::parse,
        FinancialStatus::names(),
    );
    match financial_status {
        None if request.financial_status.is_none() => problems.push("financial_status", "is required"),
        Some(FinancialStatus::PartiallyRefunded | FinancialStatus::Refunded | FinancialStatus::Voided) => problems
            .push(
                "financial_status",
                "an order is imported as pending, authorized or paid; record refunds with POST /orders/{id}/refunds",
            ),
        _ => {}
    }
    let fulfillment_status = problems.named(
        "fulfillment_status",
        &request.fulfillment_status,
        FulfillmentStatus::parse,
        FulfillmentStatus::names(),
    );
    match fulfillment_status {
        None if request.fulfillment_status.is_none() => problems.push("fulfillment_status", "is required"),
        Some(FulfillmentStatus::Cancelled) => problems.push(
            "fulfillment_status",
            "an order is imported open; cancel it through rescind",
        ),
        _ => {}
    }
    if let (Some(warehouse_id), None) = (&request.warehouse_id, &warehouse_id) {
        problems.push(
            "warehouse_id",
            format_args!("no warehouse `{warehouse_id}` in this shop"),
        );
    }

    let (Some(currency), Some(channel_kind), Some(financial_status), Some(fulfillment_status)) =
        (currency, channel_kind, financial_status, fulfillment_status)
    else {
        return Err(if problems.0.is_empty() {
            vec!["the order is incomplete".to_owned()]
        } else {
            problems.0
        });
    };
    let order = NewOrder {
        channel_id,
        channel_kind,
        channel_order_id,
        number,
        currency,
        customer,
        shipping_address,
        line_items,
        total_shipping,
        total_tax,
        total_discount,
        payment,
        financial_status,
        fulfillment_status,
        deduct_inventory: request.deduct_inventory.unwrap_or(false),
        warehouse_id,
    };
    if problems.0.is_empty() {
        if let Err(amount_problems) = order.check_amounts() {
            problems.0.extend(amount_problems.0);
        }
    }
    problems.into_result(order)
}

/// Validates the options of a cancel (W1).
pub fn cancel_options(body: CancelOptionsBody<'_>, requested_by: RequestedBy) -> Result<CancelOptions, Vec<String>> {
    let mut problems = Problems::default();
    let options = CancelOptions {
        requested_by,
        reason: problems.text("reason", body.reason, TEXT_LENGTH_MAX),
        reason_code: problems.text("reason_code", body.reason_code, CODE_LENGTH_MAX),
        reason_detail: problems.text("reason_detail", body.reason_detail, TEXT_LENGTH_MAX),
        staff_note: problems.text("staff_note", body.staff_note, TEXT_LENGTH_MAX),
        refund: body.refund.unwrap_or(true),
        refund_method: problems.named(
            "refund_method",
            body.refund_method,
            RefundMethod::parse,
            RefundMethod::names(),
        ),
        restock: body.restock.unwrap_or(true),
        notify_customer: body.notify_customer.unwrap_or(true),
        channel_cancel_sync: true,
        warehouse: None,
        lines: Vec::new(),
    };
    problems.into_result(options)
}

/// The most lines one partial cancellation may name.
pub const CANCEL_LINES_MAX: usize = 1000;

/// Validates the lines of a partial cancellation (B1): each names a line and a quantity of at least 1.
/// Whether they fit the order is the domain's to say.
pub fn cancel_lines(lines: &[CancelLineItemInput]) -> Result<Vec<(String, u32)>, Vec<String>> {
    let mut problems = Vec::new();
    if lines.is_empty() {
        problems.push("line_items: needs at least one line; leave it out to cancel the whole order".to_owned());
    }
    if lines.len() > CANCEL_LINES_MAX {
        problems.push(format!("line_items: at most {CANCEL_LINES_MAX} lines"));
    }
    let mut parsed = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let id = match line.line_item_id.as_deref().map(str::trim) {
            Some(id) if !id.is_empty() => Some(id.to_owned()),
            _ => {
                problems.push(format!("line_items[{index}].line_item_id: is required"));
                None
            }
        };
        let quantity = match line.quantity {
            Some(quantity) if quantity >= 1 => u32::try_from(quantity).ok(),
            Some(_) => None,
            None => {
                problems.push(format!("line_items[{index}].quantity: is required"));
                continue;
            }
        };
        if quantity.is_none() {
            problems.push(format!(
                "line_items[{index}].quantity: must be a whole number of at least 1"
            ));
        }
        if let (Some(id), Some(quantity)) = (id, quantity) {
            parsed.push((id, quantity));
        }
    }
    if problems.is_empty() {
        Ok(parsed)
    } else {
        Err(problems)
    }
}

/// Validates a refund record; amounts are checked against the order's currency by the caller.
pub fn refund_request(request: &RecordRefundRequest, currency: Currency) -> Result<RefundRequest, Vec<String>> {
    let mut problems = Problems::default();
    let amount = problems.money("amount", &request.amount, Some(currency));
    match (&request.amount, amount) {
        (None, _) => problems.push("amount", "is required"),
        (_, Some(amount)) if amount.is_zero() => problems.push("amount", "must be more than zero"),
        _ => {}
    }
    let method = problems.named("method", &request.method, RefundMethod::parse, RefundMethod::names());
    if request.method.is_none() {
        problems.push("method", "is required");
    }
    let note = problems.text("note", &request.note, TEXT_LENGTH_MAX);
    match (amount, method) {
        (Some(amount), Some(method)) if problems.0.is_empty() => Ok(RefundRequest { amount, method, note }),
        _ => Err(problems.0),
    }
}

/// The largest credentials object accepted for an integration.
pub const CREDENTIALS_BYTES_MAX: usize = 16 * 1024;

/// Validates the `base_url` and write-only `credentials` every integration has; returns them with
/// the credentials as JSON text.
pub fn integration_endpoint(
    problems: &mut Problems,
    base_url: &Option<String>,
    credentials: &Option<serde_json::Map<String, Value>>,
) -> (Option<String>, Option<String>) {
    let base_url = problems.text("base_url", base_url, TEXT_LENGTH_MAX);
    if base_url
        .as_deref()
        .is_some_and(|url| !(url.starts_with("http://") || url.starts_with("https://")))
    {
        problems.push("base_url", "must be an http:// or https:// URL");
    }
    let credentials = credentials
        .as_ref()
        .map(|credentials| Value::Object(credentials.clone()).to_string());
    if credentials
        .as_ref()
        .is_some_and(|text| text.len() > CREDENTIALS_BYTES_MAX)
    {
        problems.push(
            "credentials",
            format_args!("is larger than {CREDENTIALS_BYTES_MAX} bytes"),
        );
    }
    (base_url, credentials)
}
