// The queries of one backend. This file is compiled twice, inside `mod sqlite` and `mod postgres`
// of lib.rs, each defining `Db` and `DIALECT`; the SQL is written once for both (`$1` parameters work
// in SQLite too).

use crate::codec::{
    outbound_from_json, outbound_to_json, scope_from_json, scope_to_json, stock_snapshot_from_json, stock_snapshot_to_json,
    address_from_json, address_to_json, customer_from_json, customer_to_json, history_data_from_json,
    history_data_map, history_lines_from_json, history_lines_to_json, line_items_from_json, line_items_to_json, parse_named, payment_from_json, payment_to_json,
    change_ids_from_text, change_ids_to_text, refund_ids_from_text, refund_ids_to_text, scopes_from_text, scopes_to_text, steps_from_json, steps_to_json, warnings_from_json, warnings_to_json,
};
use crate::{
    ShopSetup, CancellationOfOrder, Job, Listing, PushBatch, PushItem, PushOutcome, RequestOfOrder, PaymentProvider, PaymentProviderKind, RestockReport, StockLevel, SyncEntry, Warehouse,
    ApiToken, ChangeError, ConsoleSession, Channel, IdempotencyClaim, ImportError, NewImport, OrderFilter, Page, Settings, SettingsPatch, Shop,
    IDEMPOTENCY_ABANDONED_AFTER_S, IDEMPOTENCY_RETENTION_S, STOCK_PUSH_CLAIM_MAX,
};
use anyhow::{Context, Result};
use rescind_domain::{
    Cancellation, CancellationRequest, CancellationStatus, ChannelKind, Currency, FinancialStatus, FulfillmentStatus, HistoryEntry, Money,
    Order, OrderChange, OrderStatus, Refund, RefundMethod, RequestedBy, SyncKind, SyncRecord, Timestamp,
    RequestStatus, StockMove, StockMoveKind, WarehouseKind, WarehouseSettings, WorkflowSchedule,
};
use rescind_domain::inventory::describe_stock;
use rescind_domain::{event_type, EventType};
use crate::new_id;
use crate::rows::{ActiveWebhook, Rows, Sink, Value};
use sqlx::{Database, Pool, QueryBuilder, Row};
use std::collections::{HashMap, HashSet};

type Connection = <Db as Database>::Connection;
type DbRow = <Db as Database>::Row;

/// A migration with a file for each database: `<name>.sqlite.sql` and `<name>.postgres.sql`.
macro_rules! per_database {
    ($file:literal) => {
        MigrationSql::PerDatabase {
            sqlite: include_str!(concat!("../migrations/", $file, ".sqlite.sql")),
            postgres: include_str!(concat!("../migrations/", $file, ".postgres.sql")),
        }
    };
}

/// The migrations, oldest first. Never edit one that has landed: add a new one.
const MIGRATIONS: &[(i64, &str, MigrationSql)] = &[
    (1, "init", MigrationSql::Same(include_str!("../migrations/0001_init.sql"))),
    (2, "partial_cancellations", MigrationSql::Same(include_str!("../migrations/0002_partial_cancellations.sql"))),
    (3, "stock_push", MigrationSql::Same(include_str!("../migrations/0003_stock_push.sql"))),
    (4, "console_sessions", MigrationSql::Same(include_str!("../migrations/0004_console_sessions.sql"))),
    (5, "outbox_webhooks", MigrationSql::Same(include_str!("../migrations/0005_outbox_webhooks.sql"))),
    (6, "order_changes", MigrationSql::Same(include_str!("../migrations/0006_order_changes.sql"))),
    (
        7,
        "outbox_without_time_index",
        MigrationSql::Same(include_str!("../migrations/0007_outbox_without_time_index.sql")),
    ),
    (8, "requests_by_order", MigrationSql::Same(include_str!("../migrations/0008_requests_by_order.sql"))),
    (
        9,
        "outbox_events_without_id_key",
        per_database!("0009_outbox_events_without_id_key"),
    ),
    (
        10,
        "orders_by_outbound_only_with_one",
        MigrationSql::Same(include_str!("../migrations/0010_orders_by_outbound_only_with_one.sql")),
    ),
    (11, "attached_by_id", MigrationSql::Same(include_str!("../migrations/0011_attached_by_id.sql"))),
    (12, "history_by_id", MigrationSql::Same(include_str!("../migrations/0012_history_by_id.sql"))),
    (
        13,
        "event_payload_from_history",
        MigrationSql::Same(include_str!("../migrations/0013_event_payload_from_history.sql")),
    ),
    (
        14,
        "outbox_row_per_change",
        per_database!("0014_outbox_row_per_change"),
    ),
    (
        15,
        "cancellations_in_effect_without_in_list",
        per_database!("0015_cancellations_in_effect_without_in_list"),
    ),
    (
        16,
        "orders_named_per_statement",
        per_database!("0016_orders_named_per_statement"),
    ),
    (17, "text_compared_bytewise", per_database!("0017_text_compared_bytewise")),
    (18, "stock_and_proofs_function", per_database!("0018_stock_and_proofs_function")),
    (19, "cancellations_read_with_their_orders", per_database!("0019_cancellations_read_with_their_orders")),
    (20, "stock_read_with_the_orders", per_database!("0020_stock_read_with_the_orders")),
    (
        21,
        "stored_responses_compressed_with_lz4",
        per_database!("0021_stored_responses_compressed_with_lz4"),
    ),
];

/// A migration's SQL: one text for both databases (with the dialect's placeholders), or one each
/// where they cannot say it alike.
enum MigrationSql {
    Same(&'static str),
    PerDatabase { sqlite: &'static str, postgres: &'static str },
}

impl MigrationSql {
    fn for_database(&self, kind: crate::DatabaseKind) -> &'static str {
        match (self, kind) {
            (MigrationSql::Same(sql), _) => sql,
            (MigrationSql::PerDatabase { sqlite, .. }, crate::DatabaseKind::Sqlite) => sqlite,
            (MigrationSql::PerDatabase { postgres, .. }, crate::DatabaseKind::Postgres) => postgres,
        }
    }
}

const ORDER_COLUMNS: &str = "id, shop_id, number, channel_id, channel_kind, channel_order_id, status, \
    financial_status, fulfillment_status, currency, sub_total, total_shipping, total_tax, total_discount, \
    total_price, total_paid, total_refund_price, cancel_reason, canceled_at, customer, shipping_address, \
    line_items, payment, inventory_deducted, stock_snapshot, restocked, warehouse_id, outbound, warnings, cancellation_id, \
    refund_ids, cancellation_request_id, created_at, updated_at";

const CANCELLATION_COLUMNS: &str = "id, order_id, status, requested_by, reason, reason_code, reason_detail, \
    staff_note, refund, refund_method, restock, notify_customer, needs_attention, steps, fulfillment_status_before, \
    financial_status_before, reauthorization_generation, fee, created_at, updated_at, completed_at, partial, scope";

const REFUND_COLUMNS: &str = "id, order_id, cancellation_id, amount, method, note, actor, created_at";

/// The pools of one database. On SQLite `write` has a single connection; on PostgreSQL both are the
/// same pool.
#[derive(Clone, Debug)]
pub struct Backend {
    write: Pool<Db>,
    read: Pool<Db>,
    /// Groups single-order changes into shared transactions (group commit).
    batcher: batch::Batcher,
    /// Channels and payment providers already read (their rows never change).
    known: std::sync::Arc<crate::Known>,
}

/// A row of either kind: sqlx's, or rusqlite's on the SQLite writer's own handle. The row decoders
/// below read both.
trait Read {
    fn column<T: Readable>(&self, name: &str) -> Result<T>;

    /// A text column handed to `read` where the row holds it (NULL as `None`), without a String of
    /// its own: an order's row has some twenty columns that are only parsed (its statuses, amounts
    /// and JSON), each of which was copied out first (thirty-seventh session).
    fn text<T>(&self, name: &str, read: impl FnOnce(Option<&str>) -> Result<T>) -> Result<T>;

    /// A NOT NULL text column, parsed in place.
    fn parsed<T>(&self, name: &str, parse: impl FnOnce(&str) -> Result<T>) -> Result<T> {
        self.text(name, |text| parse(text.ok_or_else(|| anyhow::anyhow!("the column {name} is NULL"))?))
    }

    /// A text column that may be NULL, parsed in place.
    fn parsed_optional<T>(&self, name: &str, parse: impl FnOnce(&str) -> Result<T>) -> Result<Option<T>> {
        self.text(name, |text| text.map(parse).transpose())
    }
}

/// A column type both sqlx and rusqlite decode.
trait Readable: for<'r> sqlx::Decode<'r, Db> + sqlx::Type<Db> + rusqlite::types::FromSql {}

impl<T: for<'r> sqlx::Decode<'r, Db> + sqlx::Type<Db> + rusqlite::types::FromSql> Readable for T {}


fn time(micros: i64) -> Timestamp {
    Timestamp::from_unix_micros(micros)
}

fn money_column(row: &impl Read, column: &str) -> Result<Money> {
    row.parsed(column, |text| Ok(Money::parse_stored(text)?))
}

/// An order as its row holds it, and the ids of what is stored apart from it: its current
/// cancellation, its refunds and its latest cancellation request (read by these ids, never by order).
struct OrderRow {
    order: Order,
    cancellation_id: Option<String>,
    refund_ids: Option<String>,
    request_id: Option<String>,
}

fn order_from_row(row: &impl Read) -> Result<OrderRow> {
    let order = Order {
        id: row.column("id")?,
        shop_id: row.column("shop_id")?,
        number: row.column("number")?,
        channel_id: row.column("channel_id")?,
        channel_kind: row.parsed("channel_kind", |text| parse_named(text, ChannelKind::parse, "channel kind"))?,
        channel_order_id: row.column("channel_order_id")?,
        status: row.parsed("status", |text| parse_named(text, OrderStatus::parse, "order status"))?,
        financial_status: row.parsed("financial_status", |text| parse_named(text, FinancialStatus::parse, "financial status"))?,
        fulfillment_status: row.parsed("fulfillment_status", |text| parse_named(text, FulfillmentStatus::parse, "fulfillment status"))?,
        currency: row.parsed("currency", |text| Ok(Currency::parse(text)?))?,
        sub_total: money_column(row, "sub_total")?,
        total_shipping: money_column(row, "total_shipping")?,
        total_tax: money_column(row, "total_tax")?,
        total_discount: money_column(row, "total_discount")?,
        total_price: money_column(row, "total_price")?,
        total_paid: money_column(row, "total_paid")?,
        total_refund_price: money_column(row, "total_refund_price")?,
        cancel_reason: row.column("cancel_reason")?,
        canceled_at: row.column::<Option<i64>>("canceled_at")?.map(time),
        created_at: time(row.column("created_at")?),
        updated_at: time(row.column("updated_at")?),
        customer: row.parsed("customer", customer_from_json)?,
        shipping_address: row.parsed("shipping_address", address_from_json)?,
        line_items: row.parsed("line_items", line_items_from_json)?,
        payment: row.parsed_optional("payment", payment_from_json)?,
        inventory_deducted: row.column("inventory_deducted")?,
        stock_snapshot: row.parsed("stock_snapshot", stock_snapshot_from_json)?,
        restocked: row.column("restocked")?,
        warehouse_id: row.column("warehouse_id")?,
        outbound: row.parsed_optional("outbound", outbound_from_json)?,
        warnings: row.parsed("warnings", warnings_from_json)?,
        refunds: Vec::new(),
        cancellation: None,
        cancellation_request: None,
    };
    Ok(OrderRow {
        order,
        cancellation_id: row.column("cancellation_id")?,
        refund_ids: row.column("refund_ids")?,
        request_id: row.column("cancellation_request_id")?,
    })
}

fn cancellation_from_row(row: &impl Read) -> Result<(String, Cancellation)> {
    let created_at = time(row.column("created_at")?);
    let cancellation = Cancellation {
        id: row.column("id")?,
        status: row.parsed("status", |text| parse_named(text, CancellationStatus::parse, "cancellation status"))?,
        scope: {
            let partial = row.column("partial")?;
            row.parsed("scope", |text| scope_from_json(partial, text))?
        },
        requested_by: row.parsed("requested_by", |text| parse_named(text, RequestedBy::parse, "requester"))?,
        reason: row.column("reason")?,
        reason_code: row.column("reason_code")?,
        reason_detail: row.column("reason_detail")?,
        staff_note: row.column("staff_note")?,
        refund: row.column("refund")?,
        refund_method: row.parsed_optional("refund_method", |method| {
            parse_named(method, RefundMethod::parse, "refund method")
        })?,
        restock: row.column("restock")?,
        notify_customer: row.column("notify_customer")?,
        needs_attention: row.column("needs_attention")?,
        steps: row.parsed("steps", |text| steps_from_json(text, created_at))?,
        fulfillment_status_before: row.parsed("fulfillment_status_before", |text| parse_named(text, FulfillmentStatus::parse, "fulfillment status"))?,
        financial_status_before: row.parsed("financial_status_before", |text| parse_named(text, FinancialStatus::parse, "financial status"))?,
        reauthorization_generation: u32::try_from(row.column::<i64>("reauthorization_generation")?)?,
        fee: row.parsed_optional("fee", |text| Ok(Money::parse_stored(text)?))?,
        created_at,
        updated_at: time(row.column("updated_at")?),
        completed_at: row.column::<Option<i64>>("completed_at")?.map(time),
    };
    Ok((row.column("order_id")?, cancellation))
}

fn refund_from_row(row: &impl Read) -> Result<(String, Refund)> {
    let refund = Refund {
        id: row.column("id")?,
        amount: money_column(row, "amount")?,
        method: row.parsed("method", |text| parse_named(text, RefundMethod::parse, "refund method"))?,
        note: row.column("note")?,
        cancellation_id: row.column("cancellation_id")?,
        actor: row.column("actor")?,
        created_at: time(row.column("created_at")?),
    };
    Ok((row.column("order_id")?, refund))
}

/// A page from rows fetched with `LIMIT limit + 1`: the extra row only tells that more follow, and
/// the last item's id is the cursor of the next page.
fn page_of<T>(
    mut rows: Vec<DbRow>,
    limit: u32,
    cursor_of: impl Fn(&T) -> String,
    item: impl Fn(&DbRow) -> Result<T>,
) -> Result<Page<T>> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let items = rows.iter().map(item).collect::<Result<Vec<_>>>()?;
    let next_cursor = if more { items.last().map(cursor_of) } else { None };
    Ok(Page { items, next_cursor })
}

const REQUEST_COLUMNS: &str =
    "id, order_id, status, reason, decision_reason, cancellation_id, created_at, decided_at";

fn request_from_row(row: &impl Read) -> Result<(String, CancellationRequest)> {
    let request = CancellationRequest {
        id: row.column("id")?,
        status: row.parsed("status", |text| parse_named(text, RequestStatus::parse, "request status"))?,
        reason: row.column("reason")?,
        decision_reason: row.column("decision_reason")?,
        cancellation_id: row.column("cancellation_id")?,
        created_at: time(row.column("created_at")?),
        decided_at: row.column::<Option<i64>>("decided_at")?.map(time),
    };
    Ok((row.column("order_id")?, request))
}

fn channel_from_row(row: &impl Read) -> Result<Channel> {
    Ok(Channel {
        id: row.column("id")?,
        shop_id: row.column("shop_id")?,
        kind: row.parsed("kind", |text| parse_named(text, ChannelKind::parse, "channel kind"))?,
        name: row.column("name")?,
        base_url: row.column("base_url")?,
        credentials: row.column("credentials")?,
        cancel_sync: row.column("cancel_sync")?,
        created_at: time(row.column("created_at")?),
    })
}

/// Escapes `%`, `_` and `\` so user text matches literally inside a LIKE pattern.
fn like_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for character in text.chars() {
        if matches!(character, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(character);
    }
    pattern.push('%');
    pattern
}

/// Loads orders (rows already fetched) with their current cancellation, their refunds and their
/// latest cancellation request, each read by the ids the order's row names: an order with none costs
/// no statement for them, and no index by order is written for them.
async fn complete_orders(connection: &mut Connection, rows: Vec<DbRow>) -> Result<Vec<Order>> {
    complete_orders_read(connection, rows, CancellationsRead::Apart).await
}

/// Where the cancellations of the orders' rows come from.
#[derive(Clone, Copy)]
enum CancellationsRead {
    /// Read by [`complete_orders_read`] in a statement of their own.
    Apart,
    /// On the orders' rows, as columns named `c_` and the cancellation's column
    /// ([`CURRENT_CANCELLATIONS`], [`current_cancellation_columns`]); NULL where the order has none.
    OnTheRows,
}

/// The prefix of a cancellation's columns on the rows of its order ([`CancellationsRead::OnTheRows`]).
const CANCELLATION_PREFIX: &str = "c_";

/// A row's columns that carry a prefix, read by the names without it.
struct Prefixed<'r, R>(&'r R);

impl<R: Read> Read for Prefixed<'_, R> {
    fn column<T: Readable>(&self, name: &str) -> Result<T> {
        self.0.column(&format!("{CANCELLATION_PREFIX}{name}"))
    }

    fn text<T>(&self, name: &str, read: impl FnOnce(Option<&str>) -> Result<T>) -> Result<T> {
        self.0.text(&format!("{CANCELLATION_PREFIX}{name}"), read)
    }
}

async fn complete_orders_read(
    connection: &mut Connection,
    rows: Vec<DbRow>,
    read: CancellationsRead,
) -> Result<Vec<Order>> {
    let mut orders = Vec::with_capacity(rows.len());
    let mut cancellation_ids = Vec::new();
    let mut refund_ids = Vec::new();
    let mut request_ids = Vec::new();
    let mut cancellations: HashMap<String, Cancellation> = HashMap::new();
    for row in &rows {
        let stored = order_from_row(row)?;
        match read {
            CancellationsRead::Apart => cancellation_ids.extend(stored.cancellation_id),
            CancellationsRead::OnTheRows => {
                if Prefixed(row).text("id", |id| Ok(id.is_some()))? {
                    let (order_id, cancellation) = cancellation_from_row(&Prefixed(row))?;
                    cancellations.insert(order_id, cancellation);
                }
            }
        }
        refund_ids.extend(refund_ids_from_text(stored.refund_ids.as_deref()).map(str::to_owned));
        request_ids.extend(stored.request_id);
        orders.push(stored.order);
    }
    // In statements of their own, after the orders' rows are locked — not joined to them: on
    // PostgreSQL (read committed) a row locked after waiting for another transaction is re-read at
    // its newest version, but a joined row of a table not locked is the one the statement first saw,
    // so the joined cancellation could predate the change that was just waited for (a warehouse's
    // answer sent a thousand times at once then applied ten times; tried, BENCHMARKS.md). (The
    // cancellations on the rows were read the same way: after the locks, by a snapshot of their own.)
    for row in rows_by_id(connection, format!("SELECT {CANCELLATION_COLUMNS} FROM cancellations WHERE id IN ("), cancellation_ids).await.context("failed to load cancellations")? {
        let (order_id, cancellation) = cancellation_from_row(&row)?;
        cancellations.insert(order_id, cancellation);
    }
    let mut refunds: HashMap<String, Vec<Refund>> = HashMap::new();
    for row in rows_by_id(connection, format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE id IN ("), refund_ids).await.context("failed to load refunds")? {
        let (order_id, refund) = refund_from_row(&row)?;
        refunds.entry(order_id).or_default().push(refund);
    }
    let mut requests: HashMap<String, CancellationRequest> = HashMap::new();
    for row in rows_by_id(connection, format!("SELECT {REQUEST_COLUMNS} FROM cancellation_requests WHERE id IN ("), request_ids).await.context("failed to load cancellation requests")? {
        let (order_id, request) = request_from_row(&row)?;
        requests.insert(order_id, request);
    }
    for order in &mut orders {
        order.cancellation = cancellations.remove(&order.id);
        order.refunds = refunds.remove(&order.id).map(oldest_first).unwrap_or_default();
        order.cancellation_request = requests.remove(&order.id);
    }
    Ok(orders)
}

/// An order's refunds in the order they were made (as its history tells them).
fn oldest_first(mut refunds: Vec<Refund>) -> Vec<Refund> {
    refunds.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    refunds
}

/// The rows `select` (a `SELECT … WHERE id IN (` to be completed) finds for these ids, in as few
/// statements as the list's limit allows; none when there are no ids.
async fn rows_by_id(connection: &mut Connection, select: String, ids: Vec<String>) -> Result<Vec<DbRow>> {
    let mut rows = Vec::new();
    for chunk in ids.chunks(IN_LIST_MAX) {
        let mut query = QueryBuilder::<Db>::new(select.as_str());
        push_in_list(&mut query, chunk.iter().cloned());
        query.push(")");
        rows.extend(query.build().fetch_all(&mut *connection).await?);
    }
    Ok(rows)
}

/// The most values one `IN (…)` list binds (its power-of-two padding stays within
/// [`STATEMENT_PARAMS_MAX`]).
const IN_LIST_MAX: usize = 4096;

/// Pushes the values of an `IN (…)` list, padded to a power-of-two length by repeating the last one
/// (a value listed twice matches nothing more), so that lists of every length share a few prepared
/// statements; an empty list is `NULL`, which matches nothing.
fn push_in_list(query: &mut QueryBuilder<'_, Db>, values: impl IntoIterator<Item = String>) {
    let values: Vec<String> = values.into_iter().collect();
    if values.is_empty() {
        query.push("NULL");
        return;
    }
    let mut list = query.separated(", ");
    for value in padded(&values) {
        list.push_bind(value.clone());
    }
}

/// `items` and then its last item again up to a power-of-two length: a list of any length as one of
/// a few statement shapes (see [`push_in_list`]); nothing when `items` is empty.
fn padded<T>(items: &[T]) -> impl Iterator<Item = &T> {
    let extra = items.len().next_power_of_two() - items.len();
    items.iter().chain(items.last().into_iter().flat_map(move |last| std::iter::repeat_n(last, extra)))
}

/// The history rows (`order_changes`) numbered `ids`: each row's number, time and lines as stored.
async fn order_changes_by_id(connection: &mut Connection, ids: &[i64]) -> Result<Vec<(i64, i64, String)>> {
    let mut changes = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(IN_LIST_MAX) {
        let mut query = QueryBuilder::<Db>::new("SELECT id, at, lines FROM order_changes WHERE id IN (");
        let mut list = query.separated(", ");
        for id in padded(chunk) {
            list.push_bind(*id);
        }
        query.push(")");
        for row in query.build().fetch_all(&mut *connection).await? {
            changes.push((row.try_get("id")?, row.try_get("at")?, row.try_get("lines")?));
        }
    }
    Ok(changes)
}

/// The condition that picks the shop's orders of `ids`: by the primary key, the shop checked on the
/// rows it finds (a row of another shop is neither answered nor locked). With `shop_id = $1` as a
/// condition an index could take, PostgreSQL's generic plan of the prepared statement could read the
/// shop's whole part of `orders_by_shop` beside the key (a `BitmapAnd`, seen in a benchmark: 7 195
/// entries read to find 32 orders) — work that grows with the shop. `shop_id || ''` is no index's
/// column, so the key alone is used, on both backends.
fn push_orders_of_shop(query: &mut QueryBuilder<'_, Db>, shop_id: &str, ids: &[String], listed: Listed) {
    query.push("id");
    push_listed(query, ids, listed);
    query.push(" AND shop_id || '' = ");
    query.push_bind(shop_id.to_owned());
}

/// How a statement is given a list of ids.
#[derive(Clone, Copy)]
enum Listed {
    /// An `IN` list ([`push_in_list`]).
    InList,
    /// One array parameter on PostgreSQL (`push_ids`; an `IN` list on SQLite, which has no arrays).
    Array,
}

/// `IN (…)` or `= ANY (…)` with `ids`, as `listed` says.
fn push_listed(query: &mut QueryBuilder<'_, Db>, ids: &[String], listed: Listed) {
    match listed {
        Listed::InList => {
            query.push(" IN (");
            push_in_list(query, ids.iter().cloned());
            query.push(")");
        }
        Listed::Array => push_ids(query, ids),
    }
}

/// The condition that picks the shop's orders of `ids` ([`push_orders_of_shop`]), then their order and
/// the lock where the backend locks rows: locks are taken in id order, so two changes of many orders
/// cannot deadlock.
fn push_orders_to_lock(query: &mut QueryBuilder<'_, Db>, shop_id: &str, ids: &[String], listed: Listed) {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    push_orders_of_shop(query, shop_id, &sorted, listed);
    query.push(" ORDER BY id ");
    query.push(DIALECT.lock_order);
}

/// Loads the orders of `ids` (those that exist in the shop), locked for the transaction where the
/// backend locks rows.
async fn load_orders_for_change(connection: &mut Connection, shop_id: &str, ids: &[String]) -> Result<Vec<Order>> {
    let mut query = QueryBuilder::<Db>::new(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE "));
    push_orders_to_lock(&mut query, shop_id, ids, Listed::InList);
    let rows = query.build().fetch_all(&mut *connection).await.context("failed to load orders for a change")?;
    complete_orders(connection, rows).await
}

/// [`load_orders_for_change`] for the group writer on PostgreSQL, which also takes `numbers` history
/// row numbers (`order_changes.id`) from their sequence in the same statement, once every order is
/// locked: the group's history rows are then written with the rest of its write instead of in a round
/// trip of their own, whose only purpose was to learn the numbers the order's row names
/// (`change_ids`). Taken under the orders' locks, an order's history rows still number in the order
/// its changes commit, which its history is read in. Numbers not used are skipped, as a rolled-back
/// insert's are. The numbers come back in ascending order, with the first row. The orders'
/// cancellations come on their rows, read after the locks (`current`, [`CURRENT_CANCELLATIONS`]): one
/// round trip fewer per group. So does, for the orders of `restocking` (those whose jobs may run a
/// restock), the group's read of their levels and proofs ([`STOCK_READ_COLUMNS`]): one more.
async fn load_orders_numbering_changes(
    connection: &mut Connection,
    shop_id: &str,
    ids: &[String],
    numbers: usize,
    restocking: &[String],
) -> Result<NumberedLoad> {
    let mut query = QueryBuilder::<Db>::new(format!("WITH locked AS (SELECT {ORDER_COLUMNS} FROM orders WHERE "));
    // With the stock read, PostgreSQL planned the statement anew for every group while the ids were
    // `IN` lists (0.39 ms of a workflow group's bind), and kept a plan once they were arrays (0.15 ms);
    // without it, the `IN` lists' plan is kept and arrays were planned anew for groups of a few (0.42
    // against 0.13 ms at 8 clients).
    let listed = if restocking.is_empty() { Listed::InList } else { Listed::Array };
    push_orders_to_lock(&mut query, shop_id, ids, listed);
    // `count(*)` reads every locked row before the first number is taken. The series in a select
    // list, not in `FROM`: no tuplestore for it (`push_rows`).
    query.push(
        "), numbers AS (SELECT array_agg(nextval('order_changes_id_seq') ORDER BY n) AS spare_change_ids \
         FROM (SELECT generate_series(1, LEAST((SELECT count(*) FROM locked), 1) * ",
    );
    query.push_bind(i64::try_from(numbers)?);
    query.push(") AS n) AS series), ");
    query.push(CURRENT_CANCELLATIONS);
    if !restocking.is_empty() {
        query.push(", stock AS (SELECT * FROM rescind_stock_of_restocks(");
        query.push_bind(shop_id.to_owned());
        query.push(", ARRAY(SELECT id FROM locked WHERE id");
        push_listed(&mut query, restocking, Listed::Array);
        query.push(")))");
    }
    // The numbers (and the stock read) come with the first row only: on every row they were a group's
    // whole array again (64 numbers on each of 32 rows), each built, sent and parsed for nothing.
    query.push(" SELECT locked.*, CASE WHEN locked.id = first.id THEN numbers.spare_change_ids END AS spare_change_ids, ");
    query.push(current_cancellation_columns());
    if !restocking.is_empty() {
        query.push(STOCK_READ_COLUMNS);
    }
    query.push(
        " FROM locked CROSS JOIN numbers CROSS JOIN (SELECT min(id) AS id FROM locked) AS first \
         LEFT JOIN current ON current.id = locked.cancellation_id ORDER BY locked.id",
    );
    let rows = query.build().fetch_all(&mut *connection).await.context("failed to load orders for a change")?;
    let (mut spare, stock) = match rows.first() {
        Some(row) => (spare_change_ids(row)?, stock_read(row, !restocking.is_empty())?),
        None => (Vec::new(), None),
    };
    spare.sort_unstable();
    Ok(NumberedLoad {
        orders: complete_orders_read(connection, rows, CancellationsRead::OnTheRows).await?,
        spare_change_ids: spare,
        stock,
    })
}

/// What [`load_orders_numbering_changes`] read.
struct NumberedLoad {
    orders: Vec<Order>,
    spare_change_ids: Vec<i64>,
    stock: Option<StockRead>,
}

/// The levels and proofs read with a group's orders: the SKUs and orders asked about, and what was
/// found of them.
struct StockRead {
    skus: Vec<String>,
    orders: Vec<String>,
    known: crate::rows::StockAndProofs,
}

/// The `current` part of [`load_orders_numbering_changes`]'s statement: the cancellations of the
/// `locked` orders, read by `rescind_cancellations_now` (migration 0019) once every order is locked —
/// its argument reads them all first — with a snapshot of its own, as a statement of their own would.
const CURRENT_CANCELLATIONS: &str = "current AS (SELECT * FROM rescind_cancellations_now(ARRAY(SELECT \
     cancellation_id FROM locked WHERE cancellation_id IS NOT NULL)) \
     WHERE EXISTS (SELECT 1 FROM locked WHERE cancellation_id IS NOT NULL))";

/// The columns of the `current` cancellations on the orders' rows, each named with [`CANCELLATION_PREFIX`].
fn current_cancellation_columns() -> &'static str {
    static SELECTED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SELECTED.get_or_init(|| {
        let columns: Vec<String> = CANCELLATION_COLUMNS
            .split(", ")
            .map(|column| format!("current.{column} AS {CANCELLATION_PREFIX}{column}"))
            .collect();
        columns.join(", ")
    })
}

/// The stock read's column, on the first row: what `rescind_stock_of_restocks` (migration 0020) read,
/// four texts a row (what, and up to three values; '' for none). It reads, for the orders whose jobs
/// may run a restock, the levels of the SKUs they hold back and the proofs of their current
/// cancellations, as the group's decisions would (`GroupStock::learn`): the levels locked in SKU order
/// after the shop's orders, by queries with a snapshot taken then; whatever else the decisions want (a
/// partial cancellation's lines outside the snapshot, a cancellation made in the group) they read
/// themselves.
const STOCK_READ_COLUMNS: &str = ", CASE WHEN locked.id = first.id THEN ARRAY(SELECT unnest(ARRAY[what, \
     coalesce(value1, ''), coalesce(value2, ''), coalesce(value3, '')]) FROM stock) END AS stock_read";

/// The stock read on the first row of [`load_orders_numbering_changes`]'s statement, when it had one.
fn stock_read(row: &DbRow, asked: bool) -> Result<Option<StockRead>> {
    if !asked {
        return Ok(None);
    }
    let mut read = StockRead {
        skus: Vec::new(),
        orders: Vec::new(),
        known: crate::rows::StockAndProofs::default(),
    };
    let texts = texts_column(row, "stock_read")?;
    for found in texts.chunks(4) {
        let [what, first, second, third] = found else { anyhow::bail!("the stock read comes in fours") };
        match what.as_str() {
            "sku" => read.skus.push(first.clone()),
            "order" => read.orders.push(first.clone()),
            "stocked" => read.known.stocked.push(first.clone()),
            "proof" => read.known.proofs.push((first.clone(), second.clone(), third.clone())),
            other => anyhow::bail!("the stock read has rows of an unknown kind: {other}"),
        }
    }
    Ok(Some(read))
}

/// A shop's channels, by id.
const SHOP_CHANNELS_SQL: &str =
    "SELECT id, shop_id, kind, name, base_url, credentials, cancel_sync, created_at FROM channels WHERE shop_id = $1 ORDER BY id";

async fn load_channels(connection: &mut Connection, shop_id: &str) -> Result<Vec<Channel>> {
    let rows = sqlx::query(SHOP_CHANNELS_SQL)
    .bind(shop_id)
    .fetch_all(&mut *connection)
    .await
    .context("failed to load the shop's channels")?;
    rows.iter().map(channel_from_row).collect()
}

async fn load_warehouses(connection: &mut Connection, shop_id: &str) -> Result<Vec<Warehouse>> {
    let rows = sqlx::query(&format!("SELECT {WAREHOUSE_COLUMNS} FROM warehouses WHERE shop_id = $1 ORDER BY id"))
        .bind(shop_id)
        .fetch_all(&mut *connection)
        .await
        .context("failed to load the shop's warehouses")?;
    rows.iter().map(warehouse_from_row).collect()
}

async fn load_shop_setup(connection: &mut Connection, shop_id: &str) -> Result<ShopSetup> {
    Ok(ShopSetup {
        channels: load_channels(connection, shop_id).await?,
        warehouses: load_warehouses(connection, shop_id).await?,
    })
}

/// The most bind parameters one statement takes: below SQLite's 32,766 and PostgreSQL's 65,535.
const STATEMENT_PARAMS_MAX: usize = 30_000;

/// Splits rows into statements of at most [`STATEMENT_PARAMS_MAX`] parameters, each a power of two
/// rows long: a group of any size is then written with a handful of statement shapes that stay
/// prepared, instead of a new statement to parse for every group size.
fn statement_chunks<T>(rows: &[T], params_per_row: usize) -> impl Iterator<Item = &[T]> {
    let most = STATEMENT_PARAMS_MAX / params_per_row;
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let length = 1 << rest.len().min(most).ilog2();
        let (chunk, after) = rest.split_at(length);
        rest = after;
        Some(chunk)
    })
}

#[cfg(test)]
mod chunk_tests {
    #[test]
    fn rows_go_out_in_power_of_two_statements_within_the_parameter_limit() {
        let rows: Vec<u32> = (0..1000).collect();
        let lengths: Vec<usize> = super::statement_chunks(&rows, 36).map(<[u32]>::len).collect();
        assert_eq!(lengths, [512, 256, 128, 64, 32, 8]);
        let lengths: Vec<usize> = super::statement_chunks(&rows[..7], 1).map(<[u32]>::len).collect();
        assert_eq!(lengths, [4, 2, 1]);
        assert_eq!(super::statement_chunks(&rows[..0], 9).count(), 0);
    }
}

#[cfg(test)]
mod payload_tests {
    use super::{history_data_map, history_lines_from_json, history_lines_to_json, EventPayload};
    use rescind_domain::{Actor, HistoryEntry, Timestamp};
    use std::borrow::Cow;

    #[test]
    fn an_event_payload_and_history_data_are_the_json_objects_they_always_were() {
        let as_tree = |data: &[(Cow<'static, str>, Cow<'static, str>)]| -> serde_json::Map<String, serde_json::Value> {
            data.iter().map(|(key, value)| (key.to_string(), serde_json::Value::from(value.as_ref()))).collect()
        };
        // Keys in order, each once (written as they are), and keys out of order, one repeated.
        let in_order: Vec<(Cow<'static, str>, Cow<'static, str>)> =
            vec![("amount".into(), "¥2,600".into()), ("method".into(), "card".into()), ("refund_id".into(), "ref_1".to_owned().into())];
        let data: Vec<(Cow<'static, str>, Cow<'static, str>)> = vec![
            ("refund".into(), "¥2,600".into()),
            ("channel".into(), "first \"quoted\"".into()),
            ("channel".into(), "second".into()),
        ];
        for data in [&in_order, &data] {
            assert_eq!(
                serde_json::to_string(&history_data_map(data)).expect("the data serializes"),
                serde_json::Value::Object(as_tree(data)).to_string()
            );
        }
        let as_tree = as_tree(&data);
        let payload = serde_json::to_string(&EventPayload {
            actor: "merchant",
            channel_order_id: None,
            data: history_data_map(&data),
            message: "Cancelled",
            order_id: "ord_1",
            order_number: "#1001",
            order_status: "cancelled",
        })
        .expect("the payload serializes");
        let tree = serde_json::json!({
            "order_id": "ord_1", "order_number": "#1001", "channel_order_id": None::<String>,
            "order_status": "cancelled", "message": "Cancelled", "actor": "merchant", "data": as_tree,
        });
        assert_eq!(payload, tree.to_string());
    }

    #[test]
    fn a_change_s_history_lines_come_back_from_its_one_row_as_they_were_written() {
        let at = Timestamp::from_unix_micros(1_764_000_000_123_456);
        let later = Timestamp::from_unix_micros(1_764_000_000_200_000);
        let token = Actor::Token("tok_1".to_owned());
        let lines = vec![
            HistoryEntry::new(at, "cancellation.created", &token, "Cancellation requested: \"late\" ¥2,600")
                .with("requested_by", "merchant")
                .with("cancellation_id", "can_1"),
            HistoryEntry::new(at, "step.refund", &token, "refund: refunded ¥2,600"),
            HistoryEntry::new(later, "step.channel_cancel", &Actor::System, "channel_cancel: done"),
            HistoryEntry::new(later, "order.cancelled", &token, "Order cancelled."),
        ];
        let stored = history_lines_to_json(&lines);
        // Kept with its commonest pieces as tokens (`phrases`), written out the same when read.
        let json = crate::phrases::expand(&stored).expect("the row's tokens are known").into_owned();
        assert!(stored.len() < json.len() / 2, "{} of {} bytes", stored.len(), json.len());
        // The row's time and a repeated time or actor are not written again, nor data that is empty.
        assert_eq!(json.matches("\"at\"").count(), 1, "{json}");
        assert_eq!(json.matches("\"actor\"").count(), 3, "{json}");
        assert_eq!(json.matches("\"data\"").count(), 1, "{json}");
        let mut loaded = vec![HistoryEntry::new(at, "order.imported", &Actor::System, "an older line")];
        history_lines_from_json(&stored, at, &mut loaded).expect("the lines load");
        assert_eq!(loaded.len(), 5, "appended after the lines already read");
        assert_eq!(loaded[2..], lines[1..]);
        assert_eq!((loaded[1].at, &loaded[1].actor, &loaded[1].message), (at, &lines[0].actor, &lines[0].message));
        // The data comes back in key order, as a line's own data column always gave it.
        assert_eq!(
            loaded[1].data,
            [("cancellation_id".into(), "can_1".into()), ("requested_by".into(), "merchant".into())]
        );
        assert!(
            history_lines_from_json("[{\"at\": 1}]", at, &mut loaded).is_err(),
            "a damaged row is an error, not lost lines"
        );
        assert!(
            history_lines_from_json("[{\"kind\": \"k\", \"message\": \"m\"}]", at, &mut loaded).is_err(),
            "a first line without its actor is damaged"
        );
    }

    #[test]
    fn history_lines_written_whole_before_read_back_as_they_were() {
        let at = Timestamp::from_unix_micros(1_764_000_000_123_456);
        let whole = r#"[{"at":1764000000123456,"kind":"cancellation.created","actor":"token:tok_1","message":"Requested","data":{"cancellation_id":"can_1"}},{"at":1764000000999999,"kind":"order.cancelled","actor":"system","message":"Order cancelled.","data":{}}]"#;
        let mut loaded = Vec::new();
        history_lines_from_json(whole, at, &mut loaded).expect("the lines load");
        assert_eq!(
            loaded,
            vec![
                HistoryEntry::new(at, "cancellation.created", &Actor::Token("tok_1".to_owned()), "Requested")
                    .with("cancellation_id", "can_1"),
                HistoryEntry::new(
                    Timestamp::from_unix_micros(1_764_000_000_999_999),
                    "order.cancelled",
                    &Actor::System,
                    "Order cancelled."
                ),
            ]
        );
    }
}

/// The last version of each distinct item (by key), in the order the keys were first seen: a group
/// that changed one order twice writes its row once (PostgreSQL refuses to upsert a row twice in one
/// statement).
fn last_of_each<'a, T>(items: impl IntoIterator<Item = (&'a str, T)>) -> Vec<T> {
    let mut position: HashMap<&str, usize> = HashMap::new();
    let mut latest: Vec<T> = Vec::new();
    for (key, item) in items {
        match position.get(key) {
            Some(&index) => latest[index] = item,
            None => {
                position.insert(key, latest.len());
                latest.push(item);
            }
        }
    }
    latest
}

/// The numbers of the history rows a write added, by order.
type NewChanges = HashMap<String, Vec<i64>>;

/// Appends the history of changes, each the lines one change wrote to its order, as one
/// `order_changes` row per change (migration 0006), and answers the rows' numbers by order: the
/// order's row names them (`change_ids`, migration 0012), so the history is read by key and no index
/// by order is written. The events among the lines go to the outbox apart ([`insert_events_of`]).
async fn insert_history<S: Sink>(sink: &mut S, changes: &[(&Order, &[HistoryEntry])]) -> Result<NewChanges> {
    let mut rows = Rows::new("INSERT INTO order_changes (order_id, at, lines) ", 3, "");
    for (order, lines) in changes {
        let Some(first) = lines.first() else { continue };
        rows.push([
            order.id.as_str().into(),
            first.at.unix_micros().into(),
            history_lines_to_json(lines).into(),
        ]);
    }
    let mut numbered = NewChanges::new();
    if rows.is_empty() {
        return Ok(numbered);
    }
    for (order_id, id) in sink.insert_history_rows(&rows).await.context("failed to write the order's history")? {
        numbered.entry(order_id).or_default().push(id);
    }
    Ok(numbered)
}

/// The outbox events (B4) that these changes' history lines announce, each naming its line: the
/// history row `insert_history` numbered for its change (`new_changes`) and its place there.
async fn insert_events_of<S: Sink>(
    sink: &mut S,
    changes: &[(&Order, &[HistoryEntry])],
    new_changes: &NewChanges,
) -> Result<()> {
    // Each order's rows in the order `insert_history` inserted them: one per change with lines.
    let mut taken: HashMap<&str, usize> = HashMap::new();
    let mut entries: Vec<EventLine<'_>> = Vec::new();
    for (order, lines) in changes {
        if lines.is_empty() {
            continue;
        }
        let place = taken.entry(order.id.as_str()).or_default();
        let change_id = new_changes
            .get(&order.id)
            .and_then(|ids| ids.get(*place))
            .copied()
            .ok_or_else(|| anyhow::anyhow!("the history of order {} was not numbered", order.id))?;
        *place += 1;
        for (line_index, line) in lines.iter().enumerate() {
            entries.push(EventLine {
                order,
                line,
                change_id,
                line_index: i64::try_from(line_index)?,
            });
        }
    }
    insert_events(sink, &entries).await
}

/// A history line that may announce an event: its order, the line, its history row and its place.
struct EventLine<'a> {
    order: &'a Order,
    line: &'a HistoryEntry,
    change_id: i64,
    line_index: i64,
}

/// The payload an event stores when it is built from its history line when read (migration 0013).
const PAYLOAD_FROM_HISTORY: &str = "";

/// What an outbox event carries about its order (B4), its fields in alphabetical order as the JSON
/// object they were first written as; serialized from borrowed values, with no JSON tree in between.
#[derive(serde::Serialize)]
struct EventPayload<'a> {
    actor: &'a str,
    channel_order_id: Option<&'a str>,
    data: crate::codec::HistoryData<'a>,
    message: &'a str,
    order_id: &'a str,
    order_number: &'a str,
    order_status: &'a str,
}

/// One outbox row about to be written (migration 0014): the events of one history row, at most
/// [`crate::OUTBOX_EVENTS_PER_ROW`], each with its line and type, and the row's id.
struct NewRow<'a> {
    id: String,
    events: Vec<(&'a EventLine<'a>, EventType)>,
}

/// The outbox's columns, as written; where the writer numbers the rows itself, `seq` follows.
const OUTBOX_INSERT: &str = "INSERT INTO outbox_events (id, shop_id, order_id, type, at, payload, published_at, \
    change_id, line_index, order_status, line_indexes) ";
const OUTBOX_INSERT_NUMBERED: &str = "INSERT INTO outbox_events (id, shop_id, order_id, type, at, payload, \
    published_at, change_id, line_index, order_status, line_indexes, seq) ";

/// The id of the event at `place` among its outbox row's events: the row's own id for the first.
fn event_id(row_id: &str, place: usize) -> String {
    if place == 0 {
        row_id.to_owned()
    } else {
        format!("{row_id}-{place}")
    }
}

/// The outbox (B4): the events these history lines announce, and one delivery of each to every active
/// webhook of its shop that wants it — in the transaction of the change itself. The events of one
/// history row share an outbox row (migration 0014), which names the history row, its lines' places
/// and the order's status, not the events' payloads (migration 0013).
async fn insert_events<S: Sink>(sink: &mut S, entries: &[EventLine<'_>]) -> Result<()> {
    let per_row = usize::try_from(crate::OUTBOX_EVENTS_PER_ROW)?;
    let mut new_rows: Vec<NewRow<'_>> = Vec::new();
    for entry in entries {
        let Some(kind) = event_type(entry.line) else { continue };
        match new_rows.last_mut() {
            Some(row) if row.events[0].0.change_id == entry.change_id && row.events.len() < per_row => {
                row.events.push((entry, kind));
            }
            _ => new_rows.push(NewRow {
                id: new_id("evt"),
                events: vec![(entry, kind)],
            }),
        }
    }
    if new_rows.is_empty() {
        return Ok(());
    }
    let numbered_from = sink.outbox_rows_from().await.context("failed to number the outbox")?;
    let mut rows = match numbered_from {
        Some(_) => Rows::new(OUTBOX_INSERT_NUMBERED, 12, DIALECT.outbox_turn),
        None => Rows::new(OUTBOX_INSERT, 11, DIALECT.outbox_turn),
    };
    for (index, row) in new_rows.iter().enumerate() {
        let (first, _) = row.events[0];
        let order = first.order;
        let line_indexes = match row.events.len() {
            1 => None,
            _ => crate::codec::joined(row.events.iter().map(|(entry, _)| entry.line_index), ' '),
        };
        let values: [Value<'_>; 11] = [
            row.id.as_str().into(),
            order.shop_id.as_str().into(),
            order.id.as_str().into(),
            crate::codec::joined(row.events.iter().map(|(_, kind)| kind.as_str()), ' ').unwrap_or_default().into(),
            first.line.at.unix_micros().into(),
            PAYLOAD_FROM_HISTORY.into(),
            None::<i64>.into(),
            first.change_id.into(),
            first.line_index.into(),
            order.status.as_str().into(),
            line_indexes.into(),
        ];
        let seq = numbered_from.map(|from| from + crate::OUTBOX_EVENTS_PER_ROW * i64::try_from(index).unwrap_or(i64::MAX));
        rows.push_values(values.into_iter().chain(seq.map(Value::from)));
    }
    let mut shops: Vec<&str> = new_rows.iter().map(|row| row.events[0].0.order.shop_id.as_str()).collect();
    shops.sort_unstable();
    shops.dedup();
    let (seqs, webhooks) = sink.insert_events(&rows, &shops).await.context("failed to write the outbox")?;
    if webhooks.is_empty() {
        return Ok(());
    }
    let mut rows = Rows::new(
        "INSERT INTO webhook_deliveries (id, webhook_id, shop_id, event_id, event_seq, event_type, order_id, \
         status, attempts, next_attempt_at, created_at) ",
        11,
        "",
    );
    for row in &new_rows {
        // A delivery finds its event by the event's number (migrations 0009, 0014): one without it
        // would never go out.
        let row_seq = *seqs
            .get(&row.id)
            .ok_or_else(|| anyhow::anyhow!("the outbox did not number the row {}", row.id))?;
        for (place, (entry, kind)) in row.events.iter().enumerate() {
            let order = entry.order;
            let wanted = webhooks
                .iter()
                .filter(|(_, shop_id, wanted)| *shop_id == order.shop_id && wanted.split(' ').any(|name| name == kind.as_str()));
            for (webhook_id, ..) in wanted {
                rows.push([
                    new_id("dlv").into(),
                    webhook_id.as_str().into(),
                    order.shop_id.as_str().into(),
                    event_id(&row.id, place).into(),
                    (row_seq + i64::try_from(place)?).into(),
                    kind.as_str().into(),
                    order.id.as_str().into(),
                    "pending".into(),
                    0_i64.into(),
                    entry.line.at.unix_micros().into(),
                    entry.line.at.unix_micros().into(),
                ]);
            }
        }
    }
    sink.insert(&rows).await.context("failed to queue webhook deliveries")
}

/// What builds an imported order from its number (see [`crate::Store::import_order`]): the order
/// with its first history line, or its problems.
pub(crate) type Build = Box<dyn FnOnce(String) -> Result<(Order, HistoryEntry), Vec<String>> + Send>;

/// What became of one import of a batch.
pub(crate) type ImportOutcome = Result<Order, ImportError>;

/// What an import asks of the database besides the rows it inserts.
#[allow(async_fn_in_trait)]
trait ImportSink: Sink {
    /// The orders already imported from these channel orders, by channel and channel order id.
    async fn orders_of_channel_orders(&mut self, keys: &[(&str, &str)]) -> Result<HashMap<(String, String), String>>;
    /// Each shop's next order number, the shops' rows locked for the transaction where the backend
    /// locks rows (in id order).
    async fn lock_shops(&mut self, shop_ids: &[&str]) -> Result<HashMap<String, i64>>;
    /// Moves each shop's next order number on to the one given.
    async fn set_next_order_numbers(&mut self, numbers: &[(&str, i64)]) -> Result<()>;
    /// `count` new history row numbers ([`crate::Dialect::history_numbers`]), each not yet in use.
    async fn history_numbers(&mut self, count: usize) -> Result<Vec<i64>>;
}

/// Stores new orders in the transaction `sink` writes in, each table's rows together: their rows,
/// the stock they deduct (I1), their history rows (named by the orders' rows), their events and
/// first workflow steps. An import of a channel order already stored — or stored by an import before
/// it in the batch — is a duplicate (on PostgreSQL, with the shops' rows locked before the look, also
/// one stored meanwhile by another process); one whose `build` refuses it is invalid; neither writes anything
/// or takes a number, so the numbers the others take follow each other. An error of the database
/// fails the whole batch (the caller rolls it back).
async fn import_all<S: ImportSink>(sink: &mut S, imports: Vec<(NewImport<'_>, Build)>) -> Result<Vec<ImportOutcome>> {
    // The shops first: their rows locked (on PostgreSQL) until the commit, so that no other import
    // into them looks for the same channel order before this batch's is stored.
    let mut shops: Vec<&str> = imports.iter().map(|(import, _)| import.shop_id).collect();
    shops.sort_unstable();
    shops.dedup();
    let mut next_numbers = sink.lock_shops(&shops).await.context("failed to number the orders")?;
    let keys: Vec<(&str, &str)> = imports
        .iter()
        .filter_map(|(import, _)| Some((import.channel_id, import.channel_order_id?)))
        .collect();
    let mut existing = if keys.is_empty() {
        HashMap::new()
    } else {
        sink.orders_of_channel_orders(&keys).await.context("failed to look for the orders")?
    };
    let taken_before = next_numbers.clone();
    // Each import's outcome, a stored one by its place in `stored`.
    let mut outcomes: Vec<Result<usize, ImportError>> = Vec::with_capacity(imports.len());
    let mut stored: Vec<(Order, Vec<HistoryEntry>)> = Vec::new();
    for (import, build) in imports {
        let key = import.channel_order_id.map(|id| (import.channel_id.to_owned(), id.to_owned()));
        if let Some(existing_id) = key.as_ref().and_then(|key| existing.get(key)) {
            outcomes.push(Err(ImportError::Duplicate { existing_id: existing_id.clone() }));
            continue;
        }
        let number = match (import.requested_number, next_numbers.get(import.shop_id)) {
            (_, None) => {
                outcomes.push(Err(ImportError::Store(anyhow::anyhow!("no shop {} to import into", import.shop_id))));
                continue;
            }
            (Some(number), Some(_)) => number.to_owned(),
            (None, Some(next)) => format!("#{next}"),
        };
        match build(number) {
            Err(problems) => outcomes.push(Err(ImportError::Invalid(problems))),
            Ok((order, imported)) => {
                if import.requested_number.is_none() {
                    if let Some(next) = next_numbers.get_mut(import.shop_id) {
                        *next += 1;
                    }
                }
                if let Some(key) = key {
                    existing.insert(key, order.id.clone());
                }
                outcomes.push(Ok(stored.len()));
                stored.push((order, vec![imported]));
            }
        }
    }
    let moved: Vec<(&str, i64)> = next_numbers
        .iter()
        .filter(|(shop_id, next)| taken_before.get(*shop_id) != Some(*next))
        .map(|(shop_id, next)| (shop_id.as_str(), *next))
        .collect();
    if !moved.is_empty() {
        sink.set_next_order_numbers(&moved).await.context("failed to number the orders")?;
    }
    if !stored.is_empty() {
        write_stored_imports(sink, &mut stored).await?;
    }
    let mut stored: Vec<Option<Order>> = stored.into_iter().map(|(order, _)| Some(order)).collect();
    Ok(outcomes
        .into_iter()
        .map(|outcome| {
            outcome.and_then(|at| {
                stored[at]
                    .take()
                    .ok_or_else(|| ImportError::Store(anyhow::anyhow!("an import lost its order")))
            })
        })
        .collect())
}

/// Writes the orders [`import_all`] built, with their first history lines (to which their stock
/// deduction's line is added here). Each order's one history row is numbered first, so that the
/// order's row names it as it goes in (`change_ids`, migration 0012): an update of every new row
/// afterwards (never HOT on PostgreSQL, a second version of the row and its index entries) cost
/// imports a third of their time there (BENCHMARKS.md, twenty-sixth session).
async fn write_stored_imports<S: ImportSink>(sink: &mut S, stored: &mut [(Order, Vec<HistoryEntry>)]) -> Result<()> {
    let numbers = sink
        .history_numbers(stored.len())
        .await
        .context("failed to number the orders' history")?;
    anyhow::ensure!(numbers.len() == stored.len(), "{} history numbers for {} orders", numbers.len(), stored.len());
    let new_changes: NewChanges =
        stored.iter().zip(numbers).map(|((order, _), number)| (order.id.clone(), vec![number])).collect();
    let orders: Vec<&Order> = stored.iter().map(|(order, _)| order).collect();
    write_orders(sink, &orders, &new_changes).await.context("failed to store the order")?;
    // Each order's deduction (I1), moved shop by shop (in one order, as a group's restocks are).
    let deductions: Vec<Vec<StockMove>> = orders
        .iter()
        .map(|order| match order.inventory_deducted {
            true => StockMove::take_out(&order.stock_snapshot, StockMoveKind::Deduction, &format!("order {}", order.number)),
            false => Vec::new(),
        })
        .collect();
    let mut shops: Vec<&str> = orders
        .iter()
        .zip(&deductions)
        .filter(|(_, moves)| !moves.is_empty())
        .map(|(order, _)| order.shop_id.as_str())
        .collect();
    shops.sort_unstable();
    shops.dedup();
    let mut missing_by_shop: HashMap<String, Vec<String>> = HashMap::new();
    for shop_id in shops {
        let entries: Vec<StockEntry<'_>> = orders
            .iter()
            .zip(&deductions)
            .filter(|(order, _)| order.shop_id == shop_id)
            .flat_map(|(order, moves)| {
                moves.iter().map(|stock_move| StockEntry { order_id: Some(&order.id), stock_move, at: order.created_at })
            })
            .collect();
        missing_by_shop.insert(shop_id.to_owned(), move_stocks(sink, shop_id, &entries, None).await?);
    }
    drop(orders);
    for (order, history) in stored.iter_mut() {
        if !order.inventory_deducted {
            continue;
        }
        let missing: Vec<&String> = missing_by_shop
            .get(&order.shop_id)
            .map(|missing| {
                missing
                    .iter()
                    .filter(|sku| order.stock_snapshot.iter().any(|(snapshot_sku, _)| snapshot_sku == *sku))
                    .collect()
            })
            .unwrap_or_default();
        let deducted: Vec<(String, u32)> =
            order.stock_snapshot.iter().filter(|(sku, _)| !missing.contains(&sku)).cloned().collect();
        let mut message = format!(
            "Stock deducted: {}.",
            if deducted.is_empty() { "nothing".to_owned() } else { describe_stock(&deducted) }
        );
        if !missing.is_empty() {
            let missing: Vec<&str> = missing.iter().map(|sku| sku.as_str()).collect();
            message.push_str(&format!(" Not stocked here, so nothing was deducted: {}.", missing.join(", ")));
        }
        history.push(HistoryEntry::new(order.created_at, "stock.deducted", &rescind_domain::Actor::System, message));
    }
    let imported: Vec<(&Order, &[HistoryEntry])> =
        stored.iter().map(|(order, history)| (order, history.as_slice())).collect();
    // After the orders' rows, which the history's key refers to.
    let mut history = Rows::new(DIALECT.numbered_history_insert, 4, "");
    for (order, lines) in &imported {
        let (Some(first), Some(&[number])) = (lines.first(), new_changes.get(&order.id).map(Vec::as_slice)) else {
            anyhow::bail!("order {} was imported without its history", order.id);
        };
        history.push([
            number.into(),
            order.id.as_str().into(),
            first.at.unix_micros().into(),
            history_lines_to_json(lines).into(),
        ]);
    }
    sink.insert(&history).await.context("failed to write the order's history")?;
    insert_events_of(sink, &imported, &new_changes).await?;
    let mut jobs = job_rows();
    for (order, _) in &imported {
        if rescind_domain::pending_work(order).is_some() {
            jobs.push([
                order.id.as_str().into(),
                order.shop_id.as_str().into(),
                order.created_at.unix_micros().into(),
                None::<&str>.into(),
                None::<i64>.into(),
            ]);
        }
    }
    sink.insert(&jobs).await.context("failed to schedule the orders' first steps")
}

/// Writes order rows: inserted on import, their changing columns updated afterwards.
async fn write_orders<S: Sink>(sink: &mut S, orders: &[&Order], new_changes: &NewChanges) -> Result<()> {
    let mut rows = Rows::new(
        "INSERT INTO orders (id, shop_id, number, channel_id, channel_kind, channel_order_id, status, \
         financial_status, fulfillment_status, currency, sub_total, total_shipping, total_tax, total_discount, \
         total_price, total_paid, total_refund_price, cancel_reason, canceled_at, customer, customer_name, \
         customer_email, shipping_address, line_items, payment, inventory_deducted, warehouse_id, warnings, \
         cancellation_id, cancellation_status, created_at, updated_at, outbound, outbound_external_id, stock_snapshot, \
         restocked, refund_ids, cancellation_request_id, change_ids) ",
        39,
        " ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
         financial_status = excluded.financial_status, fulfillment_status = excluded.fulfillment_status, \
         total_refund_price = excluded.total_refund_price, cancel_reason = excluded.cancel_reason, \
         canceled_at = excluded.canceled_at, customer = excluded.customer, customer_name = excluded.customer_name, \
         customer_email = excluded.customer_email, shipping_address = excluded.shipping_address, \
         line_items = excluded.line_items, payment = excluded.payment, warehouse_id = excluded.warehouse_id, \
         warnings = excluded.warnings, cancellation_id = excluded.cancellation_id, \
         cancellation_status = excluded.cancellation_status, updated_at = excluded.updated_at, \
         outbound = excluded.outbound, outbound_external_id = excluded.outbound_external_id, \
         restocked = excluded.restocked, stock_snapshot = excluded.stock_snapshot, refund_ids = excluded.refund_ids, \
         cancellation_request_id = excluded.cancellation_request_id, \
         change_ids = CASE WHEN excluded.change_ids IS NULL THEN orders.change_ids \
         WHEN orders.change_ids IS NULL THEN excluded.change_ids \
         ELSE orders.change_ids || ',' || excluded.change_ids END",
    );
    for order in orders {
        let currency = order.currency;
        rows.push([
            order.id.as_str().into(),
            order.shop_id.as_str().into(),
            order.number.as_str().into(),
            order.channel_id.as_str().into(),
            order.channel_kind.as_str().into(),
            order.channel_order_id.as_deref().into(),
            order.status.as_str().into(),
            order.financial_status.as_str().into(),
            order.fulfillment_status.as_str().into(),
            order.currency.code().into(),
            order.sub_total.format(currency).into(),
            order.total_shipping.format(currency).into(),
            order.total_tax.format(currency).into(),
            order.total_discount.format(currency).into(),
            order.total_price.format(currency).into(),
            order.total_paid.format(currency).into(),
            order.total_refund_price.format(currency).into(),
            order.cancel_reason.as_deref().into(),
            order.canceled_at.map(Timestamp::unix_micros).into(),
            customer_to_json(&order.customer).into(),
            order.customer.name.as_str().into(),
            order.customer.email.as_deref().into(),
            address_to_json(&order.shipping_address).into(),
            line_items_to_json(&order.line_items).into(),
            order.payment.as_ref().map(payment_to_json).into(),
            order.inventory_deducted.into(),
            order.warehouse_id.as_deref().into(),
            warnings_to_json(&order.warnings).into(),
            order.cancellation.as_ref().map(|c| c.id.as_str()).into(),
            order.cancellation.as_ref().map(|c| c.status.as_str()).into(),
            order.created_at.unix_micros().into(),
            order.updated_at.unix_micros().into(),
            order.outbound.as_ref().map(outbound_to_json).into(),
            order.outbound.as_ref().and_then(|outbound| outbound.external_id.as_deref()).into(),
            stock_snapshot_to_json(&order.stock_snapshot).into(),
            order.restocked.into(),
            refund_ids_to_text(&order.refunds).into(),
            order.cancellation_request.as_ref().map(|request| request.id.as_str()).into(),
            new_changes.get(&order.id).and_then(|ids| change_ids_to_text(ids)).into(),
        ]);
    }
    sink.insert(&rows).await
}

async fn write_cancellations<S: Sink>(sink: &mut S, cancellations: &[(&Order, &Cancellation)]) -> Result<()> {
    let mut rows = Rows::new(
        "INSERT INTO cancellations (id, order_id, shop_id, status, requested_by, reason, reason_code, \
         reason_detail, staff_note, refund, refund_method, restock, notify_customer, needs_attention, steps, \
         fulfillment_status_before, financial_status_before, reauthorization_generation, created_at, updated_at, \
         completed_at, fee, partial, scope) ",
        24,
        " ON CONFLICT (id) DO UPDATE SET status = excluded.status, fee = excluded.fee, \
         refund_method = excluded.refund_method, needs_attention = excluded.needs_attention, \
         steps = excluded.steps, reauthorization_generation = excluded.reauthorization_generation, \
         updated_at = excluded.updated_at, completed_at = excluded.completed_at",
    );
    for (order, cancellation) in cancellations {
        rows.push([
            cancellation.id.as_str().into(),
            order.id.as_str().into(),
            order.shop_id.as_str().into(),
            cancellation.status.as_str().into(),
            cancellation.requested_by.as_str().into(),
            cancellation.reason.as_deref().into(),
            cancellation.reason_code.as_deref().into(),
            cancellation.reason_detail.as_deref().into(),
            cancellation.staff_note.as_deref().into(),
            cancellation.refund.into(),
            cancellation.refund_method.map(RefundMethod::as_str).into(),
            cancellation.restock.into(),
            cancellation.notify_customer.into(),
            cancellation.needs_attention.into(),
            steps_to_json(&cancellation.steps, cancellation.created_at).into(),
            cancellation.fulfillment_status_before.as_str().into(),
            cancellation.financial_status_before.as_str().into(),
            i64::from(cancellation.reauthorization_generation).into(),
            cancellation.created_at.unix_micros().into(),
            cancellation.updated_at.unix_micros().into(),
            cancellation.completed_at.map(Timestamp::unix_micros).into(),
            cancellation.fee.map(|fee| fee.format(order.currency)).into(),
            cancellation.scope.is_partial().into(),
            scope_to_json(&cancellation.scope).into(),
        ]);
    }
    sink.insert(&rows).await.context("failed to write the cancellation")
}

async fn write_requests<S: Sink>(sink: &mut S, requests: &[(&Order, &CancellationRequest)]) -> Result<()> {
    let mut rows = Rows::new(
        "INSERT INTO cancellation_requests (id, order_id, shop_id, status, reason, decision_reason, \
         cancellation_id, created_at, decided_at) ",
        9,
        " ON CONFLICT (id) DO UPDATE SET status = excluded.status, decision_reason = excluded.decision_reason, \
         cancellation_id = excluded.cancellation_id, decided_at = excluded.decided_at",
    );
    for (order, request) in requests {
        rows.push([
            request.id.as_str().into(),
            order.id.as_str().into(),
            order.shop_id.as_str().into(),
            request.status.as_str().into(),
            request.reason.as_str().into(),
            request.decision_reason.as_deref().into(),
            request.cancellation_id.as_deref().into(),
            request.created_at.unix_micros().into(),
            request.decided_at.map(Timestamp::unix_micros).into(),
        ]);
    }
    sink.insert(&rows).await.context("failed to write the cancellation request")
}

async fn insert_refunds<S: Sink>(sink: &mut S, refunds: &[(&Order, &Refund)]) -> Result<()> {
    let mut rows = Rows::new(
        "INSERT INTO refunds (id, order_id, shop_id, cancellation_id, amount, method, note, actor, created_at) ",
        9,
        "",
    );
    for (order, refund) in refunds {
        rows.push([
            refund.id.as_str().into(),
            order.id.as_str().into(),
            order.shop_id.as_str().into(),
            refund.cancellation_id.as_deref().into(),
            refund.amount.format(order.currency).into(),
            refund.method.as_str().into(),
            refund.note.as_deref().into(),
            refund.actor.as_str().into(),
            refund.created_at.unix_micros().into(),
        ]);
    }
    sink.insert(&rows).await.context("failed to write a refund")
}

/// The statement that schedules (or reschedules) an order's job: its lease freed, or kept by the
/// worker that goes on with the next step.
fn job_rows<'a>() -> Rows<'a> {
    Rows::new(
        "INSERT INTO workflow_jobs (order_id, shop_id, due_at, lease_owner, lease_expires_at) ",
        5,
        " ON CONFLICT (order_id) DO UPDATE SET due_at = excluded.due_at, lease_owner = excluded.lease_owner, \
         lease_expires_at = excluded.lease_expires_at",
    )
}

/// Keeps the worker's jobs in step with the changes: the last schedule of each order wins. `leases`
/// is empty or has one entry per change: the lease a worker keeps through it (see [`crate::Lease`]).
async fn schedule_workflows<S: Sink>(sink: &mut S, changes: &[OrderChange], leases: &[Option<crate::Lease>]) -> Result<()> {
    let schedules = last_of_each(
        changes
            .iter()
            .enumerate()
            .filter(|(_, change)| !matches!(change.workflow, WorkflowSchedule::Unchanged))
            .map(|(index, change)| {
                let lease = leases.get(index).and_then(Option::as_ref);
                (change.order.id.as_str(), (&change.order, change.workflow, lease))
            }),
    );
    let mut due = job_rows();
    let mut finished: Vec<&str> = Vec::new();
    for (order, workflow, lease) in &schedules {
        match workflow {
            WorkflowSchedule::DueAt(due_at) => {
                due.push([
                    order.id.as_str().into(),
                    order.shop_id.as_str().into(),
                    due_at.unix_micros().into(),
                    lease.map(|lease| lease.owner.as_str()).into(),
                    lease.map(|lease| lease.until.unix_micros()).into(),
                ]);
            }
            WorkflowSchedule::Finished => finished.push(order.id.as_str()),
            WorkflowSchedule::Unchanged => {}
        }
    }
    sink.insert(&due).await.context("failed to schedule the cancellation's next step")?;
    sink.delete_jobs(&finished).await.context("failed to finish the cancellation's job")
}

/// Writes everything the decisions changed: the order rows, their cancellations and requests, new
/// refunds, the workflow's jobs, stock, the sync history and the history; with the leases workers
/// keep through their changes (one entry per change, or none). A group may change one order more
/// than once; its last state is what the row keeps, while every history line, refund and stock move
/// is kept.
async fn write_leased_changes<S: Sink>(
    sink: &mut S,
    changes: &[OrderChange],
    leases: &[Option<crate::Lease>],
    stock: &GroupStock,
) -> Result<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let history: Vec<(&Order, &[HistoryEntry])> =
        changes.iter().map(|change| (&change.order, change.history.as_slice())).collect();
    // First, so that the order's row names the rows (its order already exists).
    let new_changes = insert_history(sink, &history).await?;
    let orders = last_of_each(changes.iter().map(|change| (change.order.id.as_str(), &change.order)));
    write_orders(sink, &orders, &new_changes).await.context("failed to update the order")?;
    let cancellations = last_of_each(changes.iter().filter_map(|change| {
        let order = &change.order;
        order.cancellation.as_ref().map(|cancellation| (cancellation.id.as_str(), (order, cancellation)))
    }));
    write_cancellations(sink, &cancellations).await?;
    let requests = last_of_each(changes.iter().filter_map(|change| {
        let order = &change.order;
        order.cancellation_request.as_ref().map(|request| (request.id.as_str(), (order, request)))
    }));
    write_requests(sink, &requests).await?;
    let refunds: Vec<(&Order, &Refund)> = changes
        .iter()
        .flat_map(|change| change.new_refunds.iter().map(move |refund| (&change.order, refund)))
        .collect();
    insert_refunds(sink, &refunds).await?;
    schedule_workflows(sink, changes, leases).await?;
    let mut moves_by_shop: Vec<(&str, Vec<StockEntry<'_>>)> = Vec::new();
    for change in changes {
        let order = &change.order;
        let entries = change.stock_moves.iter().map(|stock_move| StockEntry {
            order_id: Some(order.id.as_str()),
            stock_move,
            at: order.updated_at,
        });
        match moves_by_shop.iter_mut().find(|(shop_id, _)| *shop_id == order.shop_id) {
            Some((_, moves)) => moves.extend(entries),
            None => moves_by_shop.push((order.shop_id.as_str(), entries.collect())),
        }
    }
    let mut proofs = Rows::new(
        "INSERT INTO restocks (order_id, cancellation_id, sku, quantity, at) ",
        5,
        " ON CONFLICT DO NOTHING",
    );
    for put_back in &stock.put_back {
        proofs.push([
            put_back.order_id.as_str().into(),
            put_back.cancellation_id.as_str().into(),
            put_back.stock_move.sku.as_str().into(),
            i64::from(put_back.quantity).into(),
            put_back.at.unix_micros().into(),
        ]);
        let entry = StockEntry {
            order_id: Some(put_back.order_id.as_str()),
            stock_move: &put_back.stock_move,
            at: put_back.at,
        };
        match moves_by_shop.iter_mut().find(|(shop_id, _)| *shop_id == put_back.shop_id) {
            Some((_, moves)) => moves.push(entry),
            None => moves_by_shop.push((put_back.shop_id.as_str(), vec![entry])),
        }
    }
    sink.insert(&proofs).await.context("failed to record the restock")?;
    // Shop by shop in one order, so that two groups lock their levels in one order.
    moves_by_shop.sort_by(|a, b| a.0.cmp(b.0));
    for (shop_id, moves) in &moves_by_shop {
        move_stocks(sink, shop_id, moves, Some(stock)).await?;
    }
    let sync: Vec<SyncRow<'_>> = changes
        .iter()
        .flat_map(|change| {
            let order = &change.order;
            change.sync.iter().map(move |record| SyncRow {
                shop_id: &order.shop_id,
                order_id: Some(&order.id),
                record,
                currency: Some(order.currency),
            })
        })
        .collect();
    insert_sync_records(sink, &sync).await?;
    insert_events_of(sink, &history, &new_changes).await
}

/// Puts the saved changes back in the places of the decisions that made them (`Ok(())` marks a
/// change, in the order the changes were made).
pub(crate) fn in_decision_order<E>(
    decided: Vec<Result<(), ChangeError<E>>>,
    changes: Vec<OrderChange>,
) -> Vec<Result<OrderChange, ChangeError<E>>> {
    let mut changes = changes.into_iter();
    decided
        .into_iter()
        .map(|decision| {
            decision.and_then(|()| {
                changes.next().ok_or_else(|| ChangeError::Store(anyhow::anyhow!("a decision lost its change")))
            })
        })
        .collect()
}

/// One call to an outside system for the sync history (F5); `order_id` is `None` for a stock push.
struct SyncRow<'a> {
    shop_id: &'a str,
    order_id: Option<&'a str>,
    record: &'a SyncRecord,
    currency: Option<Currency>,
}

async fn insert_sync_records<S: Sink>(sink: &mut S, sync: &[SyncRow<'_>]) -> Result<()> {
    let mut rows =
        Rows::new("INSERT INTO sync_history (shop_id, order_id, at, kind, target, request, ok, message, fee) ", 9, "");
    for entry in sync {
        let record = entry.record;
        rows.push([
            entry.shop_id.into(),
            entry.order_id.into(),
            record.at.unix_micros().into(),
            record.kind.as_str().into(),
            record.target.as_str().into(),
            record.request.as_str().into(),
            record.ok.into(),
            record.message.as_str().into(),
            record.fee.zip(entry.currency).map(|(fee, currency)| fee.format(currency)).into(),
        ]);
    }
    sink.insert(&rows).await.context("failed to write the sync history")
}

/// Keeps one call to an outside system in the sync history (F5); `order_id` is `None` for a stock push.
async fn insert_sync_record(
    connection: &mut Connection,
    shop_id: &str,
    order_id: Option<&str>,
    record: &SyncRecord,
    currency: Option<Currency>,
) -> Result<()> {
    insert_sync_records(&mut Statements(connection), &[SyncRow { shop_id, order_id, record, currency }]).await
}

/// One stock movement with the order it belongs to (if any) and when it happened.
struct StockEntry<'a> {
    order_id: Option<&'a str>,
    stock_move: &'a StockMove,
    at: Timestamp,
}

/// Applies stock movements to SKUs that exist and keeps each in the ledger; answers the SKUs that
/// do not exist (nothing moves for them).
async fn move_stock(
    connection: &mut Connection,
    shop_id: &str,
    order_id: Option<&str>,
    moves: &[StockMove],
    at: Timestamp,
) -> Result<Vec<String>> {
    let entries: Vec<StockEntry<'_>> = moves.iter().map(|stock_move| StockEntry { order_id, stock_move, at }).collect();
    move_stocks(&mut Statements(connection), shop_id, &entries, None).await
}

/// [`move_stock`] for many movements of one shop: each SKU moved once by the sum of its deltas, every
/// movement kept in the ledger, and the channels' pushes queued (I5).
async fn move_stocks<S: Sink>(
    sink: &mut S,
    shop_id: &str,
    moves: &[StockEntry<'_>],
    known: Option<&GroupStock>,
) -> Result<Vec<String>> {
    let Some(at) = moves.iter().map(|entry| entry.at).max() else {
        return Ok(Vec::new());
    };
    let mut deltas: Vec<(&str, i64)> = Vec::new();
    for entry in moves {
        let sku = entry.stock_move.sku.as_str();
        match deltas.iter_mut().find(|(known, _)| *known == sku) {
            Some((_, delta)) => *delta += entry.stock_move.delta,
            None => deltas.push((sku, entry.stock_move.delta)),
        }
    }
    let stocked = match known.and_then(|known| known.stocked_of(shop_id, &deltas)) {
        // Every level is known (and locked): nothing to ask the database.
        Some(stocked) => {
            let deltas: Vec<(&str, i64)> =
                deltas.iter().copied().filter(|(sku, _)| stocked.iter().any(|known| known == sku)).collect();
            sink.add_known_stock(shop_id, &deltas, at.unix_micros()).await.context("failed to move stock")?;
            stocked
        }
        None => sink.add_stock(shop_id, &deltas, at.unix_micros()).await.context("failed to move stock")?,
    };
    let mut ledger =
        Rows::new("INSERT INTO inventory_ledger (shop_id, sku, delta, kind, order_id, reason, at) ", 7, "");
    for entry in moves.iter().filter(|entry| stocked.contains(&entry.stock_move.sku)) {
        ledger.push([
            shop_id.into(),
            entry.stock_move.sku.as_str().into(),
            entry.stock_move.delta.into(),
            entry.stock_move.kind.as_str().into(),
            entry.order_id.into(),
            entry.stock_move.reason.as_deref().into(),
            entry.at.unix_micros().into(),
        ]);
    }
    sink.insert(&ledger).await.context("failed to write the stock ledger")?;
    sink.queue_pushes(shop_id, &stocked, at.unix_micros()).await.context("failed to queue a stock push")?;
    Ok(deltas
        .iter()
        .filter(|(sku, _)| !stocked.iter().any(|known| known == sku))
        .map(|(sku, _)| (*sku).to_owned())
        .collect())
}

/// What a group's restocks decide on and put back (I2, I3). Whether a SKU is stocked and which
/// proofs an order has are read for all the group's restocks at once ([`GroupStock::learn`]; a
/// restock that needs more reads it then), and stay true until the group commits: the levels read
/// are locked where the backend locks rows (SQLite has one writer), no level is ever created or
/// dropped by a change, and the proofs the group adds are added here as its restocks are decided.
/// What goes back is written with the group's changes, each SKU's level moved once by the sum of
/// every move of it in the group — on PostgreSQL in the group's one write, with nothing to answer.
#[derive(Default)]
struct GroupStock {
    /// Whether each (shop, SKU) read is stocked.
    stocked: HashMap<(String, String), bool>,
    /// Each order read, with its proofs: (cancellation, SKU).
    proofs: HashMap<String, HashSet<(String, String)>>,
    /// What the group's restocks put back, in the order they were decided.
    put_back: Vec<PutBack>,
}

/// One SKU put back by a restock of the group.
struct PutBack {
    shop_id: String,
    order_id: String,
    cancellation_id: String,
    quantity: u32,
    stock_move: StockMove,
    at: Timestamp,
}

impl GroupStock {
    /// Reads what is not known yet of the shop's `skus` and of the proofs of `orders`' current
    /// cancellations (order, cancellation): one statement (per [`IN_LIST_MAX`] SKUs).
    async fn learn<S: Sink>(&mut self, sink: &mut S, shop_id: &str, orders: &[(&str, &str)], skus: &[&str]) -> Result<()> {
        let mut skus: Vec<&str> = skus
            .iter()
            .copied()
            .filter(|sku| !self.stocked.contains_key(&(shop_id.to_owned(), (*sku).to_owned())))
            .collect();
        skus.sort_unstable();
        skus.dedup();
        let mut unknown: Vec<(&str, &str)> =
            orders.iter().copied().filter(|(order_id, _)| !self.proofs.contains_key(*order_id)).collect();
        unknown.sort_unstable();
        unknown.dedup();
        let mut chunks: Vec<&[&str]> = skus.chunks(IN_LIST_MAX).collect();
        if chunks.is_empty() && !unknown.is_empty() {
            chunks.push(&[]);
        }
        for (index, chunk) in chunks.into_iter().enumerate() {
            let orders: &[(&str, &str)] = if index == 0 { &unknown } else { &[] };
            let known = sink.stock_and_proofs(shop_id, chunk, orders).await.context("failed to read stock")?;
            let orders: Vec<&str> = orders.iter().map(|(order_id, _)| *order_id).collect();
            self.record(shop_id, chunk, &orders, known);
        }
        Ok(())
    }

    /// Keeps what a read of the shop's `skus` and of `orders`' proofs found.
    fn record(&mut self, shop_id: &str, skus: &[&str], orders: &[&str], known: crate::rows::StockAndProofs) {
        for sku in skus {
            let stocked = known.stocked.iter().any(|stocked| stocked == sku);
            self.stocked.insert((shop_id.to_owned(), (*sku).to_owned()), stocked);
        }
        for order_id in orders {
            self.proofs.entry((*order_id).to_owned()).or_default();
        }
        for (order_id, cancellation_id, sku) in known.proofs {
            self.proofs.entry(order_id).or_default().insert((cancellation_id, sku));
        }
    }

    /// The restock of the order's current cancellation as it stands, read only: what would go back,
    /// what went back already (its proof exists), and which SKUs are not stocked here.
    async fn plan<S: Sink>(&mut self, sink: &mut S, order: &Order) -> Result<RestockReport> {
        let quantities = order.current_restock_quantities();
        let mut report = RestockReport::default();
        if quantities.is_empty() {
            return Ok(report);
        }
        let skus: Vec<&str> = quantities.iter().map(|(sku, _)| sku.as_str()).collect();
        let cancellation_id = order.cancellation.as_ref().map(|c| c.id.as_str()).unwrap_or_default();
        self.learn(sink, &order.shop_id, &[(order.id.as_str(), cancellation_id)], &skus).await?;
        let proofs = self.proofs.get(&order.id);
        for (sku, quantity) in quantities {
            let stocked = self.stocked.get(&(order.shop_id.clone(), sku.clone())).copied().unwrap_or(false);
            let proven = proofs.is_some_and(|proofs| proofs.contains(&(cancellation_id.to_owned(), sku.clone())));
            match (stocked, proven) {
                (false, _) => report.missing.push(sku),
                (true, true) => report.already.push(sku),
                (true, false) => report.restocked.push((sku, quantity)),
            }
        }
        Ok(report)
    }

    /// Puts back what `report` restocks for the order's current cancellation, written with the
    /// group: each SKU's proof (its primary key lets it in once per cancellation, I2), the stock
    /// itself, its ledger and the channels' pushes (I5).
    fn put_back(&mut self, order: &Order, report: &RestockReport, at: Timestamp) {
        let cancellation_id = order.cancellation.as_ref().map(|c| c.id.as_str()).unwrap_or_default();
        let proofs = self.proofs.entry(order.id.clone()).or_default();
        for (sku, quantity) in &report.restocked {
            proofs.insert((cancellation_id.to_owned(), sku.clone()));
            self.put_back.push(PutBack {
                shop_id: order.shop_id.clone(),
                order_id: order.id.clone(),
                cancellation_id: cancellation_id.to_owned(),
                quantity: *quantity,
                stock_move: StockMove {
                    sku: sku.clone(),
                    delta: i64::from(*quantity),
                    kind: StockMoveKind::Restock,
                    reason: Some(format!("cancellation of order {}", order.number)),
                },
                at,
            });
        }
    }

    /// Which of the shop's SKUs moved by `deltas` are stocked, when every one of them is known.
    fn stocked_of(&self, shop_id: &str, deltas: &[(&str, i64)]) -> Option<Vec<String>> {
        let mut stocked = Vec::new();
        for (sku, _) in deltas {
            if *self.stocked.get(&(shop_id.to_owned(), (*sku).to_owned()))? {
                stocked.push((*sku).to_owned());
            }
        }
        Some(stocked)
    }
}

/// The statement that queues SKUs' levels for every channel listing them (I5), in three parts around
/// its two values — when (`at`, unix µs) and the shop — and the SKUs' condition after the shop's.
const QUEUE_PUSHES_HEAD: &str = "INSERT INTO inventory_pushes (channel_id, sku, shop_id, due_at, version, attempts) \
     SELECT l.channel_id, l.sku, l.shop_id, ";
const QUEUE_PUSHES_DUE_FROM: &str = " + s.inventory_push_interval_s * 1000000, 1, 0 \
     FROM inventory_listings l JOIN shops s ON s.id = l.shop_id WHERE l.shop_id = ";
/// A SKU already queued is pushed again, with its newer level.
const QUEUE_PUSHES_AGAIN: &str = " ON CONFLICT (channel_id, sku) DO UPDATE SET version = inventory_pushes.version + 1";

/// A [`Sink`] that sends multi-row statements through sqlx: as few statements as the parameter limit
/// allows, in power-of-two row counts so that a few shapes stay prepared.
struct Statements<'c>(&'c mut Connection);

impl Statements<'_> {
    /// The active webhooks of these shops, by id.
    async fn active_webhooks(&mut self, shops: &[&str]) -> Result<Vec<ActiveWebhook>> {
        let mut query = QueryBuilder::<Db>::new("SELECT id, shop_id, events FROM webhooks WHERE active AND shop_id IN (");
        push_in_list(&mut query, shops.iter().map(|shop| (*shop).to_owned()));
        query.push(") ORDER BY id");
        query
            .build()
            .fetch_all(&mut *self.0)
            .await?
            .iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("shop_id")?, row.try_get("events")?)))
            .collect()
    }
}

impl ImportSink for Statements<'_> {
    async fn orders_of_channel_orders(&mut self, keys: &[(&str, &str)]) -> Result<HashMap<(String, String), String>> {
        let mut found = HashMap::new();
        for chunk in keys.chunks(IN_LIST_MAX / 2) {
            // Each key looked up in `orders_by_channel_order_id` by both its columns. As pairs
            // `IN (…)`, PostgreSQL took the channel (the same in every pair of a batch) out of them and,
            // guessing from a table not analyzed since the channel's orders came that it holds few,
            // read every order of the channel for every batch (BENCHMARKS.md, twenty-sixth session;
            // `tests/query_plans.rs`).
            let mut query = QueryBuilder::<Db>::new("WITH k (channel_id, channel_order_id) AS (VALUES ");
            let mut list = query.separated(", ");
            for (channel_id, channel_order_id) in padded(chunk) {
                list.push("(");
                list.push_bind_unseparated(*channel_id);
                list.push_unseparated(", ");
                list.push_bind_unseparated(*channel_order_id);
                list.push_unseparated(")");
            }
            query.push(
                ") SELECT o.channel_id, o.channel_order_id, o.id FROM k JOIN orders o \
                 ON o.channel_id = k.channel_id AND o.channel_order_id = k.channel_order_id",
            );
            for row in query.build().fetch_all(&mut *self.0).await? {
                found.insert((row.try_get("channel_id")?, row.try_get("channel_order_id")?), row.try_get("id")?);
            }
        }
        Ok(found)
    }

    async fn lock_shops(&mut self, shop_ids: &[&str]) -> Result<HashMap<String, i64>> {
        let mut query = QueryBuilder::<Db>::new("SELECT id, next_order_number FROM shops WHERE id IN (");
        push_in_list(&mut query, shop_ids.iter().map(|shop_id| (*shop_id).to_owned()));
        query.push(") ORDER BY id ");
        query.push(DIALECT.lock_order);
        let mut numbers = HashMap::new();
        for row in query.build().fetch_all(&mut *self.0).await? {
            numbers.insert(row.try_get("id")?, row.try_get("next_order_number")?);
        }
        Ok(numbers)
    }

    async fn set_next_order_numbers(&mut self, numbers: &[(&str, i64)]) -> Result<()> {
        for (shop_id, next) in numbers {
            sqlx::query(SET_NEXT_ORDER_NUMBER).bind(next).bind(shop_id).execute(&mut *self.0).await?;
        }
        Ok(())
    }

    async fn history_numbers(&mut self, count: usize) -> Result<Vec<i64>> {
        Ok(sqlx::query_scalar(DIALECT.history_numbers)
            .bind(i64::try_from(count)?)
            .fetch_all(&mut *self.0)
            .await?)
    }
}

/// Moves a shop's next order number on ([`ImportSink::set_next_order_numbers`]).
const SET_NEXT_ORDER_NUMBER: &str = "UPDATE shops SET next_order_number = $1 WHERE id = $2";

impl Sink for Statements<'_> {
    async fn insert(&mut self, rows: &Rows<'_>) -> Result<()> {
        for mut query in row_statements(rows, "")? {
            query.build().execute(&mut *self.0).await?;
        }
        Ok(())
    }

    async fn insert_history_rows(&mut self, rows: &Rows<'_>) -> Result<Vec<(String, i64)>> {
        let mut numbered = Vec::with_capacity(rows.len());
        for mut query in row_statements(rows, " RETURNING order_id, id")? {
            for row in query.build().fetch_all(&mut *self.0).await? {
                numbered.push((row.try_get("order_id")?, row.try_get("id")?));
            }
        }
        Ok(numbered)
    }

    async fn insert_events(&mut self, rows: &Rows<'_>, shops: &[&str]) -> Result<(HashMap<String, i64>, Vec<ActiveWebhook>)> {
        let mut seqs = HashMap::new();
        for mut query in row_statements(rows, " RETURNING id, seq")? {
            for row in query.build().fetch_all(&mut *self.0).await? {
                seqs.insert(row.try_get("id")?, row.try_get("seq")?);
            }
        }
        Ok((seqs, self.active_webhooks(shops).await.context("failed to read the shop's webhooks")?))
    }

    async fn outbox_rows_from(&mut self) -> Result<Option<i64>> {
        let Some(handed_out) = DIALECT.outbox_numbers_handed_out else {
            return Ok(None);
        };
        let handed_out: Option<i64> = sqlx::query_scalar(handed_out).fetch_optional(&mut *self.0).await?;
        Ok(Some(crate::rows::next_outbox_row(handed_out.unwrap_or(0))))
    }
    async fn add_stock(&mut self, shop_id: &str, deltas: &[(&str, i64)], at: i64) -> Result<Vec<String>> {
        let mut stocked: Vec<String> = Vec::with_capacity(deltas.len());
        for chunk in statement_chunks(deltas, 2) {
            let mut query = QueryBuilder::<Db>::new("WITH moved (move_sku, move_delta) AS (");
            query.push_values(chunk, |mut row, (sku, delta)| {
                row.push_bind(*sku).push_bind(*delta);
            });
            query.push(") UPDATE inventory SET available = available + moved.move_delta, updated_at = ");
            query.push_bind(at);
            query.push(" FROM moved WHERE inventory.shop_id = ");
            query.push_bind(shop_id);
            query.push(" AND inventory.sku = moved.move_sku RETURNING sku");
            for row in query.build().fetch_all(&mut *self.0).await? {
                stocked.push(row.try_get("sku")?);
            }
        }
        Ok(stocked)
    }

    async fn queue_pushes(&mut self, shop_id: &str, skus: &[String], at: i64) -> Result<()> {
        for chunk in statement_chunks(skus, 1) {
            let mut query = QueryBuilder::<Db>::new(QUEUE_PUSHES_HEAD);
            query.push_bind(at);
            query.push(QUEUE_PUSHES_DUE_FROM);
            query.push_bind(shop_id);
            query.push(" AND l.sku IN (");
            let mut list = query.separated(", ");
            for sku in chunk {
                list.push_bind(sku.as_str());
            }
            query.push(")");
            query.push(QUEUE_PUSHES_AGAIN);
            query.build().execute(&mut *self.0).await?;
        }
        Ok(())
    }

    async fn delete_jobs(&mut self, order_ids: &[&str]) -> Result<()> {
        for chunk in statement_chunks(order_ids, 1) {
            let mut query = QueryBuilder::<Db>::new("DELETE FROM workflow_jobs WHERE order_id IN (");
            let mut list = query.separated(", ");
            for order_id in chunk {
                list.push_bind(*order_id);
            }
            query.push(")");
            query.build().execute(&mut *self.0).await?;
        }
        Ok(())
    }

    async fn stock_and_proofs(
        &mut self,
        shop_id: &str,
        skus: &[&str],
        orders: &[(&str, &str)],
    ) -> Result<crate::rows::StockAndProofs> {
        // One statement for both: the levels locked in SKU order (two transactions moving the same
        // SKUs never wait on each other crosswise), then the cancellations' proofs.
        let mut query = QueryBuilder::<Db>::new("WITH locked AS (SELECT sku FROM inventory WHERE shop_id = ");
        query.push_bind(shop_id.to_owned());
        query.push(" AND sku IN (");
        push_in_list(&mut query, skus.iter().map(|sku| (*sku).to_owned()));
        query.push(") ORDER BY sku ");
        query.push(DIALECT.lock_order);
        query.push(
            ") SELECT sku, NULL AS order_id, NULL AS cancellation_id FROM locked \
             UNION ALL SELECT sku, order_id, cancellation_id FROM restocks WHERE ",
        );
        // (PostgreSQL's group writer reads both through the function of migration 0018 instead.)
        // By the primary key's first two columns, and planned for each statement's values on the
        // table as it is (not prepared): by order alone, PostgreSQL guessed that 32 orders match a
        // fifth of a table not analyzed yet and read it whole, and a prepared statement kept the
        // plan it made while the table was small — a newly filled table was read whole for every
        // group (BENCHMARKS.md; `tests/query_plans.rs`).
        if orders.is_empty() {
            query.push("FALSE");
        } else {
            query.push("(order_id, cancellation_id) IN (");
            let mut pairs = query.separated(", ");
            for (order_id, cancellation_id) in padded(orders) {
                pairs.push("(");
                pairs.push_bind_unseparated((*order_id).to_owned());
                pairs.push_unseparated(", ");
                pairs.push_bind_unseparated((*cancellation_id).to_owned());
                pairs.push_unseparated(")");
            }
            query.push(")");
        }
        let mut known = crate::rows::StockAndProofs::default();
        for row in query.build().persistent(false).fetch_all(&mut *self.0).await? {
            let sku: String = row.try_get("sku")?;
            match (row.try_get::<Option<String>, _>("order_id")?, row.try_get::<Option<String>, _>("cancellation_id")?) {
                (Some(order_id), Some(cancellation_id)) => known.proofs.push((order_id, cancellation_id, sku)),
                _ => known.stocked.push(sku),
            }
        }
        Ok(known)
    }
}

fn push_item_from_row(row: &DbRow) -> Result<PushItem> {
    Ok(PushItem {
        sku: row.try_get("sku")?,
        external_id: row.try_get("external_id")?,
        location_id: row.try_get("location_id")?,
        available: row.try_get("available")?,
        version: row.try_get("version")?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?)?,
    })
}

impl Backend {
    pub(crate) async fn close(&self) {
        self.batcher.close().await;
        self.write.close().await;
        self.read.close().await;
    }

    /// A connection for a write beside the group writer. On SQLite that is the writer connection,
    /// which the group writer keeps while changes come (`WRITER_HOLD_MAX`): asked for with
    /// [`batch::ConnectionWanted`] raised, it is had after the group being written.
    async fn write_connection(&self) -> sqlx::Result<sqlx::pool::PoolConnection<Db>> {
        let _wanted = self.batcher.connection_wanted().raise();
        self.write.acquire().await
    }

    /// A transaction for a write beside the group writer, on a [`Backend::write_connection`].
    async fn begin_write(&self) -> sqlx::Result<sqlx::Transaction<'static, Db>> {
        let _wanted = self.batcher.connection_wanted().raise();
        self.write.begin().await
    }

    pub(crate) async fn migrate(&self) -> Result<()> {
        let mut tx = self.begin_write().await?;
        if let Some(lock) = DIALECT.migration_lock {
            sqlx::query(lock).execute(&mut *tx).await?;
        }
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS rescind_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
             applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM rescind_migrations").fetch_all(&mut *tx).await?;
        for (version, name, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            let sql = sql
                .for_database(DIALECT.kind)
                .replace("__IDENTITY_PRIMARY_KEY__", DIALECT.identity_primary_key)
                .replace("__APPEND_ONLY_PRIMARY_KEY__", DIALECT.append_only_primary_key);
            sqlx::raw_sql(&sql).execute(&mut *tx).await.with_context(|| format!("migration {version} ({name}) failed"))?;
            sqlx::query("INSERT INTO rescind_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                .bind(version)
                .bind(name)
                .bind(crate::now().unix_micros())
                .execute(&mut *tx)
                .await?;
            tracing::info!(version, name, "applied migration");
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn create_shop(&self, shop: &Shop, token: &ApiToken, now: Timestamp) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO shops (id, name, customer_cancellation_requests, inventory_push_interval_s, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&shop.id)
        .bind(&shop.name)
        .bind(shop.settings.customer_cancellation_requests)
        .bind(shop.settings.inventory_push_interval_s)
        .bind(now.unix_micros())
        .execute(&mut *tx)
        .await
        .context("failed to create the shop")?;
        insert_token(&mut tx, token, now).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn shop(&self, shop_id: &str) -> Result<Option<Shop>> {
        let row = sqlx::query(
            "SELECT id, name, customer_cancellation_requests, inventory_push_interval_s FROM shops WHERE id = $1",
        )
        .bind(shop_id)
        .fetch_optional(&self.read)
        .await?;
        row.map(|row| {
            Ok(Shop {
                id: row.try_get("id")?,
                name: row.try_get("name")?,
                settings: Settings {
                    customer_cancellation_requests: row.try_get("customer_cancellation_requests")?,
                    inventory_push_interval_s: row.try_get("inventory_push_interval_s")?,
                },
            })
        })
        .transpose()
    }

    pub(crate) async fn count_shops(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM shops").fetch_one(&self.read).await?)
    }

    pub(crate) async fn create_token(&self, token: &ApiToken, now: Timestamp) -> Result<()> {
        let mut connection = self.write_connection().await?;
        insert_token(&mut connection, token, now).await
    }

    pub(crate) async fn create_console_session(&self, session: &ConsoleSession) -> Result<()> {
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, token_hash, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&session.id_hash)
        .bind(&session.token_hash)
        .bind(&session.csrf_token)
        .bind(session.created_at.unix_micros())
        .bind(session.expires_at.unix_micros())
        .execute(&mut *self.write_connection().await?)
        .await
        .context("failed to open a console session")?;
        Ok(())
    }

    pub(crate) async fn console_session(&self, id_hash: &str, now: Timestamp) -> Result<Option<ConsoleSession>> {
        let row = sqlx::query(
            "SELECT id_hash, token_hash, csrf_token, created_at, expires_at FROM console_sessions \
             WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(id_hash)
        .bind(now.unix_micros())
        .fetch_optional(&self.read)
        .await
        .context("failed to look up a console session")?;
        row.map(|row| {
            Ok(ConsoleSession {
                id_hash: row.try_get("id_hash")?,
                token_hash: row.try_get("token_hash")?,
                csrf_token: row.try_get("csrf_token")?,
                created_at: time(row.try_get("created_at")?),
                expires_at: time(row.try_get("expires_at")?),
            })
        })
        .transpose()
    }

    /// Ends one session, and every session that has expired.
    pub(crate) async fn end_console_session(&self, id_hash: &str, now: Timestamp) -> Result<()> {
        sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1 OR expires_at <= $2")
            .bind(id_hash)
            .bind(now.unix_micros())
            .execute(&mut *self.write_connection().await?)
            .await
            .context("failed to end a console session")?;
        Ok(())
    }

    pub(crate) async fn token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        let row = sqlx::query("SELECT id, shop_id, token_hash, scopes FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.read)
            .await
            .context("failed to look up a token")?;
        row.map(|row| {
            Ok(ApiToken {
                id: row.try_get("id")?,
                shop_id: row.try_get("shop_id")?,
                token_hash: row.try_get("token_hash")?,
                scopes: scopes_from_text(&row.try_get::<String, _>("scopes")?)?,
            })
        })
        .transpose()
    }

    pub(crate) async fn update_settings(&self, shop_id: &str, patch: SettingsPatch) -> Result<Settings> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE shops SET customer_cancellation_requests = COALESCE($1, customer_cancellation_requests), \
             inventory_push_interval_s = COALESCE($2, inventory_push_interval_s) WHERE id = $3",
        )
        .bind(patch.customer_cancellation_requests)
        .bind(patch.inventory_push_interval_s)
        .bind(shop_id)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT customer_cancellation_requests, inventory_push_interval_s FROM shops WHERE id = $1")
            .bind(shop_id)
            .fetch_one(&mut *tx)
            .await?;
        let settings = Settings {
            customer_cancellation_requests: row.try_get("customer_cancellation_requests")?,
            inventory_push_interval_s: row.try_get("inventory_push_interval_s")?,
        };
        tx.commit().await?;
        Ok(settings)
    }

    pub(crate) async fn create_channel(&self, channel: &Channel) -> Result<()> {
        sqlx::query(
            "INSERT INTO channels (id, shop_id, kind, name, base_url, credentials, cancel_sync, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&channel.id)
        .bind(&channel.shop_id)
        .bind(channel.kind.as_str())
        .bind(&channel.name)
        .bind(&channel.base_url)
        .bind(&channel.credentials)
        .bind(channel.cancel_sync)
        .bind(channel.created_at.unix_micros())
        .execute(&mut *self.write_connection().await?)
        .await
        .context("failed to create the channel")?;
        Ok(())
    }

    pub(crate) async fn channel(&self, shop_id: &str, channel_id: &str) -> Result<Option<Channel>> {
        if let Some(channel) = self.known.channel(shop_id, channel_id) {
            return Ok(Some(channel));
        }
        let row = sqlx::query(
            "SELECT id, shop_id, kind, name, base_url, credentials, cancel_sync, created_at FROM channels \
             WHERE shop_id = $1 AND id = $2",
        )
        .bind(shop_id)
        .bind(channel_id)
        .fetch_optional(&self.read)
        .await?;
        let channel = row.as_ref().map(channel_from_row).transpose()?;
        if let Some(channel) = &channel {
            self.known.keep_channel(channel);
        }
        Ok(channel)
    }

    pub(crate) async fn channels(&self, shop_id: &str) -> Result<Vec<Channel>> {
        let mut connection = self.read.acquire().await?;
        load_channels(&mut connection, shop_id).await
    }

    pub(crate) async fn shop_setup(&self, shop_id: &str) -> Result<ShopSetup> {
        let mut connection = self.read.acquire().await?;
        load_shop_setup(&mut connection, shop_id).await
    }

    /// Imports an order through the writer: on SQLite in its next group's transaction
    /// (`import_on_handle`), with the imports and changes that came with it under one commit and one
    /// sync; on PostgreSQL in the next batch of imports (`start_imports`).
    pub(crate) async fn import_order(
        &self,
        import: &NewImport<'_>,
        build: impl FnOnce(String) -> Result<(Order, HistoryEntry), Vec<String>> + Send + 'static,
    ) -> Result<Order, ImportError> {
        self.batcher.import(import, Box::new(build)).await
    }

    /// Which of `order_ids` (in the shop) have a cancellation still processing: one indexed look at
    /// the orders' own rows, without their cancellations, refunds or requests.
    pub(crate) async fn processing_orders(&self, shop_id: &str, order_ids: &[String]) -> Result<HashSet<String>> {
        let mut processing = HashSet::new();
        for chunk in order_ids.chunks(IN_LIST_MAX) {
            let mut query = QueryBuilder::<Db>::new("SELECT id FROM orders WHERE cancellation_status = 'processing' AND ");
            push_orders_of_shop(&mut query, shop_id, chunk, Listed::InList);
            let rows = query.build().fetch_all(&self.read).await.context("failed to look at the orders")?;
            for row in rows {
                processing.insert(row.try_get::<String, _>("id")?);
            }
        }
        Ok(processing)
    }

    pub(crate) async fn order(&self, shop_id: &str, order_id: &str) -> Result<Option<Order>> {
        // One snapshot: the order row and what `complete_orders` attaches to it are read apart.
        let mut snapshot = self.read.begin_with(DIALECT.read_snapshot).await?;
        let row = sqlx::query(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE shop_id = $1 AND id = $2"
        ))
        .bind(shop_id)
        .bind(order_id)
        .fetch_optional(&mut *snapshot)
        .await
        .context("failed to load the order")?;
        let order = complete_orders(&mut snapshot, row.into_iter().collect()).await?.pop();
        snapshot.commit().await?;
        Ok(order)
    }

    pub(crate) async fn orders(
        &self,
        shop_id: &str,
        filter: &OrderFilter,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Order>> {
        let mut query = QueryBuilder::<Db>::new(format!("SELECT {ORDER_COLUMNS} FROM orders WHERE shop_id = "));
        query.push_bind(shop_id.to_owned());
        if let Some(status) = filter.status {
            query.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(status) = filter.fulfillment_status {
            query.push(" AND fulfillment_status = ").push_bind(status.as_str());
        }
        if let Some(channel_id) = &filter.channel_id {
            query.push(" AND channel_id = ").push_bind(channel_id.clone());
        }
        if let Some(status) = filter.cancellation_status {
            query.push(" AND cancellation_status = ").push_bind(status.as_str());
        }
        if let Some(text) = &filter.q {
            let pattern = like_pattern(text);
            query.push(" AND (");
            for (index, column) in ["number", "channel_order_id", "customer_name", "customer_email"].iter().enumerate() {
                if index > 0 {
                    query.push(" OR ");
                }
                query.push(format!("{column} {} ", DIALECT.like)).push_bind(pattern.clone()).push(" ESCAPE '\\'");
            }
            query.push(")");
        }
        if let Some(cursor) = cursor {
            query.push(" AND id < ").push_bind(cursor.to_owned());
        }
        query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit) + 1);
        let mut snapshot = self.read.begin_with(DIALECT.read_snapshot).await?;
        let mut rows = query.build().fetch_all(&mut *snapshot).await.context("failed to list orders")?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let items = complete_orders(&mut snapshot, rows).await?;
        snapshot.commit().await?;
        let next_cursor = if more { items.last().map(|order| order.id.clone()) } else { None };
        Ok(Page { items, next_cursor })
    }

    pub(crate) async fn history(&self, shop_id: &str, order_id: &str) -> Result<Option<Vec<HistoryEntry>>> {
        let mut snapshot = self.read.begin_with(DIALECT.read_snapshot).await?;
        // `Some(change_ids)` when the order exists (the column itself may be NULL).
        let named: Option<(Option<String>,)> = sqlx::query_as("SELECT change_ids FROM orders WHERE shop_id = $1 AND id = $2")
            .bind(shop_id)
            .bind(order_id)
            .fetch_optional(&mut *snapshot)
            .await?;
        let Some((change_ids,)) = named else {
            return Ok(None);
        };
        // Lines written before migration 0006 (one row each) come first, then one row per change.
        let rows = sqlx::query("SELECT at, kind, actor, message, data FROM order_history WHERE order_id = $1 ORDER BY id")
            .bind(order_id)
            .fetch_all(&mut *snapshot)
            .await
            .context("failed to load the history")?;
        let mut lines = rows
            .iter()
            .map(|row| {
                Ok(HistoryEntry {
                    at: time(row.try_get("at")?),
                    kind: row.try_get::<String, _>("kind")?.into(),
                    actor: row.try_get("actor")?,
                    message: row.try_get("message")?,
                    data: history_data_from_json(&row.try_get::<String, _>("data")?)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut changes = order_changes_by_id(&mut snapshot, &change_ids_from_text(change_ids.as_deref())?)
            .await
            .context("failed to load the history")?;
        // In the order the changes were made.
        changes.sort_unstable_by_key(|(id, ..)| *id);
        for (_, at, change) in &changes {
            history_lines_from_json(change, time(*at), &mut lines)?;
        }
        snapshot.commit().await?;
        Ok(Some(lines))
    }

    pub(crate) async fn change_order<E>(
        &self,
        shop_id: &str,
        order_id: &str,
        decide: impl FnOnce(&Order) -> Result<OrderChange, E>,
    ) -> Result<OrderChange, ChangeError<E>> {
        let mut tx = self.begin_write().await.context("failed to start a change")?;
        let Some(order) = load_orders_for_change(&mut tx, shop_id, &[order_id.to_owned()]).await?.pop() else {
            return Err(ChangeError::NotFound);
        };
        let change = decide(&order).map_err(ChangeError::Refused)?;
        save_changes(&mut tx, std::slice::from_ref(&change), &[]).await?;
        tx.commit().await.context("failed to commit a change")?;
        Ok(change)
    }

    pub(crate) async fn change_orders<E>(
        &self,
        shop_id: &str,
        order_ids: &[String],
        mut decide: impl FnMut(&Order) -> Result<OrderChange, E>,
    ) -> Result<Vec<Result<OrderChange, ChangeError<E>>>> {
        let mut tx = self.begin_write().await.context("failed to start a bulk change")?;
        let mut orders: HashMap<String, Order> = load_orders_for_change(&mut tx, shop_id, order_ids)
            .await?
            .into_iter()
            .map(|order| (order.id.clone(), order))
            .collect();
        let mut decided = Vec::with_capacity(order_ids.len());
        let mut changes = Vec::new();
        for order_id in order_ids {
            let Some(order) = orders.get_mut(order_id) else {
                decided.push(Err(ChangeError::NotFound));
                continue;
            };
            match decide(order) {
                Ok(change) => {
                    // A repeated id in the same request sees the first change.
                    *order = change.order.clone();
                    changes.push(change);
                    decided.push(Ok(()));
                }
                Err(refusal) => decided.push(Err(ChangeError::Refused(refusal))),
            }
        }
        save_changes(&mut tx, &changes, &[]).await?;
        tx.commit().await.context("failed to commit a bulk change")?;
        Ok(in_decision_order(decided, changes))
    }

    /// Claims `key` for a request of `fingerprint` (B3). A key's operations go through the group
    /// writer: on SQLite run in its next group's transaction, on PostgreSQL in batches of their own
    /// beside its groups — never a transaction (and on SQLite an fsync on the one writer connection)
    /// each (own-store with a key per cancel ran at 1 468/s on SQLite and 3 154/s on PostgreSQL so,
    /// against 13 613 and 9 507/s without; BENCHMARKS.md, twenty-third session).
    pub(crate) async fn claim_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<IdempotencyClaim> {
        let op = batch::KeyOp::Claim {
            fingerprint: fingerprint.to_owned(),
            now,
        };
        self.batcher
            .key(scope, key, op)
            .await?
            .context("a key's claim came back without one")
    }

    pub(crate) async fn complete_idempotency_key(&self, scope: &str, key: &str, status_code: u16, body: &str) -> Result<()> {
        let op = batch::KeyOp::Complete {
            status_code,
            body: stored_response(body),
        };
        self.batcher.key(scope, key, op).await.map(drop)
    }

    pub(crate) async fn release_idempotency_key(&self, scope: &str, key: &str) -> Result<()> {
        self.batcher.key(scope, key, batch::KeyOp::Release).await.map(drop)
    }

    pub(crate) async fn purge_idempotency_keys(&self, now: Timestamp) -> Result<u64> {
        let deleted = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(now.plus_seconds(-IDEMPOTENCY_RETENTION_S).unix_micros())
            .execute(&mut *self.write_connection().await?)
            .await?
            .rows_affected();
        Ok(deleted)
    }
}

const WAREHOUSE_COLUMNS: &str = "id, shop_id, kind, name, base_url, credentials, cancel_after_confirmation, \
    sync_modifications, modify_after_confirmation, rate_limit, rate_limit_window_ms, created_at";

fn warehouse_from_row(row: &impl Read) -> Result<Warehouse> {
    Ok(Warehouse {
        id: row.column("id")?,
        shop_id: row.column("shop_id")?,
        kind: row.parsed("kind", |text| parse_named(text, WarehouseKind::parse, "warehouse kind"))?,
        name: row.column("name")?,
        base_url: row.column("base_url")?,
        credentials: row.column("credentials")?,
        settings: WarehouseSettings {
            cancel_after_confirmation: row.column("cancel_after_confirmation")?,
            sync_modifications: row.column("sync_modifications")?,
            modify_after_confirmation: row.column("modify_after_confirmation")?,
        },
        rate_limit: u32::try_from(row.column::<i32>("rate_limit")?)?,
        rate_limit_window_ms: u64::try_from(row.column::<i64>("rate_limit_window_ms")?)?,
        created_at: time(row.column("created_at")?),
    })
}

impl Backend {
    pub(crate) async fn create_warehouse(&self, warehouse: &Warehouse) -> Result<()> {
        sqlx::query(&format!("INSERT INTO warehouses ({WAREHOUSE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"))
            .bind(&warehouse.id)
            .bind(&warehouse.shop_id)
            .bind(warehouse.kind.as_str())
            .bind(&warehouse.name)
            .bind(&warehouse.base_url)
            .bind(&warehouse.credentials)
            .bind(warehouse.settings.cancel_after_confirmation)
            .bind(warehouse.settings.sync_modifications)
            .bind(warehouse.settings.modify_after_confirmation)
            .bind(i32::try_from(warehouse.rate_limit)?)
            .bind(i64::try_from(warehouse.rate_limit_window_ms)?)
            .bind(warehouse.created_at.unix_micros())
            .execute(&mut *self.write_connection().await?)
            .await
            .context("failed to create the warehouse")?;
        Ok(())
    }

    pub(crate) async fn warehouse(&self, shop_id: &str, warehouse_id: &str) -> Result<Option<Warehouse>> {
        let row = sqlx::query(&format!("SELECT {WAREHOUSE_COLUMNS} FROM warehouses WHERE shop_id = $1 AND id = $2"))
            .bind(shop_id)
            .bind(warehouse_id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(warehouse_from_row).transpose()
    }

    pub(crate) async fn warehouse_by_id(&self, warehouse_id: &str) -> Result<Option<Warehouse>> {
        let row = sqlx::query(&format!("SELECT {WAREHOUSE_COLUMNS} FROM warehouses WHERE id = $1"))
            .bind(warehouse_id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(warehouse_from_row).transpose()
    }

    pub(crate) async fn warehouses(&self, shop_id: &str) -> Result<Vec<Warehouse>> {
        let mut connection = self.read.acquire().await?;
        load_warehouses(&mut connection, shop_id).await
    }

    pub(crate) async fn order_id_by_outbound(&self, warehouse_id: &str, external_id: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query("SELECT id, shop_id FROM orders WHERE warehouse_id = $1 AND outbound_external_id = $2")
            .bind(warehouse_id)
            .bind(external_id)
            .fetch_optional(&self.read)
            .await?;
        row.map(|row| Ok((row.try_get("id")?, row.try_get("shop_id")?))).transpose()
    }
}

fn payment_provider_from_row(row: &DbRow) -> Result<PaymentProvider> {
    Ok(PaymentProvider {
        id: row.try_get("id")?,
        shop_id: row.try_get("shop_id")?,
        kind: parse_named(&row.try_get::<String, _>("kind")?, PaymentProviderKind::parse, "payment provider kind")?,
        name: row.try_get("name")?,
        base_url: row.try_get("base_url")?,
        credentials: row.try_get("credentials")?,
        created_at: time(row.try_get("created_at")?),
    })
}

impl Backend {
    pub(crate) async fn create_payment_provider(&self, provider: &PaymentProvider) -> Result<()> {
        sqlx::query(
            "INSERT INTO payment_providers (id, shop_id, kind, name, base_url, credentials, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&provider.id)
        .bind(&provider.shop_id)
        .bind(provider.kind.as_str())
        .bind(&provider.name)
        .bind(&provider.base_url)
        .bind(&provider.credentials)
        .bind(provider.created_at.unix_micros())
        .execute(&mut *self.write_connection().await?)
        .await
        .context("failed to create the payment provider")?;
        Ok(())
    }

    pub(crate) async fn payment_provider(&self, shop_id: &str, provider_id: &str) -> Result<Option<PaymentProvider>> {
        if let Some(provider) = self.known.payment_provider(shop_id, provider_id) {
            return Ok(Some(provider));
        }
        let row = sqlx::query(
            "SELECT id, shop_id, kind, name, base_url, credentials, created_at FROM payment_providers \
             WHERE shop_id = $1 AND id = $2",
        )
        .bind(shop_id)
        .bind(provider_id)
        .fetch_optional(&self.read)
        .await?;
        let provider = row.as_ref().map(payment_provider_from_row).transpose()?;
        if let Some(provider) = &provider {
            self.known.keep_payment_provider(provider);
        }
        Ok(provider)
    }

    pub(crate) async fn payment_providers(&self, shop_id: &str) -> Result<Vec<PaymentProvider>> {
        let rows = sqlx::query(
            "SELECT id, shop_id, kind, name, base_url, credentials, created_at FROM payment_providers \
             WHERE shop_id = $1 ORDER BY id",
        )
        .bind(shop_id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(payment_provider_from_row).collect()
    }

    pub(crate) async fn cancellations(
        &self,
        shop_id: &str,
        needs_attention: Option<bool>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<CancellationOfOrder>> {
        let columns: Vec<String> = CANCELLATION_COLUMNS.split(", ").map(|column| format!("c.{column}")).collect();
        let mut query = QueryBuilder::<Db>::new(format!(
            "SELECT {}, o.number FROM cancellations c JOIN orders o ON o.id = c.order_id WHERE c.shop_id = ",
            columns.join(", ")
        ));
        query.push_bind(shop_id.to_owned());
        if let Some(needs_attention) = needs_attention {
            query.push(" AND c.needs_attention = ").push_bind(needs_attention);
        }
        if let Some(cursor) = cursor {
            query.push(" AND c.id < ").push_bind(cursor.to_owned());
        }
        query.push(" ORDER BY c.id DESC LIMIT ").push_bind(i64::from(limit) + 1);
        let rows = query.build().fetch_all(&self.read).await.context("failed to list cancellations")?;
        page_of(rows, limit, |item: &CancellationOfOrder| item.cancellation.id.clone(), |row| {
            let (order_id, cancellation) = cancellation_from_row(row)?;
            Ok(CancellationOfOrder { order_id, number: row.try_get("number")?, cancellation })
        })
    }

    pub(crate) async fn cancellation_requests(
        &self,
        shop_id: &str,
        status: Option<RequestStatus>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<RequestOfOrder>> {
        let mut query = QueryBuilder::<Db>::new(
            "SELECT r.id, r.order_id, r.status, r.reason, r.decision_reason, r.cancellation_id, r.created_at, \
             r.decided_at, o.number FROM cancellation_requests r JOIN orders o ON o.id = r.order_id WHERE r.shop_id = ",
        );
        query.push_bind(shop_id.to_owned());
        if let Some(status) = status {
            query.push(" AND r.status = ").push_bind(status.as_str());
        }
        if let Some(cursor) = cursor {
            query.push(" AND r.id < ").push_bind(cursor.to_owned());
        }
        query.push(" ORDER BY r.id DESC LIMIT ").push_bind(i64::from(limit) + 1);
        let rows = query.build().fetch_all(&self.read).await.context("failed to list cancellation requests")?;
        page_of(rows, limit, |item: &RequestOfOrder| item.request.id.clone(), |row| {
            let (order_id, request) = request_from_row(row)?;
            Ok(RequestOfOrder { order_id, number: row.try_get("number")?, request })
        })
    }

    pub(crate) async fn order_id_of_request(&self, shop_id: &str, request_id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT order_id FROM cancellation_requests WHERE shop_id = $1 AND id = $2")
            .bind(shop_id)
            .bind(request_id)
            .fetch_optional(&self.read)
            .await?)
    }

    pub(crate) async fn order_id_of_cancellation(&self, shop_id: &str, cancellation_id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT order_id FROM cancellations WHERE shop_id = $1 AND id = $2")
            .bind(shop_id)
            .bind(cancellation_id)
            .fetch_optional(&self.read)
            .await?)
    }

    pub(crate) async fn channel_by_id(&self, channel_id: &str) -> Result<Option<Channel>> {
        let row = sqlx::query(
            "SELECT id, shop_id, kind, name, base_url, credentials, cancel_sync, created_at FROM channels WHERE id = $1",
        )
        .bind(channel_id)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(channel_from_row).transpose()
    }

    pub(crate) async fn order_id_by_channel_order_id(&self, channel_id: &str, channel_order_id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT id FROM orders WHERE channel_id = $1 AND channel_order_id = $2")
            .bind(channel_id)
            .bind(channel_order_id)
            .fetch_optional(&self.read)
            .await?)
    }

    /// Channel order ids of the channel's orders that are open and not being cancelled, oldest first.
    pub(crate) async fn open_channel_order_ids(&self, channel_id: &str, limit: u32) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT channel_order_id FROM orders WHERE channel_id = $1 AND status = 'open' \
             AND channel_order_id IS NOT NULL AND (cancellation_status IS NULL OR cancellation_status NOT IN \
             ('processing', 'awaiting_refund', 'completed')) ORDER BY id LIMIT $2",
        )
        .bind(channel_id)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?)
    }

    /// Every channel of every shop, for the poller.
    pub(crate) async fn all_channels(&self) -> Result<Vec<Channel>> {
        let rows = sqlx::query("SELECT id, shop_id, kind, name, base_url, credentials, cancel_sync, created_at FROM channels ORDER BY id")
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(channel_from_row).collect()
    }

    pub(crate) async fn sync_history(
        &self,
        shop_id: &str,
        kind: Option<SyncKind>,
        ok: Option<bool>,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<Page<SyncEntry>> {
        let mut query = QueryBuilder::<Db>::new(
            "SELECT id, order_id, at, kind, target, request, ok, message, fee FROM sync_history WHERE shop_id = ",
        );
        query.push_bind(shop_id.to_owned());
        if let Some(kind) = kind {
            query.push(" AND kind = ").push_bind(kind.as_str());
        }
        if let Some(ok) = ok {
            query.push(" AND ok = ").push_bind(ok);
        }
        if let Some(cursor) = cursor {
            query.push(" AND id < ").push_bind(cursor);
        }
        query.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(limit) + 1);
        let mut rows = query.build().fetch_all(&self.read).await.context("failed to read the sync history")?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let mut items = Vec::with_capacity(rows.len());
        let mut last_id = None;
        for row in &rows {
            let fee: Option<String> = row.try_get("fee")?;
            last_id = Some(row.try_get::<i64, _>("id")?);
            items.push(SyncEntry {
                order_id: row.try_get("order_id")?,
                record: SyncRecord {
                    at: time(row.try_get("at")?),
                    kind: parse_named(&row.try_get::<String, _>("kind")?, SyncKind::parse, "sync kind")?,
                    target: row.try_get("target")?,
                    request: row.try_get("request")?,
                    ok: row.try_get("ok")?,
                    message: row.try_get("message")?,
                    fee: fee.as_deref().map(Money::parse_stored).transpose()?,
                },
            });
        }
        let next_cursor = if more { last_id.map(|id| id.to_string()) } else { None };
        Ok(Page { items, next_cursor })
    }

    pub(crate) async fn listings(&self, shop_id: &str, sku: &str) -> Result<Vec<Listing>> {
        let rows = sqlx::query(
            "SELECT channel_id, external_id, location_id FROM inventory_listings WHERE shop_id = $1 AND sku = $2 ORDER BY channel_id",
        )
        .bind(shop_id)
        .bind(sku)
        .fetch_all(&self.read)
        .await
        .context("failed to read listings")?;
        rows.iter()
            .map(|row| {
                Ok(Listing {
                    channel_id: row.try_get("channel_id")?,
                    external_id: row.try_get("external_id")?,
                    location_id: row.try_get("location_id")?,
                })
            })
            .collect()
    }

    pub(crate) async fn set_listings(&self, shop_id: &str, sku: &str, listings: &[Listing], now: Timestamp) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM inventory_listings WHERE shop_id = $1 AND sku = $2")
            .bind(shop_id)
            .bind(sku)
            .execute(&mut *tx)
            .await?;
        for listing in listings {
            sqlx::query(
                "INSERT INTO inventory_listings (shop_id, sku, channel_id, external_id, location_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(shop_id)
            .bind(sku)
            .bind(&listing.channel_id)
            .bind(&listing.external_id)
            .bind(&listing.location_id)
            .bind(now.unix_micros())
            .execute(&mut *tx)
            .await
            .context("failed to write a listing")?;
        }
        // A new listing hears the current level at once.
        sqlx::query(
            "INSERT INTO inventory_pushes (channel_id, sku, shop_id, due_at, version, attempts) \
             SELECT channel_id, sku, shop_id, $3, 1, 0 FROM inventory_listings WHERE shop_id = $1 AND sku = $2 \
             ON CONFLICT (channel_id, sku) DO UPDATE SET version = inventory_pushes.version + 1",
        )
        .bind(shop_id)
        .bind(sku)
        .bind(now.unix_micros())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn claim_stock_pushes(&self, owner: &str, now: Timestamp, lease_until: Timestamp) -> Result<Vec<PushBatch>> {
        let mut tx = self.begin_write().await?;
        let claimed = sqlx::query(&format!(
            "UPDATE inventory_pushes SET lease_owner = $1, lease_expires_at = $2 WHERE (channel_id, sku) IN \
             (SELECT channel_id, sku FROM inventory_pushes WHERE due_at <= $3 AND (lease_expires_at IS NULL \
             OR lease_expires_at < $3) ORDER BY due_at LIMIT $4 {}) RETURNING channel_id",
            DIALECT.skip_locked
        ))
        .bind(owner)
        .bind(lease_until.unix_micros())
        .bind(now.unix_micros())
        .bind(STOCK_PUSH_CLAIM_MAX)
        .fetch_all(&mut *tx)
        .await
        .context("failed to claim stock pushes")?;
        let mut channels: Vec<String> = claimed.iter().map(|row| row.try_get("channel_id")).collect::<Result<_, _>>()?;
        channels.sort();
        channels.dedup();
        let mut batches = Vec::new();
        for channel_id in channels {
            let rows = sqlx::query(
                "SELECT p.shop_id, p.sku, p.version, p.attempts, l.external_id, l.location_id, COALESCE(i.available, 0) AS available \
                 FROM inventory_pushes p JOIN inventory_listings l ON l.shop_id = p.shop_id AND l.sku = p.sku AND l.channel_id = p.channel_id \
                 LEFT JOIN inventory i ON i.shop_id = p.shop_id AND i.sku = p.sku \
                 WHERE p.channel_id = $1 AND p.lease_owner = $2 AND p.lease_expires_at = $3 ORDER BY p.sku",
            )
            .bind(&channel_id)
            .bind(owner)
            .bind(lease_until.unix_micros())
            .fetch_all(&mut *tx)
            .await
            .context("failed to read the levels to push")?;
            let Some(first) = rows.first() else {
                // The listing went away: nothing to push.
                sqlx::query("DELETE FROM inventory_pushes WHERE channel_id = $1 AND lease_owner = $2")
                    .bind(&channel_id)
                    .bind(owner)
                    .execute(&mut *tx)
                    .await?;
                continue;
            };
            batches.push(PushBatch {
                shop_id: first.try_get("shop_id")?,
                channel_id,
                items: rows.iter().map(push_item_from_row).collect::<Result<_>>()?,
            });
        }
        tx.commit().await?;
        Ok(batches)
    }

    pub(crate) async fn finish_stock_push(
        &self,
        batch: &PushBatch,
        outcome: &PushOutcome,
        record: &SyncRecord,
        now: Timestamp,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for item in &batch.items {
            match outcome {
                PushOutcome::Pushed => {
                    // Levels that moved during the push go out one interval later.
                    sqlx::query(
                        "UPDATE inventory_pushes SET lease_owner = NULL, lease_expires_at = NULL, attempts = 0, last_error = NULL, \
                         due_at = $4 + (SELECT inventory_push_interval_s FROM shops WHERE id = $3) * 1000000 \
                         WHERE channel_id = $1 AND sku = $2 AND version <> $5",
                    )
                    .bind(&batch.channel_id)
                    .bind(&item.sku)
                    .bind(&batch.shop_id)
                    .bind(now.unix_micros())
                    .bind(item.version)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM inventory_pushes WHERE channel_id = $1 AND sku = $2 AND version = $3")
                        .bind(&batch.channel_id)
                        .bind(&item.sku)
                        .bind(item.version)
                        .execute(&mut *tx)
                        .await?;
                }
                PushOutcome::RetryAt(at, error) => {
                    sqlx::query(
                        "UPDATE inventory_pushes SET lease_owner = NULL, lease_expires_at = NULL, attempts = attempts + 1, \
                         last_error = $3, due_at = $4 WHERE channel_id = $1 AND sku = $2",
                    )
                    .bind(&batch.channel_id)
                    .bind(&item.sku)
                    .bind(error)
                    .bind(at.unix_micros())
                    .execute(&mut *tx)
                    .await?;
                }
                PushOutcome::GaveUp(_) => {
                    sqlx::query("DELETE FROM inventory_pushes WHERE channel_id = $1 AND sku = $2 AND version = $3")
                        .bind(&batch.channel_id)
                        .bind(&item.sku)
                        .bind(item.version)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query("UPDATE inventory_pushes SET lease_owner = NULL, lease_expires_at = NULL, attempts = 0 WHERE channel_id = $1 AND sku = $2")
                        .bind(&batch.channel_id)
                        .bind(&item.sku)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        insert_sync_record(&mut tx, &batch.shop_id, None, record, None).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn stock(&self, shop_id: &str, sku: &str) -> Result<Option<StockLevel>> {
        let row = sqlx::query("SELECT sku, available, updated_at FROM inventory WHERE shop_id = $1 AND sku = $2")
            .bind(shop_id)
            .bind(sku)
            .fetch_optional(&self.read)
            .await?;
        row.map(|row| Ok(StockLevel { sku: row.try_get("sku")?, available: row.try_get("available")?, updated_at: time(row.try_get("updated_at")?) }))
            .transpose()
    }

    /// The shop's stock levels by SKU, after the SKU `after`; `q` narrows them to SKUs containing it.
    pub(crate) async fn stock_levels(
        &self,
        shop_id: &str,
        q: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<StockLevel>> {
        let mut query = QueryBuilder::<Db>::new("SELECT sku, available, updated_at FROM inventory WHERE shop_id = ");
        query.push_bind(shop_id.to_owned());
        if let Some(text) = q {
            query.push(format!(" AND sku {} ", DIALECT.like)).push_bind(like_pattern(text)).push(" ESCAPE '\\'");
        }
        if let Some(after) = after {
            query.push(" AND sku > ").push_bind(after.to_owned());
        }
        query.push(" ORDER BY sku LIMIT ").push_bind(i64::from(limit) + 1);
        let rows = query.build().fetch_all(&self.read).await.context("failed to read the stock levels")?;
        let mut items = rows
            .iter()
            .map(|row| {
                Ok(StockLevel {
                    sku: row.try_get("sku")?,
                    available: row.try_get("available")?,
                    updated_at: time(row.try_get("updated_at")?),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = if more { items.last().map(|level| level.sku.clone()) } else { None };
        Ok(Page { items, next_cursor })
    }

    /// Sets a SKU's stock (creating it), keeping the difference in the ledger.
    pub(crate) async fn set_stock(&self, shop_id: &str, sku: &str, available: i64, now: Timestamp) -> Result<StockLevel> {
        let mut tx = self.begin_write().await?;
        let before: Option<i64> = sqlx::query_scalar(&format!("SELECT available FROM inventory WHERE shop_id = $1 AND sku = $2 {}", DIALECT.lock_order))
            .bind(shop_id)
            .bind(sku)
            .fetch_optional(&mut *tx)
            .await?;
        if before.is_none() {
            sqlx::query("INSERT INTO inventory (shop_id, sku, available, updated_at) VALUES ($1, $2, 0, $3)")
                .bind(shop_id)
                .bind(sku)
                .bind(now.unix_micros())
                .execute(&mut *tx)
                .await?;
        }
        let delta = available - before.unwrap_or(0);
        let set = StockMove { sku: sku.to_owned(), delta, kind: StockMoveKind::Set, reason: None };
        move_stock(&mut tx, shop_id, None, std::slice::from_ref(&set), now).await?;
        tx.commit().await?;
        Ok(StockLevel { sku: sku.to_owned(), available, updated_at: now })
    }

    /// Moves a SKU's stock by hand; `None` when the SKU is not stocked.
    pub(crate) async fn adjust_stock(&self, shop_id: &str, sku: &str, delta: i64, reason: &str, now: Timestamp) -> Result<Option<StockLevel>> {
        let mut tx = self.begin_write().await?;
        let adjustment = StockMove { sku: sku.to_owned(), delta, kind: StockMoveKind::Adjustment, reason: Some(reason.to_owned()) };
        let missing = move_stock(&mut tx, shop_id, None, std::slice::from_ref(&adjustment), now).await?;
        if !missing.is_empty() {
            return Ok(None);
        }
        let available: i64 = sqlx::query_scalar("SELECT available FROM inventory WHERE shop_id = $1 AND sku = $2")
            .bind(shop_id)
            .bind(sku)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(StockLevel { sku: sku.to_owned(), available, updated_at: now }))
    }

    /// The restock of the order's current cancellation (I2, I3), exactly once: each SKU's
    /// `restocks` row is its proof, and `decide` records the outcome in the same transaction.
    pub(crate) async fn restock<E: Send + 'static>(
        &self,
        shop_id: &str,
        order_id: &str,
        decide: impl FnOnce(&Order, RestockReport) -> Result<OrderChange, E> + Send + 'static,
    ) -> Result<OrderChange, ChangeError<E>> {
        self.batcher.restock(shop_id, order_id, decide).await
    }

    /// Takes the lease of up to `limit` due jobs whose lease is free or expired.
    pub(crate) async fn claim_jobs(&self, owner: &str, now: Timestamp, lease_until: Timestamp, limit: u32) -> Result<Vec<Job>> {
        let rows = sqlx::query(&format!(
            "UPDATE workflow_jobs SET lease_owner = $1, lease_expires_at = $2 WHERE order_id IN \
             (SELECT order_id FROM workflow_jobs WHERE due_at <= $3 AND (lease_expires_at IS NULL \
             OR lease_expires_at < $3) ORDER BY due_at LIMIT $4 {}) RETURNING shop_id, order_id",
            DIALECT.skip_locked
        ))
        .bind(owner)
        .bind(lease_until.unix_micros())
        .bind(now.unix_micros())
        .bind(i64::from(limit))
        .fetch_all(&mut *self.write_connection().await?)
        .await
        .context("failed to claim due steps")?;
        rows.iter()
            .map(|row| {
                Ok(Job { shop_id: row.try_get("shop_id")?, order_id: row.try_get("order_id")? })
            })
            .collect()
    }

    /// Forgets a job whose step is no longer pending.
    pub(crate) async fn finish_job(&self, order_id: &str, owner: &str) -> Result<()> {
        sqlx::query("DELETE FROM workflow_jobs WHERE order_id = $1 AND lease_owner = $2")
            .bind(order_id)
            .bind(owner)
            .execute(&mut *self.write_connection().await?)
            .await?;
        Ok(())
    }

    /// When the earliest job falls due (or its lease expires), for the worker's sleep.
    pub(crate) async fn next_job_due_at(&self) -> Result<Option<Timestamp>> {
        let due: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(CASE WHEN lease_expires_at IS NOT NULL AND lease_expires_at > due_at \
             THEN lease_expires_at ELSE due_at END) FROM workflow_jobs",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(due.map(time))
    }

    /// Frees every lease: for a single-process database at start, whose earlier process is gone.
    pub(crate) async fn release_all_leases(&self) -> Result<u64> {
        Ok(sqlx::query("UPDATE workflow_jobs SET lease_owner = NULL, lease_expires_at = NULL WHERE lease_owner IS NOT NULL")
            .execute(&mut *self.write_connection().await?)
            .await?
            .rows_affected())
    }

    /// How many jobs are waiting for a worker.
    pub(crate) async fn count_jobs(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM workflow_jobs").fetch_one(&self.read).await?)
    }
}

async fn insert_token(connection: &mut Connection, token: &ApiToken, now: Timestamp) -> Result<()> {
    sqlx::query("INSERT INTO api_tokens (id, shop_id, token_hash, scopes, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&token.id)
        .bind(&token.shop_id)
        .bind(&token.token_hash)
        .bind(scopes_to_text(&token.scopes))
        .bind(now.unix_micros())
        .execute(&mut *connection)
        .await
        .context("failed to store the token")?;
    Ok(())
}

impl Backend {
    /// A read-decide-write of one order, grouped with others into one transaction (group commit):
    /// a commit with its fsync costs more than a decision, so many cancellations share one, and the
    /// group reads its orders and each shop's setup once. A refused decision writes nothing; a
    /// failed write fails its group.
    pub(crate) async fn change_order_grouped<E: Send + 'static>(
        &self,
        shop_id: &str,
        order_id: &str,
        decide: impl FnOnce(Order, &ShopSetup) -> Result<OrderChange, E> + Send + 'static,
    ) -> Result<OrderChange, ChangeError<E>> {
        self.batcher.change(shop_id, order_id, decide).await
    }

    pub(crate) async fn change_order_leased<E: Send + 'static>(
        &self,
        shop_id: &str,
        order_id: &str,
        lease: crate::Lease,
        decide: impl FnOnce(Order, &ShopSetup) -> Result<OrderChange, E> + Send + 'static,
    ) -> Result<(OrderChange, bool), ChangeError<E>> {
        self.batcher.change_leased(shop_id, order_id, Some(lease), decide).await
    }

    pub(crate) async fn change_order_leased_then_restock<E: Send + 'static>(
        &self,
        shop_id: &str,
        order_id: &str,
        lease: crate::Lease,
        decide: impl FnOnce(Order, &ShopSetup) -> Result<OrderChange, E> + Send + 'static,
        restock: impl FnOnce(&Order, RestockReport) -> Result<OrderChange, E> + Send + 'static,
    ) -> Result<(OrderChange, bool), ChangeError<E>> {
        self.batcher.change_leased_then_restock(shop_id, order_id, Some(lease), decide, restock).await
    }
}

/// Before `now`, the times a stored key was created at when it has expired, and when it has no
/// response and was abandoned: such a claim is dropped before a new one is tried.
fn stale_keys_before(now: Timestamp) -> (i64, i64) {
    (
        now.plus_seconds(-IDEMPOTENCY_RETENTION_S).unix_micros(),
        now.plus_seconds(-IDEMPOTENCY_ABANDONED_AFTER_S).unix_micros(),
    )
}

/// Where a key already claimed stands for a request of `fingerprint`.
fn claim_found(stored_fingerprint: &str, status_code: Option<i64>, body: Option<String>, fingerprint: &str) -> Result<IdempotencyClaim> {
    Ok(match status_code {
        _ if stored_fingerprint != fingerprint => IdempotencyClaim::Mismatch,
        None => IdempotencyClaim::InProgress,
        Some(status_code) => IdempotencyClaim::Replay {
            status_code: u16::try_from(status_code).context("stored status code out of range")?,
            body: body.unwrap_or_default(),
        },
    })
}

mod batch {
    use super::{group_sink, load_orders_numbering_changes, Build, ImportOutcome, load_shop_setup, save_into, Connection, Db, GroupStock};
    use crate::rows::Sink;
    use crate::RestockReport;
    use crate::Lease;
    use rescind_domain::WorkflowSchedule;
    use crate::ShopSetup;
    use std::collections::{HashMap, HashSet};
    use crate::{ChangeError, ImportError, NewImport};
    use rescind_domain::{Order, OrderChange, StepStatus};
    use anyhow::Context;
    use std::any::Any;
    use tokio::sync::{mpsc, oneshot};

    /// The most changes one transaction takes.
    const GROUP_MAX: usize = 256;
    /// Past this many changes waiting, a group takes half of them (but never fewer than this many):
    /// a group's callers are all answered at once, after its sync, and a group that took every
    /// change waiting would leave a fixed number of callers (a script's workers, the benchmark's
    /// clients) all waiting on it, and the writer idle while they are answered and come back. Half
    /// keeps the other half's group written meanwhile: at 64 clients on SQLite the writer had been idle
    /// 22 % of the time, its groups swinging between 64 changes and 3 (BENCHMARKS.md, thirty-sixth
    /// session).
    const GROUP_SPLIT_FROM: usize = 16;

    /// How many changes the group taken with `waiting` in the queue takes at most.
    fn group_limit(waiting: usize) -> usize {
        waiting.div_ceil(2).clamp(GROUP_SPLIT_FROM, GROUP_MAX)
    }

    /// Changes waiting for the writer; callers wait when it is full.
    const QUEUE_MAX: usize = 4096;

    pub(crate) type Refusal = Box<dyn Any + Send>;
    /// What a job decides: a change from the order and its shop's setup, or a restock's outcome from
    /// what would go back (the stock moved in the group's transaction once the outcome is recorded).
    enum Decide {
        Change(DecideChange),
        Restock(DecideRestock),
    }

    type DecideChange = Box<dyn FnOnce(Order, &ShopSetup) -> Result<OrderChange, Refusal> + Send>;
    type DecideRestock = Box<dyn FnOnce(&Order, RestockReport) -> Result<OrderChange, Refusal> + Send>;

    pub(crate) enum Outcome {
        /// Written; with whether the job's lease was kept for its worker.
        Changed(Box<OrderChange>, bool),
        Refused(Refusal),
        NotFound,
        Failed(String),
    }

    pub(crate) struct Job {
        shop_id: String,
        order_id: String,
        lease: Option<Lease>,
        decide: Decide,
        /// The restock to run right after the change when the change leaves it due now.
        then_restock: Option<DecideRestock>,
        reply: oneshot::Sender<Outcome>,
        /// When the job was sent: how long it waited for the writer is logged with its group.
        sent_at: std::time::Instant,
    }

    /// An order to import: on SQLite in a group's transaction, on PostgreSQL in a batch of imports
    /// of its own (the writer hands them on).
    pub(crate) struct ImportJob {
        import: OwnedImport,
        build: Build,
        reply: oneshot::Sender<Result<Order, ImportError>>,
        sent_at: std::time::Instant,
    }

    /// A [`NewImport`] that owns its text.
    pub(crate) struct OwnedImport {
        shop_id: String,
        channel_id: String,
        channel_order_id: Option<String>,
        requested_number: Option<String>,
    }

    impl OwnedImport {
        pub(crate) fn as_new(&self) -> NewImport<'_> {
            NewImport {
                shop_id: &self.shop_id,
                channel_id: &self.channel_id,
                channel_order_id: self.channel_order_id.as_deref(),
                requested_number: self.requested_number.as_deref(),
            }
        }
    }

    /// An import's answer, sent once its group is committed and synced.
    pub(crate) type Imported = (oneshot::Sender<Result<Order, ImportError>>, Result<Order, ImportError>);

    /// A batch of imports taken apart: whom to answer, what to import and what builds each.
    pub(crate) type SplitImports = (Vec<oneshot::Sender<Result<Order, ImportError>>>, Vec<OwnedImport>, Vec<Build>);

    /// Takes a batch of imports apart, to run it (`owned` lent as [`NewImport`]s) and answer it
    /// ([`answer_batch`]).
    pub(crate) fn split_imports(imports: Vec<ImportJob>) -> SplitImports {
        let mut replies = Vec::with_capacity(imports.len());
        let mut owned = Vec::with_capacity(imports.len());
        let mut builds = Vec::with_capacity(imports.len());
        for job in imports {
            replies.push(job.reply);
            owned.push(job.import);
            builds.push(job.build);
        }
        (replies, owned, builds)
    }

    /// Pairs each import's reply with its outcome, or with the batch's error when it failed (then
    /// answered too).
    pub(crate) fn answer_batch(
        replies: Vec<oneshot::Sender<Result<Order, ImportError>>>,
        ran: anyhow::Result<Vec<ImportOutcome>>,
    ) -> (Vec<Imported>, Option<anyhow::Error>) {
        let ran = ran.and_then(|outcomes| match outcomes.len() == replies.len() {
            true => Ok(outcomes),
            false => Err(anyhow::anyhow!("a batch of imports lost an answer")),
        });
        match ran {
            Ok(outcomes) => (replies.into_iter().zip(outcomes).collect(), None),
            Err(error) => {
                let failed = replies
                    .into_iter()
                    .map(|reply| (reply, Err(ImportError::Store(anyhow::anyhow!("{error:#}")))))
                    .collect();
                (failed, Some(error))
            }
        }
    }

    /// Answers each import: what it came to, unless its group was not committed (then the failure;
    /// an invalid order stays invalid whatever became of the group).
    pub(crate) fn answer_imports(imported: Vec<Imported>, failure: Option<&anyhow::Error>) {
        for (reply, result) in imported {
            let result = match (result, failure) {
                (Err(ImportError::Invalid(problems)), _) => Err(ImportError::Invalid(problems)),
                (_, Some(error)) => Err(ImportError::Store(anyhow::anyhow!("{error:#}"))),
                (result, None) => result,
            };
            let _ = reply.send(result);
        }
    }

    /// Tells each import its group failed before it ran.
    pub(crate) fn fail_imports(imports: Vec<ImportJob>, error: &str) {
        for job in imports {
            let _ = job.reply.send(Err(ImportError::Store(anyhow::anyhow!("{error}"))));
        }
    }

    /// What is done to an `Idempotency-Key` (B3) in a group's transaction.
    pub(crate) enum KeyOp {
        /// Claims the key for a request of this fingerprint, first dropping a claim that expired or
        /// was abandoned by `now`.
        Claim { fingerprint: String, now: rescind_domain::Timestamp },
        /// Stores the claimed request's response, as the backend keeps it.
        Complete { status_code: u16, body: super::StoredResponse },
        /// Gives up a claim that has no response.
        Release,
    }

    /// A key's operation sent to the writer: on SQLite, run in the transaction of the next group, on
    /// PostgreSQL in a batch of keys beside it — so that a request's claim and response share a
    /// commit with others instead of each committing (and syncing) by itself.
    ///
    /// Every operation is answered once committed, without waiting for its commit to reach the disk
    /// (SQLite answers before the WAL's sync, PostgreSQL commits the batch with `synchronous_commit`
    /// off). A claim is made durable by its request's own change, whose sync covers everything
    /// committed before it, and no client is told the change is done before that. A stored response
    /// (or a claim given up) is answered before its own sync: a power cut in the few milliseconds
    /// until the next sync may lose it, leaving the claim as it was — a retry is then told the key is
    /// in progress until the claim counts as abandoned, then runs again (and finds, for a cancel, the
    /// order already cancelled). That is what a power cut between a change's sync and its response's
    /// commit leaves anyway; the change itself is never answered before it is on disk. Waiting for the
    /// response's own sync cost a keyed request a second sync in a row (BENCHMARKS.md, twenty-fourth
    /// session).
    pub(crate) struct KeyJob {
        pub(crate) scope: String,
        pub(crate) key: String,
        pub(crate) op: KeyOp,
        reply: oneshot::Sender<Result<Option<crate::IdempotencyClaim>, String>>,
    }

    /// A key's operation run, waiting for its group's commit: the claim it found (`None` for the
    /// other operations), or the error it ran into.
    pub(crate) struct KeyDone {
        reply: oneshot::Sender<Result<Option<crate::IdempotencyClaim>, String>>,
        ran: anyhow::Result<Option<crate::IdempotencyClaim>>,
    }

    impl KeyJob {
        /// The operation run, with what it came to, to answer once committed.
        pub(crate) fn done(self, ran: anyhow::Result<Option<crate::IdempotencyClaim>>) -> KeyDone {
            KeyDone { reply: self.reply, ran }
        }
    }

    /// Runs each of `keys` with `run` (its own error its own answer), to answer once committed.
    #[allow(dead_code)] // the SQLite writer's
    pub(crate) fn run_keys(
        keys: Vec<KeyJob>,
        mut run: impl FnMut(&KeyJob) -> anyhow::Result<Option<crate::IdempotencyClaim>>,
    ) -> Vec<KeyDone> {
        keys.into_iter()
            .map(|job| {
                let ran = run(&job);
                job.done(ran)
            })
            .collect()
    }

    /// Answers the keys' operations run in a group, with `failure` when the group's commit failed.
    pub(crate) fn answer_keys(done: Vec<KeyDone>, failure: Option<&anyhow::Error>) {
        for KeyDone { reply, ran, .. } in done {
            let answer = match (ran, failure) {
                (_, Some(error)) => Err(format!("{error:#}")),
                (Err(error), None) => Err(format!("{error:#}")),
                (Ok(claim), None) => Ok(claim),
            };
            let _ = reply.send(answer);
        }
    }

    /// Tells every caller of `keys` that its operation failed with `error`.
    pub(crate) fn fail_keys(keys: Vec<KeyJob>, error: &str) {
        for job in keys {
            let _ = job.reply.send(Err(error.to_owned()));
        }
    }

    /// What the writer is sent: a change, an import, a key's operation, or word to stop (with whom to
    /// tell once it has).
    enum Message {
        Job(Job),
        Import(ImportJob),
        Key(KeyJob),
        Close(oneshot::Sender<()>),
    }

    #[derive(Clone, Debug)]
    pub(crate) struct Batcher {
        jobs: mpsc::Sender<Message>,
        connection_wanted: ConnectionWanted,
    }

    /// Raised while something outside the group writer waits for its connection (on SQLite: a write
    /// beside it, `Backend::write_connection`, or the writer's checkpoint): the writer lets the
    /// connection go after the group it is writing instead of holding it on while changes keep
    /// coming. On PostgreSQL, whose group writer has connections of its own, nobody looks at it.
    #[derive(Clone, Debug, Default)]
    pub(crate) struct ConnectionWanted(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl ConnectionWanted {
        /// Whether anyone waits for the connection now.
        #[allow(dead_code)] // the SQLite writer's
        pub(crate) fn is_raised(&self) -> bool {
            self.0.load(std::sync::atomic::Ordering::Acquire) > 0
        }

        /// Raised until the answer is dropped.
        pub(crate) fn raise(&self) -> Raised {
            self.0.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            Raised(self.clone())
        }
    }

    /// [`ConnectionWanted`] raised by one waiter.
    pub(crate) struct Raised(ConnectionWanted);

    impl Drop for Raised {
        fn drop(&mut self) {
            (self.0).0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        }
    }

    impl std::fmt::Debug for Job {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Job").field("order_id", &self.order_id).finish()
        }
    }

    pub(crate) fn start(pool: sqlx::Pool<Db>) -> Batcher {
        let connection_wanted = ConnectionWanted::default();
        let (jobs, groups) = queue(connection_wanted.clone());
        super::run_writer(pool, groups);
        Batcher { jobs, connection_wanted }
    }

    /// A queue of changes for the writer ([`QUEUE_MAX`] long), and the writer's end of it.
    fn queue(connection_wanted: ConnectionWanted) -> (mpsc::Sender<Message>, Groups) {
        let (jobs, queue) = mpsc::channel(QUEUE_MAX);
        let groups = Groups {
            queue,
            imports: Vec::new(),
            keys: Vec::new(),
            closing: None,
            connection_wanted,
        };
        (jobs, groups)
    }

    impl Batcher {
        /// What to raise while waiting for the writer's connection outside the group writer.
        pub(crate) fn connection_wanted(&self) -> ConnectionWanted {
            self.connection_wanted.clone()
        }

        pub(crate) async fn change<E: Send + 'static>(
            &self,
            shop_id: &str,
            order_id: &str,
            decide: impl FnOnce(Order, &ShopSetup) -> Result<OrderChange, E> + Send + 'static,
        ) -> Result<OrderChange, ChangeError<E>> {
            Ok(self.change_leased(shop_id, order_id, None, decide).await?.0)
        }

        /// [`Batcher::change`] by a worker holding the order's lease; answers whether it was kept.
        pub(crate) async fn change_leased<E: Send + 'static>(
            &self,
            shop_id: &str,
            order_id: &str,
            lease: Option<Lease>,
            decide: impl FnOnce(Order, &ShopSetup) -> Result<OrderChange, E> + Send + 'static,
        ) -> Result<(OrderChange, bool), ChangeError<E>> {
            let decide = Decide::Change(Box::new(move |order, setup| {
                decide(order, setup).map_err(|refusal| Box::new(refusal) as Refusal)
            }));
            self.send(shop_id, order_id, lease, decide, None).await
        }

        /// [`Batcher::change_leased`], and when the change leaves the cancellation's restock due
        /// now, the restock too, in the same transaction (as [`Batcher::restock`] runs it).
        pub(crate) async fn change_leased_then_restock<E: Send + 'static>(
            &self,
            shop_id: &str,
            order_id: &str,
            lease: Option<Lease>,
            decide: impl FnOnce(Order, &ShopSetup) -> Result<OrderChange, E> + Send + 'static,
            restock: impl FnOnce(&Order, RestockReport) -> Result<OrderChange, E> + Send + 'static,
        ) -> Result<(OrderChange, bool), ChangeError<E>> {
            let decide = Decide::Change(Box::new(move |order, setup| {
                decide(order, setup).map_err(|refusal| Box::new(refusal) as Refusal)
            }));
            let restock: DecideRestock =
                Box::new(move |order, report| restock(order, report).map_err(|refusal| Box::new(refusal) as Refusal));
            self.send(shop_id, order_id, lease, decide, Some(restock)).await
        }

        /// Puts the stock of the order's current cancellation back once and records the outcome
        /// `decide` makes of it, in a group's transaction.
        pub(crate) async fn restock<E: Send + 'static>(
            &self,
            shop_id: &str,
            order_id: &str,
            decide: impl FnOnce(&Order, RestockReport) -> Result<OrderChange, E> + Send + 'static,
        ) -> Result<OrderChange, ChangeError<E>> {
            let decide = Decide::Restock(Box::new(move |order, report| {
                decide(order, report).map_err(|refusal| Box::new(refusal) as Refusal)
            }));
            Ok(self.send(shop_id, order_id, None, decide, None).await?.0)
        }

        async fn send<E: Send + 'static>(
            &self,
            shop_id: &str,
            order_id: &str,
            lease: Option<Lease>,
            decide: Decide,
            then_restock: Option<DecideRestock>,
        ) -> Result<(OrderChange, bool), ChangeError<E>> {
            let (reply, answer) = oneshot::channel();
            let job = Job {
                shop_id: shop_id.to_owned(),
                order_id: order_id.to_owned(),
                lease,
                decide,
                then_restock,
                reply,
                sent_at: std::time::Instant::now(),
            };
            match self.ask(Message::Job(job), answer).await? {
                Outcome::Changed(change, kept) => Ok((*change, kept)),
                Outcome::Refused(refusal) => match refusal.downcast::<E>() {
                    Ok(refusal) => Err(ChangeError::Refused(*refusal)),
                    Err(_) => Err(ChangeError::Store(anyhow::anyhow!("a refusal of another type"))),
                },
                Outcome::NotFound => Err(ChangeError::NotFound),
                Outcome::Failed(error) => Err(ChangeError::Store(anyhow::anyhow!(error))),
            }
        }
    }

    impl Batcher {
        /// Imports an order (on SQLite in a group's transaction, on PostgreSQL in a batch of imports
        /// the writer hands on); answers once it is committed (and, on SQLite, synced).
        pub(crate) async fn import(&self, import: &NewImport<'_>, build: Build) -> Result<Order, ImportError> {
            let (reply, answer) = oneshot::channel();
            let job = ImportJob {
                import: OwnedImport {
                    shop_id: import.shop_id.to_owned(),
                    channel_id: import.channel_id.to_owned(),
                    channel_order_id: import.channel_order_id.map(str::to_owned),
                    requested_number: import.requested_number.map(str::to_owned),
                },
                build,
                reply,
                sent_at: std::time::Instant::now(),
            };
            self.ask(Message::Import(job), answer).await?
        }

        /// Runs `op` on the key `key` of `scope` in the next group's transaction (on PostgreSQL in the
        /// next batch of keys); answers once that is committed, not once on disk ([`KeyJob`]): the
        /// claim for [`KeyOp::Claim`], `None` otherwise.
        pub(crate) async fn key(&self, scope: &str, key: &str, op: KeyOp) -> anyhow::Result<Option<crate::IdempotencyClaim>> {
            let (reply, answer) = oneshot::channel();
            let job = KeyJob {
                scope: scope.to_owned(),
                key: key.to_owned(),
                op,
                reply,
            };
            self.ask(Message::Key(job), answer).await?.map_err(|error| anyhow::anyhow!(error))
        }

        /// Sends the writer `message` and waits for its answer.
        async fn ask<T>(&self, message: Message, answer: oneshot::Receiver<T>) -> anyhow::Result<T> {
            self.jobs
                .send(message)
                .await
                .map_err(|_| anyhow::anyhow!("the database writer has stopped"))?;
            answer.await.map_err(|_| anyhow::anyhow!("the database writer has stopped"))
        }

        /// Stops the writer once the changes already sent are written, and lets it free what it keeps
        /// between groups (SQLite's prepared statements) before the connection may close.
        pub(crate) async fn close(&self) {
            let (done, stopped) = oneshot::channel();
            if self.jobs.send(Message::Close(done)).await.is_ok() {
                let _ = stopped.await;
            }
        }
    }

    /// The writer's end of the queue: the changes waiting, taken a group at a time.
    pub(crate) struct Groups {
        queue: mpsc::Receiver<Message>,
        /// The imports taken with the changes of the group last taken (see [`Groups::take_imports`]).
        imports: Vec<ImportJob>,
        /// The keys' operations taken with them (see [`Groups::take_keys`]).
        keys: Vec<KeyJob>,
        /// Who asked the writer to stop, once someone has.
        closing: Option<oneshot::Sender<()>>,
        connection_wanted: ConnectionWanted,
    }

    impl Groups {
        /// Whether something outside the writer waits for its connection ([`ConnectionWanted`]).
        #[allow(dead_code)] // the SQLite writer's
        pub(crate) fn connection_wanted(&self) -> bool {
            self.connection_wanted.is_raised()
        }

        /// Waits for a change and takes what else waits with it (up to [`group_limit`]); `None`
        /// once the writer is to stop. A group may be empty (the stop came first).
        #[allow(dead_code)] // each backend's writer uses its own part
        pub(crate) async fn next(&mut self) -> Option<Vec<Job>> {
            if self.closing.is_some() {
                return None;
            }
            let first = self.queue.recv().await?;
            Some(self.fill(first))
        }

        /// [`Groups::next`] for a writer on a thread of its own.
        #[allow(dead_code)] // each backend's writer uses its own part
        pub(crate) fn next_blocking(&mut self) -> Option<Vec<Job>> {
            if self.closing.is_some() {
                return None;
            }
            let first = self.queue.blocking_recv()?;
            Some(self.fill(first))
        }

        /// The changes waiting now, without waiting for one; empty when none waits or the writer
        /// is to stop.
        #[allow(dead_code)] // each backend's writer uses its own part
        pub(crate) fn waiting(&mut self) -> Vec<Job> {
            if self.closing.is_some() {
                return Vec::new();
            }
            match self.queue.try_recv() {
                Ok(first) => self.fill(first),
                Err(_) => Vec::new(),
            }
        }

        /// [`Groups::waiting`], or when none waits, the change that comes first within `wait`
        /// (`runtime` keeps the time); empty when none came or the writer is to stop.
        #[allow(dead_code)] // each backend's writer uses its own part
        pub(crate) fn waiting_within(&mut self, runtime: &tokio::runtime::Handle, wait: std::time::Duration) -> Vec<Job> {
            if self.closing.is_some() {
                return Vec::new();
            }
            let first = match self.queue.try_recv() {
                Ok(first) => first,
                Err(_) => match runtime.block_on(async { tokio::time::timeout(wait, self.queue.recv()).await }) {
                    Ok(Some(first)) => first,
                    Ok(None) | Err(_) => return Vec::new(),
                },
            };
            self.fill(first)
        }

        fn fill(&mut self, first: Message) -> Vec<Job> {
            let mut group = Vec::new();
            let limit = group_limit(self.queue.len() + 1);
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Message::Job(job) => group.push(job),
                    Message::Import(job) => self.imports.push(job),
                    Message::Key(job) => self.keys.push(job),
                    Message::Close(done) => self.closing = Some(done),
                }
                if self.closing.is_none() && group.len() + self.imports.len() + self.keys.len() < limit {
                    next = self.queue.try_recv().ok();
                }
            }
            group
        }

        /// The imports that came with the group last taken, to write in its transaction.
        pub(crate) fn take_imports(&mut self) -> Vec<ImportJob> {
            std::mem::take(&mut self.imports)
        }

        /// The keys' operations that came with the group last taken, to run in its transaction.
        pub(crate) fn take_keys(&mut self) -> Vec<KeyJob> {
            std::mem::take(&mut self.keys)
        }

        /// Tells whoever asked the writer to stop that it has — after it let go of what it kept.
        pub(crate) fn stopped(self) {
            if let Some(done) = self.closing {
                let _ = done.send(());
            }
        }
    }

    #[cfg(test)]
    mod waiting_tests {
        use super::*;
        use std::time::{Duration, Instant};

        fn job(order_id: &str) -> Message {
            let (reply, _) = oneshot::channel();
            Message::Job(Job {
                shop_id: "shop_1".to_owned(),
                order_id: order_id.to_owned(),
                lease: None,
                decide: Decide::Change(Box::new(|_, _| Err(Box::new(())))),
                then_restock: None,
                reply,
                sent_at: Instant::now(),
            })
        }

        /// The writer's connection is wanted while anyone who raised the want still waits, and not
        /// once every one of them is gone (the SQLite writer lets it go after its group meanwhile).
        #[test]
        fn the_writer_sees_its_connection_wanted_until_every_waiter_is_gone() {
            let wanted = ConnectionWanted::default();
            let (_jobs, groups) = queue(wanted.clone());
            assert!(!groups.connection_wanted(), "nobody waits yet");
            let checkpoint = wanted.raise();
            let another = wanted.raise();
            assert!(groups.connection_wanted());
            drop(checkpoint);
            assert!(groups.connection_wanted(), "one waiter is still there");
            drop(another);
            assert!(!groups.connection_wanted(), "every waiter is gone");
        }

        /// Many changes waiting go in two groups of half, so that one is written while the other's
        /// callers are answered; a few go in one, and none takes more than [`GROUP_MAX`].
        #[test]
        fn a_group_takes_half_of_many_changes_waiting_and_all_of_a_few() {
            let (jobs, mut groups) = queue(ConnectionWanted::default());
            let mut taken = |count: usize| {
                for n in 0..count {
                    jobs.blocking_send(job(&format!("ord_{n}"))).expect("sent");
                }
                let mut sizes = Vec::new();
                while let Some(group) = Some(groups.waiting()).filter(|group| !group.is_empty()) {
                    sizes.push(group.len());
                }
                sizes
            };
            assert_eq!(taken(64), [32, 16, 16]);
            assert_eq!(taken(GROUP_SPLIT_FROM), [GROUP_SPLIT_FROM]);
            assert_eq!(taken(3), [3]);
            assert_eq!(taken(1000), [GROUP_MAX, GROUP_MAX, 244, 122, 61, 31, 16, 14]);
            assert_eq!(
                group_limit(GROUP_SPLIT_FROM + 1),
                GROUP_SPLIT_FROM,
                "never fewer than the floor"
            );
        }

        /// The group writer, with nothing waiting after a group, waits a moment for the next change
        /// while it keeps its connection: one that comes within the wait is taken, none leaves it
        /// empty-handed once the wait is over, and word to stop ends it at once.
        #[test]
        fn a_change_that_comes_within_the_wait_is_taken_and_none_coming_leaves_the_writer_empty_handed() {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime");
            let (jobs, mut groups) = queue(ConnectionWanted::default());
            let asked = Instant::now();
            assert!(groups.waiting_within(runtime.handle(), Duration::from_millis(20)).is_empty());
            assert!(asked.elapsed() >= Duration::from_millis(20), "it waited the whole wait");

            let sender = jobs.clone();
            runtime.spawn(async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let _ = sender.send(job("ord_late")).await;
            });
            let group = groups.waiting_within(runtime.handle(), Duration::from_secs(10));
            assert_eq!(group.iter().map(|job| job.order_id.as_str()).collect::<Vec<_>>(), ["ord_late"]);

            jobs.blocking_send(job("ord_waiting")).expect("sent");
            let group = groups.waiting_within(runtime.handle(), Duration::from_secs(10));
            assert_eq!(group.len(), 1, "a change already waiting is taken at once");

            let (done, stopped) = oneshot::channel();
            jobs.blocking_send(Message::Close(done)).expect("sent");
            let asked = Instant::now();
            assert!(groups.waiting_within(runtime.handle(), Duration::from_secs(10)).is_empty());
            assert!(asked.elapsed() < Duration::from_secs(10), "word to stop ends the wait");
            assert!(groups.next_blocking().is_none(), "and the writer stops");
            groups.stopped();
            assert!(stopped.blocking_recv().is_ok(), "whoever asked hears it stopped");
        }
    }

    /// What became of one job before the group is written.
    pub(crate) enum Decided {
        /// Made this many changes (a step's outcome and the restock it let run: one, or two when the
        /// restock changed the order's status).
        Changed(usize),
        Refused(Refusal),
        NotFound,
        /// The group failed before this job was decided.
        Failed,
    }

    /// The group's orders by shop and id, each shop's setup, and the levels and proofs read with them.
    pub(crate) type Loaded = (HashMap<(String, String), Order>, HashMap<String, ShopSetup>, GroupStock);

    /// The most shops whose setup a group writer keeps; past it, it starts again from none.
    const SETUPS_KEPT_MAX: usize = 1024;

    /// Each shop's setup as the group writer last read it. Channels and warehouses are only ever
    /// inserted — nothing updates or deletes either — so a kept setup that holds every channel and
    /// warehouse a group's orders name gives their decisions what a new read would (H4, C4); one that
    /// lacks one (created since, perhaps by another process) is read again. On PostgreSQL that is two
    /// round trips fewer per group.
    #[derive(Default)]
    pub(crate) struct Setups(HashMap<String, ShopSetup>);

    impl Setups {
        /// The shop's kept setup, when it covers every one of `orders`.
        pub(crate) fn covering<'o>(&self, shop_id: &str, mut orders: impl Iterator<Item = &'o Order>) -> Option<&ShopSetup> {
            let setup = self.0.get(shop_id)?;
            orders.all(|order| setup.covers(order)).then_some(setup)
        }

        /// Keeps the setup just read for the shop.
        pub(crate) fn keep(&mut self, shop_id: &str, setup: &ShopSetup) {
            if self.0.len() >= SETUPS_KEPT_MAX && !self.0.contains_key(shop_id) {
                self.0.clear();
            }
            self.0.insert(shop_id.to_owned(), setup.clone());
        }
    }

    /// Each shop's orders in the group.
    pub(crate) fn ids_by_shop(group: &[Job]) -> HashMap<String, Vec<String>> {
        let mut ids_by_shop: HashMap<String, Vec<String>> = HashMap::new();
        for job in group {
            ids_by_shop.entry(job.shop_id.clone()).or_default().push(job.order_id.clone());
        }
        ids_by_shop
    }

    /// The group's decisions: each job's reply and what became of it, the changes, one entry per
    /// change for the lease kept through it, and what the restocks put back.
    pub(crate) type Decisions =
        (Vec<(oneshot::Sender<Outcome>, Decided)>, Vec<OrderChange>, Vec<Option<Lease>>, GroupStock);

    /// Decides each job in turn against the order as the jobs before it left it; a restock reads what
    /// would go back and puts it back only when its outcome is recorded. A worker's lease is kept
    /// through its change when that change is the order's last in the group and schedules the next
    /// step by the lease's horizon. A failed write of a restock fails the group (the error comes last).
    pub(crate) async fn decide_all<S: Sink>(sink: &mut S, group: Vec<Job>, loaded: Loaded) -> (Decisions, Option<anyhow::Error>) {
        let (mut orders, setups, mut stock) = loaded;
        let mut replies = Vec::with_capacity(group.len());
        let mut changes = Vec::new();
        let mut leases = Vec::new();
        let wanted = restocks_wanted(&group, &orders);
        let mut failure = learn_restocks(sink, &mut stock, wanted).await.err();
        // Whether a later job of the group is on the same order, for each job: only then must the
        // order's copy in `orders` follow its changes (a copy of the whole order each).
        let mut seen = HashSet::with_capacity(group.len());
        // (In reverse, to be popped in order.)
        let mut later_jobs_on_order: Vec<bool> = group
            .iter()
            .rev()
            .map(|job| !seen.insert((job.shop_id.as_str(), job.order_id.as_str())))
            .collect();
        for job in group {
            let lease = job.lease;
            let more_to_come = later_jobs_on_order.pop().unwrap_or(true);
            let setup = setups.get(&job.shop_id);
            let key = (job.shop_id, job.order_id);
            // The group's last job on an order takes the order: a change is made on the order
            // itself, not on a copy of it (some thirty allocations an order).
            let held = if more_to_come {
                orders.get_mut(&key).map(Held::Shared)
            } else {
                orders.remove(&key).map(Held::Last)
            };
            let decided = match (held, setup) {
                _ if failure.is_some() => Decided::Failed,
                (None, _) | (_, None) => Decided::NotFound,
                (Some(held), Some(setup)) => {
                    let (decision, mut shared) = match (job.decide, held) {
                        (Decide::Change(decide), Held::Last(order)) => (Ok(decide(order, setup)), None),
                        (Decide::Change(decide), Held::Shared(order)) => (Ok(decide(order.clone(), setup)), Some(order)),
                        (Decide::Restock(decide), Held::Last(order)) => (restock(sink, &mut stock, &order, decide).await, None),
                        (Decide::Restock(decide), Held::Shared(order)) => (restock(sink, &mut stock, order, decide).await, Some(order)),
                    };
                    let decision = match (decision, job.then_restock) {
                        (Ok(Ok(change)), Some(then)) if restock_is_due(&change) => {
                            match restock(sink, &mut stock, &change.order, then).await {
                                Err(error) => Err(error),
                                // A stale restock is left to run as its own step.
                                Ok(Err(_refusal)) => Ok(Ok(vec![change])),
                                // One change of the two, in one history row and one outbox row instead
                                // of two each, when the restock leaves the order's status as the
                                // outcome did (an event row names one status; BENCHMARKS.md,
                                // twenty-ninth session).
                                Ok(Ok(restocked)) if restocked.order.status == change.order.status => {
                                    Ok(Ok(vec![change.then(restocked)]))
                                }
                                Ok(Ok(restocked)) => Ok(Ok(vec![change, restocked])),
                            }
                        }
                        (decision, _) => decision.map(|decided| decided.map(|change| vec![change])),
                    };
                    match decision {
                        Err(error) => {
                            failure = Some(error);
                            Decided::Failed
                        }
                        Ok(Err(refusal)) => Decided::Refused(refusal),
                        Ok(Ok(made)) => {
                            let count = made.len();
                            for change in made {
                                // A later job on the same order sees this change.
                                if let Some(order) = shared.as_deref_mut() {
                                    *order = change.order.clone();
                                }
                                let kept = lease.clone().filter(|lease| {
                                    matches!(change.workflow, WorkflowSchedule::DueAt(due_at) if due_at <= lease.keep_if_due_by)
                                });
                                // An earlier change of the same order keeps no lease: a later one decides.
                                for (earlier, earlier_lease) in changes.iter().zip(leases.iter_mut()) {
                                    let earlier: &OrderChange = earlier;
                                    if earlier.order.id == change.order.id {
                                        *earlier_lease = None;
                                    }
                                }
                                changes.push(change);
                                leases.push(kept);
                            }
                            Decided::Changed(count)
                        }
                    }
                }
            };
            replies.push((job.reply, decided));
        }
        ((replies, changes, leases, stock), failure)
    }

    /// A job's order in [`decide_all`]: the group's copy, when a later job of the group decides on
    /// the order too, or the order itself, taken from the group, for the last one.
    // On the stack for one job at a time: boxing the order would be an allocation of its own.
    #[allow(clippy::large_enum_variant)]
    enum Held<'o> {
        Shared(&'o mut Order),
        Last(Order),
    }

    /// Reads at once what the group's restocks — those asked for and those a step may leave due —
    /// decide on: each shop's levels of the SKUs their orders hold back and those orders' proofs.
    /// On PostgreSQL one round trip per shop instead of one per restock.
    async fn learn_restocks<S: Sink>(sink: &mut S, stock: &mut GroupStock, wanted: RestocksWanted) -> anyhow::Result<()> {
        for (shop_id, (orders, skus)) in wanted {
            let orders: Vec<(&str, &str)> = orders.iter().map(|(order, cancellation)| (order.as_str(), cancellation.as_str())).collect();
            let skus: Vec<&str> = skus.iter().map(String::as_str).collect();
            stock.learn(sink, &shop_id, &orders, &skus).await?;
        }
        Ok(())
    }

    /// Each shop's orders whose restocks a group may run (with their current cancellations), and
    /// the SKUs they hold back.
    type RestocksWanted = std::collections::BTreeMap<String, (Vec<(String, String)>, Vec<String>)>;

    /// The orders of the group's restocks and the SKUs they hold back, by shop in one order (so that
    /// two groups lock their levels in one order).
    fn restocks_wanted(group: &[Job], orders: &HashMap<(String, String), Order>) -> RestocksWanted {
        let mut wanted = RestocksWanted::new();
        for job in group {
            let Some(order) = orders.get(&(job.shop_id.clone(), job.order_id.clone())) else {
                continue;
            };
            // A step's outcome may leave the restock due only while the cancellation's restock is still
            // to run; the others' levels are not locked (an import deducting them would wait for the
            // group).
            let may_restock = job_may_restock(job)
                && match job.decide {
                    Decide::Restock(_) => true,
                    Decide::Change(_) => restock_still_to_run(order),
                };
            if !may_restock {
                continue;
            }
            let (orders, skus) = wanted.entry(order.shop_id.clone()).or_default();
            let cancellation_id = order.cancellation.as_ref().map(|c| c.id.clone()).unwrap_or_default();
            orders.push((order.id.clone(), cancellation_id));
            // What the order holds back: all of it, or a partial cancellation's lines (B1).
            skus.extend(order.stock_snapshot.iter().map(|(sku, _)| sku.clone()));
            skus.extend(order.current_restock_quantities().into_iter().map(|(sku, _)| sku));
        }
        wanted
    }

    /// Whether the job may run a restock: one asked for, or the one a step's outcome may let run.
    fn job_may_restock(job: &Job) -> bool {
        matches!(job.decide, Decide::Restock(_)) || job.then_restock.is_some()
    }

    /// Whether the order's cancellation has a restock step that has not ended.
    fn restock_still_to_run(order: &Order) -> bool {
        let Some(step) = order.cancellation.as_ref().and_then(|c| c.step(rescind_domain::StepKind::Restock)) else {
            return false;
        };
        match step.status {
            StepStatus::Pending | StepStatus::Running | StepStatus::Waiting => true,
            StepStatus::Succeeded | StepStatus::Failed | StepStatus::Skipped => false,
        }
    }

    /// Whether `change` leaves the restock as its cancellation's next step, due now.
    fn restock_is_due(change: &OrderChange) -> bool {
        matches!(rescind_domain::pending_work(&change.order), Some(rescind_domain::PendingWork::Restock))
            && matches!(change.workflow, WorkflowSchedule::DueAt(due_at) if due_at <= crate::now())
    }

    /// A restock inside the group: what would go back is planned from what the group read, the
    /// outcome decided on it, and the stock put back (with the group's write) only when the outcome
    /// is recorded — a refused one (a stale step) writes nothing. On PostgreSQL no round trip of its
    /// own (it was nine with a savepoint, then three).
    async fn restock<S: Sink>(
        sink: &mut S,
        stock: &mut GroupStock,
        order: &Order,
        decide: DecideRestock,
    ) -> anyhow::Result<Result<OrderChange, Refusal>> {
        let report = stock.plan(sink, order).await?;
        let decided = decide(order, report.clone());
        if decided.is_ok() {
            stock.put_back(order, &report, crate::now());
        }
        Ok(decided)
    }

    /// Answers every job once its group was written (`failure` is `None`) or not: nothing of a failed
    /// group was committed, so every change in it failed.
    pub(crate) fn answer(
        replies: Vec<(oneshot::Sender<Outcome>, Decided)>,
        changes: Vec<OrderChange>,
        leases: Vec<Option<Lease>>,
        failure: Option<anyhow::Error>,
    ) {
        let mut changes = changes.into_iter().zip(leases);
        for (reply, decided) in replies {
            let outcome = match (decided, &failure) {
                (Decided::Changed(_), Some(error)) => Outcome::Failed(format!("{error:#}")),
                // The job is answered with the last of its changes.
                (Decided::Changed(count), None) => match changes.by_ref().take(count).last() {
                    Some((change, lease)) => Outcome::Changed(Box::new(change), lease.is_some()),
                    None => Outcome::Failed("a decision lost its change".to_owned()),
                },
                (Decided::Refused(refusal), _) => Outcome::Refused(refusal),
                (Decided::NotFound, _) => Outcome::NotFound,
                (Decided::Failed, Some(error)) => Outcome::Failed(format!("{error:#}")),
                (Decided::Failed, None) => Outcome::Failed("the group failed".to_owned()),
            };
            let _ = reply.send(outcome);
        }
    }

    /// The group that waited while the last one was written, to run next: on the last one's connection
    /// when its transaction was begun with the last one's commit.
    pub(crate) type Next = (Vec<Job>, Option<sqlx::pool::PoolConnection<Db>>);

    /// Loads every order of the group at once (one query per table and shop), decides each job, and
    /// writes all changes together through sqlx: a group of a hundred cancels costs about as many
    /// statements as one. `begun` is a connection whose transaction was begun for this group with the
    /// last one's commit. When another group waits by the time this one is written, its transaction
    /// is begun with this one's commit (`COMMIT; BEGIN`: one round trip instead of two) and it is
    /// answered, to be run next; no transaction is left open without a group waiting for it.
    ///
    /// The group's callers are answered from a task spawned on `callers` (the runtime their requests
    /// run on): one wake-up of that runtime per group rather than one per caller from the writer's
    /// thread.
    #[allow(dead_code)]
    pub(crate) async fn run_group(
        pool: &sqlx::Pool<Db>,
        group: Vec<Job>,
        begun: Option<sqlx::pool::PoolConnection<Db>>,
        setups: &mut Setups,
        groups: &mut Groups,
        callers: &tokio::runtime::Handle,
    ) -> Option<Next> {
        let started = std::time::Instant::now();
        let size = group.len();
        let queued_us = queued_us(&group, &[], started);
        let mut connection = match begun {
            Some(connection) => connection,
            None => {
                match begin(pool).await {
                    Ok(connection) => connection,
                    Err(error) => {
                        fail_all(group, &format!("failed to start a change: {error}"));
                        return None;
                    }
                }
            }
        };
        let begun_us = started.elapsed().as_micros();
        let (loaded, spare_change_ids) = match load_group(&mut connection, &group, setups).await {
            Ok(loaded) => loaded,
            Err(error) => {
                roll_back(&mut connection).await;
                fail_all(group, &format!("{error:#}"));
                return None;
            }
        };
        let loaded_us = started.elapsed().as_micros();
        let mut sink = group_sink(&mut connection, spare_change_ids);
        let ((replies, changes, leases, stock), failed) = match catching_panics(decide_all(&mut sink, group, loaded)).await {
            Ok(decided) => decided,
            Err(_panic) => {
                // A decision's bug: its group's callers hear that their changes failed (their answers
                // went with the decisions), nothing of the group is kept, and the writer goes on.
                tracing::error!("a decision panicked; its group was rolled back");
                roll_back(&mut connection).await;
                return None;
            }
        };
        let decided_us = started.elapsed().as_micros();
        let mut written_us = 0;
        let mut next = None;
        let failure = match failed {
            Some(error) => Some(error),
            None => match save_into(&mut sink, &changes, &leases, &stock).await {
                Err(error) => Some(error),
                Ok(()) => {
                    written_us = started.elapsed().as_micros();
                    let waiting = groups.waiting();
                    let committed = commit(&mut connection, !waiting.is_empty()).await;
                    if !waiting.is_empty() {
                        next = Some((waiting, committed.is_ok()));
                    }
                    committed.err()
                }
            },
        };
        if failure.is_some() {
            roll_back(&mut connection).await;
        }
        tracing::debug!(
            size,
            queued_us,
            begun_us,
            loaded_us,
            decided_us,
            written_us,
            committed_us = started.elapsed().as_micros(),
            "group written"
        );
        callers.spawn(async move { answer(replies, changes, leases, failure) });
        next.map(|(group, begun)| (group, begun.then_some(connection)))
    }

    /// `future`'s output, or its panic: polled inside `catch_unwind`, and never again once it panicked.
    async fn catching_panics<F: std::future::Future>(future: F) -> std::thread::Result<F::Output> {
        let mut future = Box::pin(future);
        std::future::poll_fn(move |context| {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.as_mut().poll(context))) {
                Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
                Ok(std::task::Poll::Ready(output)) => std::task::Poll::Ready(Ok(output)),
                Err(panic) => std::task::Poll::Ready(Err(panic)),
            }
        })
        .await
    }

    /// A connection with a transaction begun on it.
    fn begin(pool: &sqlx::Pool<Db>) -> Boxed<'_, Result<sqlx::pool::PoolConnection<Db>, sqlx::Error>> {
        Box::pin(async move {
            let mut connection = pool.acquire().await?;
            sqlx::Executor::execute(&mut *connection, "BEGIN").await?;
            Ok(connection)
        })
    }

    /// A future boxed as `Send`: written as `async fn`, the writer's task was not seen to be `Send`
    /// (the compiler's higher-ranked lifetimes of sqlx's executors).
    type Boxed<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

    /// Commits the group's transaction and, when `begin_next`, begins the next one in the same round
    /// trip (one simple query of two statements; the server runs the second only when the first
    /// succeeded). An error is taken for a failed commit: the `BEGIN` after a commit that succeeded
    /// fails only with the connection, when a lone commit's outcome would be as unknown.
    fn commit(connection: &mut Connection, begin_next: bool) -> Boxed<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let statements = if begin_next { "COMMIT; BEGIN" } else { "COMMIT" };
            sqlx::Executor::execute(connection, statements).await.context("failed to commit a change")?;
            Ok(())
        })
    }

    /// Ends a failed group's transaction, if one is open; a connection that cannot is closed rather
    /// than handed back to the pool inside a transaction.
    fn roll_back(connection: &mut sqlx::pool::PoolConnection<Db>) -> Boxed<'_, ()> {
        Box::pin(async move {
            if let Err(error) = sqlx::Executor::execute(&mut **connection, "ROLLBACK").await {
                tracing::warn!(error = %error, "a failed group's transaction was not rolled back");
                connection.close_on_drop();
            }
        })
    }

    /// The group's orders and each shop's setup, with history row numbers taken for its changes and
    /// the levels and proofs its restocks will want (most of them) read with the orders.
    async fn load_group(connection: &mut Connection, group: &[Job], kept: &mut Setups) -> anyhow::Result<(Loaded, Vec<i64>)> {
        let mut spare_change_ids = Vec::new();
        let mut orders = HashMap::new();
        let mut setups = HashMap::new();
        let mut stock = GroupStock::default();
        let mut restocking: HashMap<String, Vec<String>> = HashMap::new();
        for job in group.iter().filter(|job| job_may_restock(job)) {
            restocking.entry(job.shop_id.clone()).or_default().push(job.order_id.clone());
        }
        // Shop by shop in one order, so group writers of two processes take their locks in one order
        // (a shop's orders, then its levels).
        let mut ids_by_shop: Vec<(String, Vec<String>)> = ids_by_shop(group).into_iter().collect();
        ids_by_shop.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (shop_id, ids) in ids_by_shop {
            let restocking = restocking.remove(&shop_id).unwrap_or_default();
            // A job makes at most two changes (a step's outcome and the restock it lets run).
            let load = load_orders_numbering_changes(connection, &shop_id, &ids, ids.len() * 2, &restocking).await?;
            spare_change_ids.extend(load.spare_change_ids);
            if let Some(read) = load.stock {
                let skus: Vec<&str> = read.skus.iter().map(String::as_str).collect();
                let asked: Vec<&str> = read.orders.iter().map(String::as_str).collect();
                stock.record(&shop_id, &skus, &asked, read.known);
            }
            let loaded = load.orders;
            let setup = match kept.covering(&shop_id, loaded.iter()) {
                Some(setup) => setup.clone(),
                None => {
                    let setup = load_shop_setup(connection, &shop_id).await?;
                    kept.keep(&shop_id, &setup);
                    setup
                }
            };
            setups.insert(shop_id.clone(), setup);
            for order in loaded {
                orders.insert((shop_id.clone(), order.id.clone()), order);
            }
        }
        spare_change_ids.sort_unstable();
        Ok(((orders, setups, stock), spare_change_ids))
    }

    /// How long the group's longest-waiting job waited for the writer (µs), for the group's log line.
    pub(crate) fn queued_us(group: &[Job], imports: &[ImportJob], started: std::time::Instant) -> u128 {
        let sent = group.iter().map(|job| job.sent_at).chain(imports.iter().map(|job| job.sent_at));
        sent.map(|sent_at| started.duration_since(sent_at).as_micros()).max().unwrap_or(0)
    }

    pub(crate) fn fail_all(group: Vec<Job>, error: &str) {
        for job in group {
            let _ = job.reply.send(Outcome::Failed(error.to_owned()));
        }
    }
}
