//! What a change writes, apart from how a backend writes it.
//!
//! A change's rows (order rows, cancellations, history lines, events, …) are gathered as [`Rows`]: one
//! statement shape and the values of every row. A [`Sink`] writes them. On PostgreSQL the sink sends
//! multi-row statements through sqlx; on SQLite it runs one prepared single-row statement per row on
//! the writer connection's own handle, so a whole change is written without a hand-off between
//! threads per statement and row (BENCHMARKS.md, "A writer on SQLite's own handle").

use anyhow::Result;
use std::borrow::Cow;
use std::collections::HashMap;

/// One bound value. A NULL keeps its type: PostgreSQL needs it to match the column.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value<'a> {
    Text(Option<Cow<'a, str>>),
    Int(Option<i64>),
    Bool(bool),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(text: &'a str) -> Self {
        Value::Text(Some(Cow::Borrowed(text)))
    }
}

impl From<String> for Value<'_> {
    fn from(text: String) -> Self {
        Value::Text(Some(Cow::Owned(text)))
    }
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(text: Option<&'a str>) -> Self {
        Value::Text(text.map(Cow::Borrowed))
    }
}

impl From<Option<String>> for Value<'_> {
    fn from(text: Option<String>) -> Self {
        Value::Text(text.map(Cow::Owned))
    }
}

impl From<i64> for Value<'_> {
    fn from(number: i64) -> Self {
        Value::Int(Some(number))
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(number: Option<i64>) -> Self {
        Value::Int(number)
    }
}

impl From<bool> for Value<'_> {
    fn from(flag: bool) -> Self {
        Value::Bool(flag)
    }
}

/// Rows of one statement shape: `head` names the table and columns (`INSERT INTO t (a, b) `), `tail`
/// follows the values (an `ON CONFLICT` clause, or nothing).
#[derive(Debug)]
pub(crate) struct Rows<'a> {
    pub(crate) head: &'static str,
    pub(crate) tail: &'static str,
    width: usize,
    values: Vec<Value<'a>>,
}

impl<'a> Rows<'a> {
    pub(crate) fn new(head: &'static str, width: usize, tail: &'static str) -> Rows<'a> {
        Rows {
            head,
            tail,
            width,
            values: Vec::new(),
        }
    }

    /// Adds one row; it has as many values as the statement has columns.
    pub(crate) fn push<const N: usize>(&mut self, row: [Value<'a>; N]) {
        self.push_values(row);
    }

    pub(crate) fn width(&self) -> usize {
        self.width
    }

    /// How many rows there are.
    pub(crate) fn len(&self) -> usize {
        self.values.len() / self.width.max(1)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Adds one row from its values; it has as many as the statement has columns.
    pub(crate) fn push_values(&mut self, row: impl IntoIterator<Item = Value<'a>>) {
        let before = self.values.len();
        self.values.extend(row);
        assert_eq!(
            self.values.len() - before,
            self.width,
            "a row of {} values for a statement of {} columns",
            self.values.len() - before,
            self.width
        );
    }

    /// Each row's values.
    pub(crate) fn rows(&self) -> impl Iterator<Item = &[Value<'a>]> {
        self.values.chunks_exact(self.width)
    }

    /// The statement for one row, with numbered parameters (`$1` works on both backends).
    pub(crate) fn single_row_sql(&self) -> String {
        use std::fmt::Write;
        let mut sql = String::with_capacity(self.head.len() + self.tail.len() + 8 + 5 * self.width);
        sql.push_str(self.head);
        sql.push_str("VALUES (");
        for column in 1..=self.width {
            if column > 1 {
                sql.push_str(", ");
            }
            // Written in place: the SQLite group writer puts each table's statement together once
            // per group, and a number's own string was an allocation per column.
            let _ = write!(sql, "${column}");
        }
        sql.push(')');
        sql.push_str(self.tail);
        sql
    }
}

/// An active webhook: its id, its shop's id and the event types it wants (space-separated).
pub(crate) type ActiveWebhook = (String, String, String);

/// Where a change's rows go. Besides plain inserts, the few writes that need an answer from the
/// database: the outbox's sequence numbers, a shop's webhooks, which SKUs are stocked.
#[allow(async_fn_in_trait)]
pub(crate) trait Sink {
    /// Inserts (or upserts, by the tail) every row.
    async fn insert(&mut self, rows: &Rows<'_>) -> Result<()>;
    /// Inserts an order's history rows (`order_changes`: the order's id first), which the database
    /// numbers, and answers each row's order id and number — the order's row names them.
    async fn insert_history_rows(&mut self, rows: &Rows<'_>) -> Result<Vec<(String, i64)>>;
    /// Inserts outbox rows (their first column is the row's id, its first event's) and answers each
    /// id's `seq`, with the active webhooks of `shops` to deliver them to, by id — read in the same
    /// statement where the sink holds its writes (PostgreSQL's `Batched`: no round trip of its own).
    async fn insert_events(
        &mut self,
        rows: &Rows<'_>,
        shops: &[&str],
    ) -> Result<(HashMap<String, i64>, Vec<ActiveWebhook>)>;
    /// Where the writer numbers outbox rows itself ([`crate::Dialect::outbox_numbers_handed_out`]):
    /// the first number the next rows may take, the multiple of [`crate::OUTBOX_EVENTS_PER_ROW`] after
    /// every number handed out. `None` where the database numbers them.
    async fn outbox_rows_from(&mut self) -> Result<Option<i64>>;
    /// Adds each delta to the shop's SKU where that SKU is stocked; answers the SKUs that were.
    async fn add_stock(&mut self, shop_id: &str, deltas: &[(&str, i64)], at: i64) -> Result<Vec<String>>;
    /// Queues the SKUs' levels for every channel listing them (I5), due one push interval after `at`.
    async fn queue_pushes(&mut self, shop_id: &str, skus: &[String], at: i64) -> Result<()>;
    /// Forgets the workflow jobs of these orders.
    async fn delete_jobs(&mut self, order_ids: &[&str]) -> Result<()>;
    /// The SKUs of `skus` the shop stocks, their levels locked for the transaction (in SKU order,
    /// where the backend locks rows), and every restock proof of these (order, cancellation) pairs
    /// (I2) — what a group's restocks decide on, read for all of them at once.
    async fn stock_and_proofs(
        &mut self,
        shop_id: &str,
        skus: &[&str],
        orders: &[(&str, &str)],
    ) -> Result<StockAndProofs>;
    /// [`Sink::add_stock`] for SKUs known to be stocked (their levels locked in this transaction):
    /// with nothing to answer, a sink that holds its writes holds this one too.
    async fn add_known_stock(&mut self, shop_id: &str, deltas: &[(&str, i64)], at: i64) -> Result<()> {
        self.add_stock(shop_id, deltas, at).await.map(drop)
    }
}

/// What [`Sink::stock_and_proofs`] read.
#[derive(Debug, Default)]
pub(crate) struct StockAndProofs {
    /// The SKUs stocked.
    pub(crate) stocked: Vec<String>,
    /// Each proof's order, cancellation and SKU.
    pub(crate) proofs: Vec<(String, String, String)>,
}

/// The first multiple of [`crate::OUTBOX_EVENTS_PER_ROW`] after `handed_out`, the highest outbox
/// number handed out (0 for none).
pub(crate) fn next_outbox_row(handed_out: i64) -> i64 {
    (handed_out / crate::OUTBOX_EVENTS_PER_ROW + 1) * crate::OUTBOX_EVENTS_PER_ROW
}

/// Runs a future that never waits (a [`Sink`] over a synchronous connection) to its end, here.
pub(crate) fn run_now<T, E: From<anyhow::Error>>(
    future: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => Err(anyhow::anyhow!("a synchronous write waited").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_row_statement_numbers_every_column() {
        let mut rows = Rows::new("INSERT INTO t (a, b, c) ", 3, " ON CONFLICT (a) DO NOTHING");
        rows.push(["x".into(), 1_i64.into(), true.into()]);
        rows.push([None::<&str>.into(), None::<i64>.into(), false.into()]);
        assert_eq!(
            rows.single_row_sql(),
            "INSERT INTO t (a, b, c) VALUES ($1, $2, $3) ON CONFLICT (a) DO NOTHING"
        );
        let rows: Vec<&[Value<'_>]> = rows.rows().collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1], [Value::Text(None), Value::Int(None), Value::Bool(false)]);
    }
}
