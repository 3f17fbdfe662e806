//! How the parts of an order that are stored as JSON columns (customer, address, lines, payment,
//! warnings, steps, history data) are written and read back. These are storage shapes, not API shapes.

use anyhow::{anyhow, Context, Result};
use rescind_domain::cancel::{CancelScope, CancelledLine};
use rescind_domain::{
    Address, Customer, HistoryEntry, LineItem, Money, Payment, PaymentMethod, Step, StepKind, StepStatus, Timestamp,
    Warning,
};
use serde_json::{json, Value};
use std::borrow::Cow;

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

// The order's and the cancellation's JSON columns are written from borrowed values and read into
// typed rows, with no `serde_json::Value` tree in between (a cancellation writes the order row and its
// cancellation whole, and a group loads each order it decides on). The fields are in alphabetical
// order, so the stored objects are byte for byte what they were when built as JSON trees — but for a
// cancellation's steps and a change's history lines, which since the fifteenth session leave out what
// repeats (`StepColumn`, `HistoryLineColumn`).

/// Reads a stored JSON column into its typed shape.
fn stored<'a, T: serde::Deserialize<'a>>(json: &'a str, what: &str) -> Result<T> {
    serde_json::from_str(json).with_context(|| format!("stored {what} are not valid"))
}

fn written<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("a stored column serializes")
}

/// [`written`] with its commonest pieces as tokens (`phrases`): a cancellation's steps and a change's
/// history lines, since the twenty-third session.
fn written_short<T: serde::Serialize>(value: &T) -> String {
    crate::phrases::shorten(&written(value))
}

/// [`stored`] for a column [`written_short`] wrote (or one written before, without tokens).
fn stored_short<T: serde::de::DeserializeOwned>(json: &str, what: &str) -> Result<T> {
    stored(&crate::phrases::expand(json)?, what)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct CustomerColumn<S> {
    email: Option<S>,
    name: S,
    phone: Option<S>,
}

pub(crate) fn customer_to_json(customer: &Customer) -> String {
    written(&CustomerColumn {
        email: customer.email.as_deref(),
        name: customer.name.as_str(),
        phone: customer.phone.as_deref(),
    })
}

pub(crate) fn customer_from_json(json: &str) -> Result<Customer> {
    let column: CustomerColumn<String> = stored(json, "customer fields")?;
    Ok(Customer {
        name: column.name,
        email: column.email,
        phone: column.phone,
    })
}

#[derive(serde::Serialize, serde::Deserialize)]
struct AddressColumn<S> {
    address1: S,
    address2: Option<S>,
    name: S,
    phone: Option<S>,
    postcode: S,
    prefecture: Option<S>,
    province: Option<S>,
}

pub(crate) fn address_to_json(address: &Address) -> String {
    written(&AddressColumn {
        address1: address.address1.as_str(),
        address2: address.address2.as_deref(),
        name: address.name.as_str(),
        phone: address.phone.as_deref(),
        postcode: address.postcode.as_str(),
        prefecture: address.prefecture.as_deref(),
        province: address.province.as_deref(),
    })
}

pub(crate) fn address_from_json(json: &str) -> Result<Address> {
    let column: AddressColumn<String> = stored(json, "address fields")?;
    Ok(Address {
        name: column.name,
        postcode: column.postcode,
        prefecture: column.prefecture,
        province: column.province,
        address1: column.address1,
        address2: column.address2,
        phone: column.phone,
    })
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LineColumn<S> {
    cancelled_quantity: u32,
    channel_line_item_id: Option<S>,
    id: S,
    price: String,
    quantity: u32,
    sku: S,
    title: S,
}

pub(crate) fn line_items_to_json(lines: &[LineItem]) -> String {
    let columns: Vec<LineColumn<&str>> = lines
        .iter()
        .map(|line| LineColumn {
            cancelled_quantity: line.cancelled_quantity,
            channel_line_item_id: line.channel_line_item_id.as_deref(),
            id: line.id.as_str(),
            price: line.price.to_string(),
            quantity: line.quantity,
            sku: line.sku.as_str(),
            title: line.title.as_str(),
        })
        .collect();
    written(&columns)
}

pub(crate) fn line_items_from_json(json: &str) -> Result<Vec<LineItem>> {
    let columns: Vec<LineColumn<String>> = stored(json, "line items")?;
    columns
        .into_iter()
        .map(|line| {
            Ok(LineItem {
                price: Money::parse_stored(&line.price)?,
                id: line.id,
                sku: line.sku,
                title: line.title,
                quantity: line.quantity,
                cancelled_quantity: line.cancelled_quantity,
                channel_line_item_id: line.channel_line_item_id,
            })
        })
        .collect()
}

#[derive(serde::Serialize, serde::Deserialize)]
struct PaymentColumn<S> {
    amount: String,
    method: S,
    points_amount: String,
    provider_id: Option<S>,
    reference: Option<S>,
}

pub(crate) fn payment_to_json(payment: &Payment) -> String {
    written(&PaymentColumn {
        amount: payment.amount.to_string(),
        method: payment.method.as_str(),
        points_amount: payment.points_amount.to_string(),
        provider_id: payment.provider_id.as_deref(),
        reference: payment.reference.as_deref(),
    })
}

pub(crate) fn payment_from_json(json: &str) -> Result<Payment> {
    let column: PaymentColumn<String> = stored(json, "payment fields")?;
    Ok(Payment {
        method: parse_named(&column.method, PaymentMethod::parse, "payment method")?,
        amount: Money::parse_stored(&column.amount)?,
        provider_id: column.provider_id,
        reference: column.reference,
        points_amount: Money::parse_stored(&column.points_amount)?,
    })
}

pub(crate) fn warnings_to_json(warnings: &[Warning]) -> String {
    written(&warnings.iter().map(|warning| warning.as_str()).collect::<Vec<_>>())
}

pub(crate) fn warnings_from_json(json: &str) -> Result<Vec<Warning>> {
    let names: Vec<String> = stored(json, "warnings")?;
    names
        .iter()
        .map(|name| parse_named(name, Warning::parse, "warning"))
        .collect()
}

/// One step of a cancellation as its `steps` column keeps it. What most steps hold is left out: no
/// attempts, generation 0, no error, and an `updated_at` that is the cancellation's own `created_at`
/// (a step nothing has happened to since). A cancellation's row then fits two to a 2 KiB page, where
/// the whole objects took one each (BENCHMARKS.md, fifteenth session); objects written whole before
/// read back the same.
#[derive(serde::Serialize, serde::Deserialize)]
struct StepColumn<S> {
    #[serde(default, skip_serializing_if = "is_zero")]
    attempts: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    generation: u32,
    kind: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<S>,
    message: S,
    status: S,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    updated_at: Option<i64>,
}

fn is_zero(number: &u32) -> bool {
    *number == 0
}

/// The steps of a cancellation created at `created_at`, as its `steps` column.
pub(crate) fn steps_to_json(steps: &[Step], created_at: Timestamp) -> String {
    let columns: Vec<StepColumn<&str>> = steps
        .iter()
        .map(|step| StepColumn {
            attempts: step.attempts,
            generation: step.generation,
            kind: step.kind.as_str(),
            last_error: step.last_error.as_deref(),
            message: step.message.as_str(),
            status: step.status.as_str(),
            updated_at: (step.updated_at != created_at).then_some(step.updated_at.unix_micros()),
        })
        .collect();
    written_short(&columns)
}

/// The steps of a cancellation created at `created_at`, from its `steps` column.
pub(crate) fn steps_from_json(json: &str, created_at: Timestamp) -> Result<Vec<Step>> {
    let columns: Vec<StepColumn<String>> = stored_short(json, "steps")?;
    columns
        .into_iter()
        .map(|step| {
            Ok(Step {
                kind: parse_named(&step.kind, StepKind::parse, "step kind")?,
                status: parse_named(&step.status, StepStatus::parse, "step status")?,
                message: step.message,
                attempts: step.attempts,
                generation: step.generation,
                last_error: step.last_error,
                updated_at: step.updated_at.map_or(created_at, Timestamp::from_unix_micros),
            })
        })
        .collect()
}

/// A history line's data as the JSON object it is stored and sent as: keys in order, the last of a
/// repeated key kept (as a `serde_json::Map` keeps them), borrowed rather than copied.
pub(crate) fn history_data_map<'a>(data: &'a [(Cow<'static, str>, Cow<'static, str>)]) -> HistoryData<'a> {
    HistoryData(data)
}

/// See [`history_data_map`]. Data whose keys already come in order, each once (a line's one or two
/// keys, nearly always), is written as it is; only other data is sorted first, in a map of its own
/// (an allocation per history line before, nine per cancellation).
pub(crate) struct HistoryData<'a>(&'a [(Cow<'static, str>, Cow<'static, str>)]);

impl HistoryData<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl serde::Serialize for HistoryData<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let pairs = self.0.iter().map(|(key, value)| (key.as_ref(), value.as_ref()));
        if self.0.windows(2).all(|pair| pair[0].0 < pair[1].0) {
            serializer.collect_map(pairs)
        } else {
            serializer.collect_map(pairs.collect::<std::collections::BTreeMap<&str, &str>>())
        }
    }
}

/// One history line as `order_changes.lines` keeps it (migration 0006): its data the same object a
/// line of `order_history` keeps in its own column. What repeats is left out: the time when it is the
/// line before's (for the first line, the row's own `at`), the actor when it is the line before's, and
/// data when there is none — a cancellation's nine lines share both, about a third of the row
/// (BENCHMARKS.md, fifteenth session). Lines written whole before read back the same.
#[derive(serde::Deserialize)]
struct HistoryLineColumn {
    #[serde(default)]
    at: Option<i64>,
    kind: String,
    #[serde(default)]
    actor: Option<String>,
    message: String,
    #[serde(default)]
    data: std::collections::BTreeMap<String, String>,
}

/// A [`HistoryLineColumn`] as it is written, from the line's own fields.
#[derive(serde::Serialize)]
struct HistoryLineWritten<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    at: Option<i64>,
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<&'a str>,
    message: &'a str,
    #[serde(skip_serializing_if = "HistoryData::is_empty")]
    data: HistoryData<'a>,
}

/// The lines of one change as the JSON array of its `order_changes` row, oldest first; the row's `at`
/// is the first line's.
pub(crate) fn history_lines_to_json(lines: &[HistoryEntry]) -> String {
    let mut before: Option<&HistoryEntry> = None;
    let columns: Vec<HistoryLineWritten> = lines
        .iter()
        .map(|line| {
            let (at_before, actor_before) = match before {
                Some(previous) => (previous.at, Some(previous.actor.as_str())),
                None => (line.at, None),
            };
            before = Some(line);
            HistoryLineWritten {
                at: (line.at != at_before).then_some(line.at.unix_micros()),
                kind: &line.kind,
                actor: (actor_before != Some(line.actor.as_str())).then_some(line.actor.as_str()),
                message: line.message.as_str(),
                data: history_data_map(&line.data),
            }
        })
        .collect();
    written_short(&columns)
}

/// The lines of one `order_changes` row whose `at` is `row_at`, appended to `lines`.
pub(crate) fn history_lines_from_json(json: &str, row_at: Timestamp, lines: &mut Vec<HistoryEntry>) -> Result<()> {
    let columns: Vec<HistoryLineColumn> = stored_short(json, "history lines")?;
    let (mut at, mut actor): (Timestamp, Option<String>) = (row_at, None);
    lines.reserve(columns.len());
    for line in columns {
        if let Some(micros) = line.at {
            at = Timestamp::from_unix_micros(micros);
        }
        if line.actor.is_some() {
            actor = line.actor;
        }
        lines.push(HistoryEntry {
            at,
            kind: line.kind.into(),
            actor: actor.clone().context("a stored history line has no actor")?,
            message: line.message,
            data: line
                .data
                .into_iter()
                .map(|(key, value)| (Cow::Owned(key), Cow::Owned(value)))
                .collect(),
        });
    }
    Ok(())
}

pub(crate) fn history_data_from_json(json: &str) -> Result<Vec<(Cow<'static, str>, Cow<'static, str>)>> {
    let value = parse(json)?;
    let map = value
        .as_object()
        .ok_or_else(|| anyhow!("stored history data is not an object"))?;
    Ok(map
        .iter()
        .map(|(key, value)| {
            let value = value.as_str().unwrap_or_default().to_owned();
            (Cow::Owned(key.clone()), Cow::Owned(value))
        })
        .collect())
}

/// Keys an order's row names, joined by commas (`orders.refund_ids`, `orders.change_ids`), or none for
/// no keys. A key never holds a comma: refund ids are a prefix and Crockford base32
/// ([`crate::new_id`]), history rows' numbers.
fn comma_joined<T: std::fmt::Display>(keys: impl IntoIterator<Item = T>) -> Option<String> {
    joined(keys, ',')
}

/// Items joined by `separator`, which none of them holds, or none for no items (the keys of an
/// order's row; an outbox row's event types and lines, space-separated).
/// Each item is written straight into the one text (no string of its own).
pub(crate) fn joined<T: std::fmt::Display>(items: impl IntoIterator<Item = T>, separator: char) -> Option<String> {
    use std::fmt::Write as _;
    let mut text: Option<String> = None;
    for item in items {
        let text = match &mut text {
            Some(text) => {
                text.push(separator);
                text
            }
            None => text.insert(String::with_capacity(JOINED_CAPACITY)),
        };
        let start = text.len();
        write!(text, "{item}").expect("writing to a String cannot fail");
        debug_assert!(
            !text[start..].contains(separator),
            "{:?} holds the separator {separator:?}",
            &text[start..]
        );
    }
    text
}

/// What [`joined`] reserves at first: an order's few keys, an outbox row's events, without growing.
const JOINED_CAPACITY: usize = 64;

/// The keys of a [`comma_joined`] column.
fn comma_separated(text: Option<&str>) -> impl Iterator<Item = &str> {
    text.into_iter()
        .flat_map(|text| text.split(','))
        .filter(|key| !key.is_empty())
}

/// An order's refunds as its row names them (`orders.refund_ids`, migration 0011).
pub(crate) fn refund_ids_to_text(refunds: &[rescind_domain::Refund]) -> Option<String> {
    comma_joined(refunds.iter().map(|refund| &refund.id))
}

/// The refund ids an order's row names (see [`refund_ids_to_text`]).
pub(crate) fn refund_ids_from_text(text: Option<&str>) -> impl Iterator<Item = &str> {
    comma_separated(text)
}

/// An order's history rows as its row names them (`orders.change_ids`, migration 0012): their numbers.
pub(crate) fn change_ids_to_text(ids: &[i64]) -> Option<String> {
    comma_joined(ids)
}

/// The history row numbers an order's row names (see [`change_ids_to_text`]).
pub(crate) fn change_ids_from_text(text: Option<&str>) -> Result<Vec<i64>> {
    comma_separated(text)
        .map(|id| {
            id.parse()
                .with_context(|| format!("a stored history row number `{id}`"))
        })
        .collect()
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

#[derive(serde::Serialize, serde::Deserialize)]
struct StockColumn<S> {
    quantity: u32,
    sku: S,
}

pub(crate) fn stock_snapshot_to_json(lines: &[(String, u32)]) -> String {
    let columns: Vec<StockColumn<&str>> = lines
        .iter()
        .map(|(sku, quantity)| StockColumn {
            quantity: *quantity,
            sku: sku.as_str(),
        })
        .collect();
    written(&columns)
}

pub(crate) fn stock_snapshot_from_json(json: &str) -> Result<Vec<(String, u32)>> {
    let columns: Vec<StockColumn<String>> = stored(json, "stock snapshot lines")?;
    Ok(columns.into_iter().map(|line| (line.sku, line.quantity)).collect())
}

/// The scope of a whole-order cancellation, the one almost every cancellation has.
#[derive(serde::Serialize, serde::Deserialize)]
struct WholeOrderScope {
    #[serde(default)]
    after_partial: bool,
}

/// A partial cancellation's lines, amount and restock (B1); `None` for a whole-order cancellation.
pub(crate) fn scope_to_json(scope: &CancelScope) -> String {
    match scope {
        CancelScope::Order { after_partial } => written(&WholeOrderScope {
            after_partial: *after_partial,
        }),
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
    if !partial {
        let scope: WholeOrderScope = stored(json, "cancellation scope fields")?;
        return Ok(CancelScope::Order {
            after_partial: scope.after_partial,
        });
    }
    let value = parse(json)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_s_json_columns_are_the_objects_they_always_were_and_read_back_whole() {
        let customer = Customer {
            name: "山田 太郎".into(),
            email: Some("taro@example.jp".into()),
            phone: None,
        };
        let json = customer_to_json(&customer);
        assert_eq!(json, r#"{"email":"taro@example.jp","name":"山田 太郎","phone":null}"#);
        assert_eq!(customer_from_json(&json).expect("reads back"), customer);

        let address = Address {
            name: "山田 太郎".into(),
            postcode: "150-0001".into(),
            prefecture: Some("東京都".into()),
            province: None,
            address1: "渋谷区神宮前1-2-3".into(),
            address2: Some("\"Villa\" 101".into()),
            phone: None,
        };
        let json = address_to_json(&address);
        assert_eq!(
            json,
            r#"{"address1":"渋谷区神宮前1-2-3","address2":"\"Villa\" 101","name":"山田 太郎","phone":null,"postcode":"150-0001","prefecture":"東京都","province":null}"#
        );
        assert_eq!(address_from_json(&json).expect("reads back"), address);

        let lines = vec![LineItem {
            id: "li_1".into(),
            sku: "TEA-001".into(),
            title: "Sencha".into(),
            quantity: 3,
            cancelled_quantity: 1,
            channel_line_item_id: None,
            price: Money::parse_stored("1200.50").expect("an amount"),
        }];
        let json = line_items_to_json(&lines);
        assert_eq!(
            json,
            r#"[{"cancelled_quantity":1,"channel_line_item_id":null,"id":"li_1","price":"1200.5","quantity":3,"sku":"TEA-001","title":"Sencha"}]"#
        );
        assert_eq!(line_items_from_json(&json).expect("reads back"), lines);

        let steps = vec![Step {
            kind: StepKind::Refund,
            status: StepStatus::Failed,
            message: "card refund refused".into(),
            attempts: 2,
            generation: 1,
            last_error: Some("402".into()),
            updated_at: Timestamp::from_unix_micros(1_764_000_000_000_001),
        }];
        let created_at = Timestamp::from_unix_micros(1_764_000_000_000_000);
        let json = steps_to_json(&steps, created_at);
        // Stored with its commonest pieces as tokens (`phrases`): the same object written out.
        assert!(json.contains('\u{1}'));
        assert_eq!(
            crate::phrases::expand(&json).expect("known tokens"),
            r#"[{"attempts":2,"generation":1,"kind":"refund","last_error":"402","message":"card refund refused","status":"failed","updated_at":1764000000000001}]"#
        );
        assert_eq!(steps_from_json(&json, created_at).expect("reads back"), steps);
        // A step nothing happened to since its cancellation was created keeps only what it says.
        let untouched = vec![Step {
            kind: StepKind::Restock,
            status: StepStatus::Skipped,
            message: "not run".into(),
            attempts: 0,
            generation: 0,
            last_error: None,
            updated_at: created_at,
        }];
        let json = steps_to_json(&untouched, created_at);
        assert_eq!(
            crate::phrases::expand(&json).expect("known tokens"),
            r#"[{"kind":"restock","message":"not run","status":"skipped"}]"#
        );
        assert_eq!(steps_from_json(&json, created_at).expect("reads back"), untouched);
        // Written whole before (and before generations): read back the same.
        let older = r#"[{"attempts":0,"kind":"restock","last_error":null,"message":"not run","status":"skipped","updated_at":1764000000000000}]"#;
        assert_eq!(
            steps_from_json(older, created_at).expect("a step stored whole"),
            untouched
        );

        assert!(
            line_items_from_json(r#"[{"id":"li_1"}]"#).is_err(),
            "a damaged column is an error"
        );
    }
}
