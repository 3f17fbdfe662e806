//! How the parts of an order that are stored as JSON columns (customer, address, lines, payment,
//! warnings, steps, history data) are written and read back. These are storage shapes, not API shapes.

use anyhow::{anyhow, Context, Result};
use rescind_domain::cancel::{CancelScope, CancelledLine};
use rescind_domain::{
    Address, Customer, HistoryEntry, LineItem, Money, Payment, PaymentMethod, Step, StepKind, StepStatus, Timestamp,
    Warning,
};
use serde_json::{json, Value};

fn text(value: &Value, key: &str) -> Result<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("stored JSON lacks `{key}`"))
}

fn optional_text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn number(value: &Value, key: &str) -> Result<i64> {
    value
        .get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| anyhow!("stored JSON lacks number `{key}`"))
}

fn money(value: &Value, key: &str) -> Result<Money> {
    Ok(Money::parse_stored(&text(value, key)?)?)
}

fn parse(json: &str) -> Result<Value> {
    serde_json::from_str(json).context("stored JSON column is not valid JSON")
}

/// Parses a named enumeration value written by rescind itself.
pub(crate) fn parse_named<T>(text: &str, parse: fn(&str) -> Option<T>, what: &str) -> Result<T> {
    parse(text).ok_or_else(|| anyhow!("stored {what} `{text}` is not a known value"))
}

pub(crate) fn customer_to_json(customer: &Customer) -> String {
    json!({"name": customer.name, "email": customer.email, "phone": customer.phone}).to_string()
}

pub(crate) fn customer_from_json(json: &str) -> Result<Customer> {
    let value = parse(json)?;
    Ok(Customer {
        name: text(&value, "name")?,
        email: optional_text(&value, "email"),
        phone: optional_text(&value, "phone"),
    })
}

pub(crate) fn address_to_json(address: &Address) -> String {
    json!({
        "name": address.name, "postcode": address.postcode, "prefecture": address.prefecture,
        "province": address.province, "address1": address.address1, "address2": address.address2,
        "phone": address.phone,
    })
    .to_string()
}

pub(crate) fn address_from_json(json: &str) -> Result<Address> {
    let value = parse(json)?;
    Ok(Address {
        name: text(&value, "name")?,
        postcode: text(&value, "postcode")?,
        prefecture: optional_text(&value, "prefecture"),
        province: optional_text(&value, "province"),
        address1: text(&value, "address1")?,
        address2: optional_text(&value, "address2"),
        phone: optional_text(&value, "phone"),
    })
}

pub(crate) fn line_items_to_json(lines: &[LineItem]) -> String {
    Value::Array(
        lines
            .iter()
            .map(|line| {
                json!({
                    "id": line.id, "sku": line.sku, "title": line.title, "quantity": line.quantity,
                    "cancelled_quantity": line.cancelled_quantity, "channel_line_item_id": line.channel_line_item_id, "price": line.price.to_string(),
                })
            })
            .collect(),
    )
    .to_string()
}

pub(crate) fn line_items_from_json(json: &str) -> Result<Vec<LineItem>> {
    let value = parse(json)?;
    let lines = value
        .as_array()
        .ok_or_else(|| anyhow!("stored line items are not an array"))?;
    lines
        .iter()
        .map(|line| {
            Ok(LineItem {
                id: text(line, "id")?,
                sku: text(line, "sku")?,
                title: text(line, "title")?,
                quantity: u32::try_from(number(line, "quantity")?)?,
                cancelled_quantity: u32::try_from(number(line, "cancelled_quantity")?)?,
                channel_line_item_id: optional_text(line, "channel_line_item_id"),
                price: money(line, "price")?,
            })
        })
        .collect()
}

pub(crate) fn payment_to_json(payment: &Payment) -> String {
    json!({
        "method": payment.method.as_str(), "amount": payment.amount.to_string(),
        "provider_id": payment.provider_id, "reference": payment.reference,
        "points_amount": payment.points_amount.to_string(),
    })
    .to_string()
}

pub(crate) fn payment_from_json(json: &str) -> Result<Payment> {
    let value = parse(json)?;
    Ok(Payment {
        method: parse_named(&text(&value, "method")?, PaymentMethod::parse, "payment method")?,
        amount: money(&value, "amount")?,
        provider_id: optional_text(&value, "provider_id"),
        reference: optional_text(&value, "reference"),
        points_amount: money(&value, "points_amount")?,
    })
}

pub(crate) fn warnings_to_json(warnings: &[Warning]) -> String {
    Value::Array(warnings.iter().map(|warning| Value::from(warning.as_str())).collect()).to_string()
}

pub(crate) fn warnings_from_json(json: &str) -> Result<Vec<Warning>> {
    let value = parse(json)?;
    let items = value
        .as_array()
        .ok_or_else(|| anyhow!("stored warnings are not an array"))?;
    items
        .iter()
        .map(|item| parse_named(item.as_str().unwrap_or_default(), Warning::parse, "warning"))
        .collect()
}

pub(crate) fn steps_to_json(steps: &[Step]) -> String {
    Value::Array(
        steps
            .iter()
            .map(|step| {
                json!({
                    "kind": step.kind.as_str(), "status": step.status.as_str(), "message": step.message,
                    "attempts": step.attempts, "generation": step.generation, "last_error": step.last_error,
                    "updated_at": step.updated_at.unix_micros(),
                })
            })
            .collect(),
    )
    .to_string()
}

pub(crate) fn steps_from_json(json: &str) -> Result<Vec<Step>> {
    let value = parse(json)?;
    let items = value
        .as_array()
        .ok_or_else(|| anyhow!("stored steps are not an array"))?;
    items
        .iter()
        .map(|step| {
            Ok(Step {
                kind: parse_named(&text(step, "kind")?, StepKind::parse, "step kind")?,
                status: parse_named(&text(step, "status")?, StepStatus::parse, "step status")?,
                message: text(step, "message")?,
                attempts: u32::try_from(number(step, "attempts")?)?,
                generation: u32::try_from(number(step, "generation").unwrap_or(0))?,
                last_error: optional_text(step, "last_error"),
                updated_at: Timestamp::from_unix_micros(number(step, "updated_at")?),
            })
        })
        .collect()
}

/// A history line's data as the JSON object it is stored and sent as: keys in order, the last of a
/// repeated key kept (as a `serde_json::Map` keeps them), borrowed rather than copied.
pub(crate) fn history_data_map(data: &[(String, String)]) -> std::collections::BTreeMap<&str, &str> {
    data.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect()
}

/// One history line as `order_changes.lines` keeps it (migration 0006): its data the same object a
/// line of `order_history` keeps in its own column.
#[derive(serde::Serialize)]
struct StoredLine<'a> {
    at: i64,
    kind: &'a str,
    actor: &'a str,
    message: &'a str,
    data: std::collections::BTreeMap<&'a str, &'a str>,
}

/// [`StoredLine`] read back.
#[derive(serde::Deserialize)]
struct LoadedLine {
    at: i64,
    kind: String,
    actor: String,
    message: String,
    data: std::collections::BTreeMap<String, String>,
}

/// The lines of one change as the JSON array of its `order_changes` row, oldest first.
pub(crate) fn history_lines_to_json(lines: &[HistoryEntry]) -> String {
    let stored: Vec<StoredLine<'_>> = lines
        .iter()
        .map(|line| StoredLine {
            at: line.at.unix_micros(),
            kind: &line.kind,
            actor: &line.actor,
            message: &line.message,
            data: history_data_map(&line.data),
        })
        .collect();
    serde_json::to_string(&stored).expect("history lines serialize")
}

/// The lines of one `order_changes` row, appended to `lines`.
pub(crate) fn history_lines_from_json(json: &str, lines: &mut Vec<HistoryEntry>) -> Result<()> {
    let loaded: Vec<LoadedLine> = serde_json::from_str(json).context("stored history lines are not valid")?;
    lines.extend(loaded.into_iter().map(|line| HistoryEntry {
        at: Timestamp::from_unix_micros(line.at),
        kind: line.kind,
        actor: line.actor,
        message: line.message,
        data: line.data.into_iter().collect(),
    }));
    Ok(())
}

pub(crate) fn history_data_from_json(json: &str) -> Result<Vec<(String, String)>> {
    let value = parse(json)?;
    let map = value
        .as_object()
        .ok_or_else(|| anyhow!("stored history data is not an object"))?;
    Ok(map
        .iter()
        .map(|(key, value)| (key.clone(), value.as_str().unwrap_or_default().to_owned()))
        .collect())
}

pub(crate) fn scopes_to_text(scopes: &[rescind_domain::Scope]) -> String {
    scopes.iter().map(|scope| scope.as_str()).collect::<Vec<_>>().join(" ")
}

pub(crate) fn scopes_from_text(text: &str) -> Result<Vec<rescind_domain::Scope>> {
    text.split_whitespace()
        .map(|name| parse_named(name, rescind_domain::Scope::parse, "scope"))
        .collect()
}

pub(crate) fn outbound_to_json(outbound: &rescind_domain::Outbound) -> String {
    json!({
        "warehouse_id": outbound.warehouse_id, "external_id": outbound.external_id, "status": outbound.status.as_str(),
        "fee": outbound.fee.map(|fee| fee.to_string()), "attempts": outbound.attempts, "last_error": outbound.last_error,
    })
    .to_string()
}

pub(crate) fn outbound_from_json(json: &str) -> Result<rescind_domain::Outbound> {
    let value = parse(json)?;
    Ok(rescind_domain::Outbound {
        warehouse_id: text(&value, "warehouse_id")?,
        external_id: optional_text(&value, "external_id"),
        status: parse_named(
            &text(&value, "status")?,
            rescind_domain::OutboundStatus::parse,
            "outbound status",
        )?,
        fee: optional_text(&value, "fee")
            .map(|fee| Money::parse_stored(&fee))
            .transpose()?,
        attempts: u32::try_from(number(&value, "attempts").unwrap_or(0))?,
        last_error: optional_text(&value, "last_error"),
    })
}

pub(crate) fn stock_snapshot_to_json(lines: &[(String, u32)]) -> String {
    Value::Array(
        lines
            .iter()
            .map(|(sku, quantity)| json!({"sku": sku, "quantity": quantity}))
            .collect(),
    )
    .to_string()
}

pub(crate) fn stock_snapshot_from_json(json: &str) -> Result<Vec<(String, u32)>> {
    let value = parse(json)?;
    let lines = value
        .as_array()
        .ok_or_else(|| anyhow!("stored stock snapshot is not an array"))?;
    lines
        .iter()
        .map(|line| Ok((text(line, "sku")?, u32::try_from(number(line, "quantity")?)?)))
        .collect()
}

/// A partial cancellation's lines, amount and restock (B1); `None` for a whole-order cancellation.
pub(crate) fn scope_to_json(scope: &CancelScope) -> String {
    match scope {
        CancelScope::Order { after_partial } => json!({"after_partial": after_partial}).to_string(),
        CancelScope::Lines {
            lines,
            refund_amount,
            restock,
        } => json!({
            "lines": lines
                .iter()
                .map(|line| json!({"line_item_id": line.line_item_id, "sku": line.sku, "quantity": line.quantity}))
                .collect::<Vec<_>>(),
            "refund_amount": refund_amount.to_string(),
            "restock": parse(&stock_snapshot_to_json(restock)).unwrap_or(Value::Null),
        })
        .to_string(),
    }
}

pub(crate) fn scope_from_json(partial: bool, json: &str) -> Result<CancelScope> {
    let value = parse(json)?;
    if !partial {
        return Ok(CancelScope::Order {
            after_partial: value.get("after_partial").and_then(Value::as_bool).unwrap_or(false),
        });
    }
    let lines = value
        .get("lines")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("stored partial cancellation has no lines"))?
        .iter()
        .map(|line| {
            Ok(CancelledLine {
                line_item_id: text(line, "line_item_id")?,
                sku: text(line, "sku")?,
                quantity: u32::try_from(number(line, "quantity")?)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(CancelScope::Lines {
        lines,
        refund_amount: money(&value, "refund_amount")?,
        restock: stock_snapshot_from_json(&value.get("restock").cloned().unwrap_or(Value::Null).to_string())?,
    })
}
