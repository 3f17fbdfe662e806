//! rescind's storage: one interface ([`Store`]) over two backends, SQLite (the embedded default) and
//! PostgreSQL (production). Both run the same SQL from one source (`backend.rs`, compiled once per
//! backend with its own `Db` type and [`Dialect`]), so they cannot drift apart.
//!
//! Every change to an order is a read-decide-write in one transaction: the store loads the order
//! (locked on PostgreSQL; SQLite has a single writer connection), hands it to a pure decision of the
//! domain crate, and writes the [`OrderChange`] it returns — order row, cancellation, refunds and
//! history together — or nothing.

mod codec;
pub mod ids;
mod now;
mod phrases;
mod rows;
mod syncer;
mod vfs;

pub use ids::{new_id, RandomIds};
pub use now::now;

use anyhow::Result;
use rescind_domain::{
    CancellationStatus, ChannelKind, FulfillmentStatus, HistoryEntry, Order, OrderChange, OrderStatus, Scope, Timestamp,
};
use std::collections::{HashMap, HashSet};

/// Which database a backend keeps its data in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DatabaseKind {
    Sqlite,
    Postgres,
}

/// How many events one outbox row carries at most (migration 0014): the events of one history row,
/// where a cancellation has four. Rows are numbered this far apart, and an event's number is its
/// row's plus its place among the row's events; a change with more events takes more rows.
pub(crate) const OUTBOX_EVENTS_PER_ROW: i64 = 16;

/// The SQL that differs between the backends.
pub(crate) struct Dialect {
    /// The database itself: a migration may be written for each.
    pub kind: DatabaseKind,
    /// Appended to the order lookup of a read-decide-write: row locks on PostgreSQL; nothing on
    /// SQLite, whose single writer connection already serializes writers.
    pub lock_order: &'static str,
    /// Case-insensitive LIKE.
    pub like: &'static str,
    /// The identity column of the migrations.
    pub identity_primary_key: &'static str,
    /// The identity column of a table whose rows are never deleted: on SQLite without
    /// `AUTOINCREMENT`, whose only use is never to hand out the key of a deleted last row again, and
    /// which costs every insert a read and a write of `sqlite_sequence`.
    pub append_only_primary_key: &'static str,
    /// Serializes concurrent migrators, where the backend needs it.
    pub migration_lock: Option<&'static str>,
    /// Lets concurrent workers claim different jobs instead of waiting on each other's locks.
    pub skip_locked: &'static str,
    /// Starts a read whose statements all see one committed state: an order read with its
    /// cancellation, refunds and request is never half before and half after a change.
    pub read_snapshot: &'static str,
    /// Ends the statement that writes outbox events. On PostgreSQL, where writers run at once (the
    /// group writer, bulk cancels, imports, other processes), it takes a lock held to the commit
    /// before the first event gets its sequence number: events then commit in the order of their
    /// sequence numbers, so a reader paging by sequence number (`GET /events?after=`) never passes
    /// one that commits later. The lock is a one-time filter of the statement, so it costs no round
    /// trip of its own.
    pub outbox_turn: &'static str,
    /// Where the writer numbers outbox rows itself (SQLite, whose `AUTOINCREMENT` counts by one, where
    /// rows are numbered [`OUTBOX_EVENTS_PER_ROW`] apart; migration 0014): the statement that
    /// reads the highest number handed out. On PostgreSQL the identity column counts by sixteen.
    pub outbox_numbers_handed_out: Option<&'static str>,
    /// Hands out `$1` new history row numbers (`order_changes.id`), one per row: an import names its
    /// orders' history rows in the orders' own rows as it writes them. On SQLite, whose one writer
    /// numbers the rows in its transaction, the ones after the highest there.
    pub history_numbers: &'static str,
    /// Inserts history rows with numbers already handed out ([`Dialect::history_numbers`], or on
    /// PostgreSQL the group writer's, taken with its orders' locks).
    pub numbered_history_insert: &'static str,
}

/// A platform tenant (B6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shop {
    pub id: String,
    pub name: String,
    pub settings: Settings,
}

/// A shop's settings (API.md "Shop settings").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub customer_cancellation_requests: bool,
    pub inventory_push_interval_s: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            customer_cancellation_requests: false,
            inventory_push_interval_s: 300,
        }
    }
}

/// A partial update of [`Settings`]: `None` keeps the current value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    pub customer_cancellation_requests: Option<bool>,
    pub inventory_push_interval_s: Option<i64>,
}

/// A stored API token: only the hash of its secret is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiToken {
    pub id: String,
    pub shop_id: String,
    /// Hex SHA-256 of the secret.
    pub token_hash: String,
    pub scopes: Vec<Scope>,
}

/// A signed-in operator of the console: the shop token it was opened with, by its hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSession {
    /// Hex SHA-256 of the cookie's secret.
    pub id_hash: String,
    pub token_hash: String,
    /// Every form of the session carries it; a post without it is refused.
    pub csrf_token: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Where a shop wants its events sent (B4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    pub shop_id: String,
    pub url: String,
    pub events: Vec<rescind_domain::EventType>,
    /// Signs each delivery; shown to the shop once.
    pub secret: String,
    pub active: bool,
    pub created_at: Timestamp,
}

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// Every attempt failed; a replay starts it again.
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 3] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Delivered,
        DeliveryStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        DeliveryStatus::ALL.into_iter().find(|status| status.as_str() == text)
    }
}

/// One event on its way to one webhook.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    /// The event's place in the outbox: an order's events are delivered in this order.
    pub event_seq: i64,
    pub event_type: String,
    pub order_id: Option<String>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

/// An event of the outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxEvent {
    pub seq: i64,
    pub id: String,
    pub shop_id: String,
    pub order_id: Option<String>,
    pub event_type: String,
    pub at: Timestamp,
    /// What happened: the order's id, number and status, the history line's message and data.
    pub payload: serde_json::Value,
}

/// A delivery claimed for sending, with where and how to send it.
#[derive(Clone, Debug)]
pub struct DueDelivery {
    pub delivery: Delivery,
    pub url: String,
    pub secret: String,
    pub event: OutboxEvent,
}

/// What became of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered {
        status_code: u16,
    },
    Retry {
        status_code: Option<u16>,
        error: String,
        at: Timestamp,
    },
    GaveUp {
        status_code: Option<u16>,
        error: String,
    },
}

/// Channels and payment providers already read, by shop and id, so that the workflow's steps do not
/// read the same row again for every call. Their rows never change once created — the API creates
/// them and has neither an update nor a delete — so a row read once is the row in every process; an
/// update or a delete, if one is ever added, must forget the row here too. Each map keeps at most
/// [`KNOWN_MAX`] rows and starts again when full.
#[derive(Debug, Default)]
pub(crate) struct Known {
    channels: std::sync::Mutex<HashMap<(String, String), Channel>>,
    payment_providers: std::sync::Mutex<HashMap<(String, String), PaymentProvider>>,
}

/// The most rows of each kind [`Known`] keeps.
const KNOWN_MAX: usize = 4096;

impl Known {
    fn get<T: Clone>(map: &std::sync::Mutex<HashMap<(String, String), T>>, shop_id: &str, id: &str) -> Option<T> {
        let map = map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&(shop_id.to_owned(), id.to_owned())).cloned()
    }

    fn keep<T>(map: &std::sync::Mutex<HashMap<(String, String), T>>, shop_id: &str, id: &str, row: T) {
        let mut map = map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= KNOWN_MAX {
            map.clear();
        }
        map.insert((shop_id.to_owned(), id.to_owned()), row);
    }

    pub(crate) fn channel(&self, shop_id: &str, id: &str) -> Option<Channel> {
        Self::get(&self.channels, shop_id, id)
    }

    pub(crate) fn keep_channel(&self, channel: &Channel) {
        Self::keep(&self.channels, &channel.shop_id, &channel.id, channel.clone());
    }

    pub(crate) fn payment_provider(&self, shop_id: &str, id: &str) -> Option<PaymentProvider> {
        Self::get(&self.payment_providers, shop_id, id)
    }

    pub(crate) fn keep_payment_provider(&self, provider: &PaymentProvider) {
        Self::keep(
            &self.payment_providers,
            &provider.shop_id,
            &provider.id,
            provider.clone(),
        );
    }
}

/// A sales channel integration of a shop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Channel {
    pub id: String,
    pub shop_id: String,
    pub kind: ChannelKind,
    pub name: String,
    pub base_url: Option<String>,
    /// Write-only secrets as a JSON object; never returned by the API, never logged.
    pub credentials: Option<String>,
    pub cancel_sync: bool,
    pub created_at: Timestamp,
}

pub use rescind_domain::PaymentProviderKind;

/// A payment provider integration of a shop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentProvider {
    pub id: String,
    pub shop_id: String,
    pub kind: PaymentProviderKind,
    pub name: String,
    pub base_url: String,
    /// Write-only secrets as a JSON object; never returned by the API, never logged.
    pub credentials: Option<String>,
    pub created_at: Timestamp,
}

/// A SKU's stock (API.md `GET /inventory/{sku}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockLevel {
    pub sku: String,
    pub available: i64,
    pub updated_at: Timestamp,
}

/// The most levels one claim of the stock pusher takes.
pub const STOCK_PUSH_CLAIM_MAX: i64 = 1000;

/// Where a SKU is sold (I5): the channel and its own id of the listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    pub channel_id: String,
    pub external_id: String,
    pub location_id: Option<String>,
}

/// One SKU's level claimed for a push to a channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushItem {
    pub sku: String,
    pub external_id: String,
    pub location_id: Option<String>,
    pub available: i64,
    /// The stock moves counted when claimed: a row whose version moved since stays for the next push.
    pub version: i64,
    pub attempts: u32,
}

/// The levels of one channel claimed for one push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushBatch {
    pub shop_id: String,
    pub channel_id: String,
    pub items: Vec<PushItem>,
}

/// What became of a push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// The channel has the levels.
    Pushed,
    /// Try again at this time.
    RetryAt(Timestamp, String),
    /// The channel refused, or every attempt failed: the levels go out with the next stock move.
    GaveUp(String),
}

/// What a restock did, SKU by SKU.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestockReport {
    pub restocked: Vec<(String, u32)>,
    /// Already put back for this cancellation (a retry, a race).
    pub already: Vec<String>,
    /// Not stocked here.
    pub missing: Vec<String>,
}

/// A warehouse integration of a shop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warehouse {
    pub id: String,
    pub shop_id: String,
    pub kind: rescind_domain::WarehouseKind,
    pub name: String,
    pub base_url: String,
    /// Write-only secrets as a JSON object; never returned by the API, never logged.
    pub credentials: Option<String>,
    pub settings: rescind_domain::WarehouseSettings,
    /// The warehouse API's rate limit: `rate_limit` requests per `rate_limit_window_ms`.
    pub rate_limit: u32,
    pub rate_limit_window_ms: u64,
    pub created_at: Timestamp,
}

/// What a cancel decision needs to know of the shop: its channels' `cancel_sync` (H4) and its
/// warehouses' settings (C4).
#[derive(Clone, Debug, Default)]
pub struct ShopSetup {
    pub channels: Vec<Channel>,
    pub warehouses: Vec<Warehouse>,
}

impl ShopSetup {
    /// Whether a cancel goes to the order's channel (H4); a channel that is gone counts as on.
    pub fn channel_cancel_sync(&self, order: &Order) -> bool {
        self.channels
            .iter()
            .find(|channel| channel.id == order.channel_id)
            .is_none_or(|channel| channel.cancel_sync)
    }

    /// Whether this holds the order's channel and, when it has one, its warehouse: all a decision
    /// about the order asks of it.
    pub(crate) fn covers(&self, order: &Order) -> bool {
        self.channels.iter().any(|channel| channel.id == order.channel_id)
            && order
                .warehouse_id
                .as_deref()
                .is_none_or(|warehouse_id| self.warehouses.iter().any(|warehouse| warehouse.id == warehouse_id))
    }

    /// The settings of the warehouse that would ship the order, if it has one.
    pub fn warehouse_settings(&self, order: &Order) -> Option<rescind_domain::WarehouseSettings> {
        warehouse_settings(&self.warehouses, order)
    }
}

/// The settings of the order's warehouse among `warehouses`, when it has one.
pub fn warehouse_settings(warehouses: &[Warehouse], order: &Order) -> Option<rescind_domain::WarehouseSettings> {
    let warehouse_id = order.warehouse_id.as_deref()?;
    warehouses
        .iter()
        .find(|warehouse| warehouse.id == warehouse_id)
        .map(|warehouse| warehouse.settings)
}

/// A cancellation with the order it belongs to, for lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancellationOfOrder {
    pub order_id: String,
    pub number: String,
    pub cancellation: rescind_domain::Cancellation,
}

/// A customer's cancellation request with the order it belongs to, for lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestOfOrder {
    pub order_id: String,
    pub number: String,
    pub request: rescind_domain::CancellationRequest,
}

/// A sync history entry with its order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncEntry {
    /// `None` for a stock push, which belongs to no order.
    pub order_id: Option<String>,
    pub record: rescind_domain::SyncRecord,
}

/// A cancellation with a step for the worker, claimed under a lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    pub shop_id: String,
    pub order_id: String,
}

/// Filters of the order list (API.md `GET /orders`). `q` matches number, channel order id, customer
/// name or email.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderFilter {
    pub status: Option<OrderStatus>,
    pub fulfillment_status: Option<FulfillmentStatus>,
    pub channel_id: Option<String>,
    pub cancellation_status: Option<CancellationStatus>,
    pub q: Option<String>,
}

/// One page of a list, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass back as `cursor` for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// Why an import did not store an order.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("an order with this channel_order_id already exists in this channel ({existing_id})")]
    Duplicate { existing_id: String },
    #[error("the order is invalid")]
    Invalid(Vec<String>),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// An order to import: its shop, its channel and the channel's id of it, and the number it asks for
/// (none: the shop's next).
#[derive(Clone, Copy)]
pub(crate) struct NewImport<'a> {
    pub(crate) shop_id: &'a str,
    pub(crate) channel_id: &'a str,
    pub(crate) channel_order_id: Option<&'a str>,
    pub(crate) requested_number: Option<&'a str>,
}

/// Why a change to one order was not made.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError<E> {
    #[error("no such order in this shop")]
    NotFound,
    /// The domain decided against it; nothing was written.
    #[error("the change was refused")]
    Refused(E),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// Where an `Idempotency-Key` stands when a request arrives (B3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// First use: the request runs and its response is stored.
    New,
    /// Seen with the same request: send the stored response again.
    Replay { status_code: u16, body: String },
    /// Seen with a different request.
    Mismatch,
    /// The first request with this key has not been answered yet.
    InProgress,
}

/// How long a stored response is replayed (API.md: at least 24 h).
pub const IDEMPOTENCY_RETENTION_S: i64 = 24 * 60 * 60;
/// How long events and finished webhook deliveries are kept (the delivery log, `GET /events`, replays):
/// 30 days. A pending delivery is never forgotten.
pub const OUTBOX_RETENTION_S: i64 = 30 * 24 * 60 * 60;
/// A claim older than this without a response belongs to a request that died; a retry may take it over.
pub const IDEMPOTENCY_ABANDONED_AFTER_S: i64 = 60;

/// The most orders a bulk change loads at once (API.md: bulk cancel takes at most 1000 ids).
pub const BULK_ORDERS_MAX: usize = 1000;

mod sqlite {
    //! The SQLite backend.
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
    use std::str::FromStr;
    pub(crate) type Db = sqlx::Sqlite;
    const DIALECT: crate::Dialect = crate::Dialect {
        kind: crate::DatabaseKind::Sqlite,
        lock_order: "",
        like: "LIKE",
        identity_primary_key: "INTEGER PRIMARY KEY AUTOINCREMENT",
        append_only_primary_key: "INTEGER PRIMARY KEY",
        migration_lock: None,
        skip_locked: "",
        read_snapshot: "BEGIN",
        outbox_turn: "",
        outbox_numbers_handed_out: Some("SELECT seq FROM sqlite_sequence WHERE name = 'outbox_events'"),
        history_numbers: "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
             SELECT (SELECT COALESCE(MAX(id), 0) FROM order_changes) + i FROM n",
        numbered_history_insert: "INSERT INTO order_changes (id, order_id, at, lines) ",
    };
    /// Statements the writer keeps prepared: a group's statements come in a few shapes per table
    /// (power-of-two row counts), well within this.
    const STATEMENTS_CACHED: usize = 512;
    /// The page size of a new database file (an existing one keeps its own). Every commit writes each
    /// page it changed to the WAL whole, and a small group of cancellations changes the last page of
    /// about fifteen tables and indexes: with 4 KiB pages a steady 2 000 cancellations/s wrote 140–190
    /// MB/s (WAL and checkpoints), with 2 KiB 95–120 MB/s, and the commits' fsyncs wait less behind it.
    /// Rows stay whole in a page of 2 KiB (an order row is about 1 KB); in 1 KiB they spill into
    /// overflow pages (BENCHMARKS.md). Measured again in the twelfth session: 4 KiB pages spare a
    /// checkpoint reading a block before it writes half of it into a large file whose pages the
    /// kernel let go of, but the steady scenario's p99 was worse with them.
    const PAGE_SIZE: u32 = 2048;
    /// Readers run beside the single writer thanks to WAL.
    const READ_CONNECTIONS_MAX: u32 = 8;

    /// The size of a slot of the writer connection's lookaside, SQLite's own allocator for its small
    /// objects (SQLite's default size).
    const WRITER_LOOKASIDE_SLOT: std::ffi::c_int = 1200;
    /// How many slots: 40 by default, which the writer's kept statements and a group's rows outgrow,
    /// and each allocation past them goes to `malloc` behind a mutex. Up to 691 were in use at once
    /// in the group writer's tests; 2.4 MB for the writer alone. Its time per cancellation 38.0–40.0
    /// µs against 39.4–43.6 with the default (BENCHMARKS.md, twenty-fourth session).
    const WRITER_LOOKASIDE_SLOTS: std::ffi::c_int = 2000;

    /// Gives the writer connection [`WRITER_LOOKASIDE_SLOTS`] of lookaside. SQLite changes it only
    /// while none is in use, so the statements sqlx prepared while connecting are finalized first; if
    /// it refuses anyway, the connection keeps the default (logged).
    async fn writer_lookaside(connection: &mut sqlx::SqliteConnection) -> Result<(), sqlx::Error> {
        sqlx::Connection::clear_cached_statements(&mut *connection).await?;
        let mut handle = connection.lock_handle().await?;
        // SAFETY: the handle is open and locked for this thread; SQLite allocates the slots itself
        // (a null buffer) and frees them with the connection.
        let code = unsafe {
            rusqlite::ffi::sqlite3_db_config(
                handle.as_raw_handle().as_ptr(),
                rusqlite::ffi::SQLITE_DBCONFIG_LOOKASIDE,
                std::ptr::null_mut::<std::ffi::c_void>(),
                WRITER_LOOKASIDE_SLOT,
                WRITER_LOOKASIDE_SLOTS,
            )
        };
        if code != rusqlite::ffi::SQLITE_OK {
            tracing::warn!(code, "the writer connection keeps SQLite's default lookaside");
        }
        Ok(())
    }

    pub(crate) async fn connect(url: &str) -> anyhow::Result<Backend> {
        let options = SqliteConnectOptions::from_str(url)?
            // The platform's VFS, writing each commit's WAL frames in one call (`vfs.rs`).
            .vfs(crate::vfs::register()?)
            .create_if_missing(true)
            .page_size(PAGE_SIZE)
            .journal_mode(SqliteJournalMode::Wal)
            // A committed transaction is on disk: an answer of 200 must survive a power cut.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(5))
            .foreign_keys(true);
        // One writer connection: writes queue in the pool instead of failing with SQLITE_BUSY. A
        // connection to a local file cannot go stale, so it is not pinged before each use (that ping
        // would be one more round trip to SQLite's thread per request).
        // No commit copies the WAL into the database itself (one that did would keep every change
        // waiting behind it); `checkpoint` does, mostly on a reader beside the writer.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            // The group writer keeps statements prepared on this connection (`KeptHandle`): it is never
            // closed but by `Backend::close`.
            .idle_timeout(None)
            .max_lifetime(None)
            .after_connect(|connection, _| Box::pin(writer_lookaside(connection)))
            .connect_with(
                options
                    .clone()
                    .pragma("wal_autocheckpoint", "0")
                    .pragma("journal_size_limit", WAL_SIZE_LIMIT)
                    .statement_cache_capacity(STATEMENTS_CACHED),
            )
            .await?;
        let database_path = options.get_filename().to_owned();
        // Opened once, after the connections: see `DatabaseFile`.
        let database_file = DatabaseFile::open(&database_path);
        let read = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS_MAX)
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        let batcher = batch::start(write.clone());
        tokio::spawn(checkpoint(
            read.clone(),
            write.clone(),
            batcher.connection_wanted(),
            database_path,
            database_file,
        ));
        Ok(Backend {
            write,
            read,
            batcher,
            known: std::sync::Arc::default(),
        })
    }

    /// How often a reader copies the WAL into the database file, beside the writer.
    const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
    /// How often the writer connection itself finishes that copy. A WAL restarts from its beginning
    /// only when a write begins with every frame copied; under steady writes a reader's checkpoint
    /// never catches up with the writer, and the WAL grew by every commit (800 MB in a 20 000-order
    /// benchmark), each new frame written to a new block of the file. Taking the writer connection for
    /// the few frames the readers left lets the next group write over the old ones.
    const WRITER_CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);
    /// What a restarted WAL is cut back to (bytes).
    const WAL_SIZE_LIMIT: &str = "67108864";

    /// Rounds of a reader's checkpoint and the database file's sync before the writer's checkpoint,
    /// at most: each copies what was committed during the round before, so under any load the
    /// writer can keep up with, each is shorter than the one before.
    const CHECKPOINT_ROUNDS_MAX: u32 = 6;
    /// Frames a round may find and still be the last before the writer's checkpoint: about a
    /// millisecond's copy, a few of the writer's commits at full load.
    const CHECKPOINT_ROUND_FRAMES_LAST: i64 = 512;

    /// Copies committed pages from the WAL into the database: `PASSIVE` on a reader every
    /// [`CHECKPOINT_INTERVAL`] (never blocking the writer; its pages start on their way to disk at
    /// once, [`start_writeback`]), and every [`WRITER_CHECKPOINT_INTERVAL`] on the writer too. Before
    /// the writer's (which holds up every change while it copies and syncs), rounds of a reader's
    /// copy and the file's sync ([`sync_database_file`]) each take what was committed during the
    /// round before, until one finds no more than [`CHECKPOINT_ROUND_FRAMES_LAST`] frames (or after
    /// [`CHECKPOINT_ROUNDS_MAX`]): the writer then copies and syncs only what came during that last,
    /// short round. With no round the writer held up every change 19–30 ms at a steady 2 000
    /// cancellations/s; with one sync before it, 6–19 ms on a slow disk; with two rounds, 3–8 ms — but
    /// 8–53 ms (median 18.5) at full load, where a round copying 100 ms of commits and syncing them
    /// took 30–60 ms; with these rounds, 4–12 ms (median 6; BENCHMARKS.md, fifteenth session). Until
    /// the store closes.
    async fn checkpoint(
        read: sqlx::Pool<Db>,
        write: sqlx::Pool<Db>,
        writer_wanted: batch::ConnectionWanted,
        database_path: std::path::PathBuf,
        database_file: DatabaseFile,
    ) {
        checkpoint_until_closed(&read, &write, &writer_wanted, &database_path, &database_file).await;
        // The file's descriptor is closed only once every connection is.
        write.close().await;
        read.close().await;
        drop(database_file);
    }

    async fn checkpoint_until_closed(
        read: &sqlx::Pool<Db>,
        write: &sqlx::Pool<Db>,
        writer_wanted: &batch::ConnectionWanted,
        database_path: &std::path::Path,
        database_file: &DatabaseFile,
    ) {
        let mut ticks = tokio::time::interval(CHECKPOINT_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_by_writer = std::time::Instant::now();
        let mut frames_before = None;
        loop {
            ticks.tick().await;
            let Checkpointed::Log(frames) = passive_checkpoint(read, "reader").await else {
                return;
            };
            database_file.start_writeback().await;
            // Only while the log moves: an idle server's log is left for the kernel to let go of.
            if let Some(frames) = frames.filter(|frames| Some(*frames) != frames_before) {
                warm_wal(database_path, frames).await;
            }
            frames_before = frames;
            if last_by_writer.elapsed() >= WRITER_CHECKPOINT_INTERVAL {
                last_by_writer = std::time::Instant::now();
                database_file.sync().await;
                let mut copied_before = frames;
                for round in 1..=CHECKPOINT_ROUNDS_MAX {
                    let Checkpointed::Log(copied) = passive_checkpoint(read, "reader").await else {
                        return;
                    };
                    database_file.sync().await;
                    // Fewer frames than before: the log started again meanwhile (it was all copied
                    // when a write began), and what it holds now is all new.
                    let found = match (copied, copied_before) {
                        (Some(copied), Some(before)) if copied >= before => copied - before,
                        (Some(copied), _) => copied,
                        (None, _) => 0,
                    };
                    tracing::debug!(round, found, "checkpoint round before the writer's");
                    copied_before = copied;
                    if found <= CHECKPOINT_ROUND_FRAMES_LAST {
                        break;
                    }
                }
                // The group writer lets its connection go after its group rather than at the end
                // of its hold (`WRITER_HOLD_MAX`), while the rounds' last frames are still few.
                let raised = writer_wanted.raise();
                let checkpointed = passive_checkpoint(write, "writer").await;
                drop(raised);
                if let Checkpointed::Closed = checkpointed {
                    return;
                }
            }
        }
    }

    /// The database file, opened once for as long as the store's connections are open, for the
    /// checkpoint's writeback and sync beside the writer. Never opened and closed again meanwhile: on
    /// Linux (POSIX record locks) closing any descriptor of a file drops every lock the process holds
    /// on it, SQLite's too. Opened and closed every 100 ms until the twenty-second session, it dropped
    /// the shared lock SQLite keeps on the file, and another program's SQLite — the `sqlite3` shell
    /// reading the database — found no other user when it closed, copied the WAL into the file and
    /// deleted it under the running writer: the next changes failed (the WAL syncer found no file) and
    /// what was committed after it would have been lost at a restart. A database without a file (in
    /// memory) has none.
    struct DatabaseFile(Option<std::sync::Arc<std::fs::File>>);

    impl DatabaseFile {
        fn open(path: &std::path::Path) -> DatabaseFile {
            DatabaseFile(std::fs::File::open(path).ok().map(std::sync::Arc::new))
        }

        /// Flushes the pages the readers' checkpoints copied into the database file to disk, beside
        /// the writer. SQLite syncs the file after a checkpoint that copied every frame (only then
        /// may the WAL start again); under steady writes the readers' checkpoints rarely copy every
        /// frame, so the writer's did, and held up every change while up to
        /// [`WRITER_CHECKPOINT_INTERVAL`] of copied pages reached the disk (8–16 ms in a steady run).
        /// Synced here first, the writer's checkpoint has only its own few pages left to sync (2–5
        /// ms). This only ever makes the file more durable.
        async fn sync(&self) {
            let Some(file) = self.0.clone() else {
                return;
            };
            let started = std::time::Instant::now();
            match tokio::task::spawn_blocking(move || file.sync_data()).await {
                Ok(Ok(())) => tracing::debug!(took_us = started.elapsed().as_micros(), "database file synced"),
                Ok(Err(error)) => tracing::debug!(error = %error, "the database file was not synced beside the writer"),
                Err(error) => tracing::warn!(error = %error, "the database file's sync did not finish"),
            }
        }

        /// Starts writing the pages a reader's checkpoint copied into the database file out to disk,
        /// without waiting for them (Linux `sync_file_range(SYNC_FILE_RANGE_WRITE)`; it promises
        /// nothing about durability, which the sync before the writer's checkpoint still gives). Left
        /// to pile up for [`WRITER_CHECKPOINT_INTERVAL`], they reached the disk all at once in that
        /// sync, and the commits beside it waited 5–7 ms for their own fsync (steady 2 000/s: p99
        /// 14.6–27.7 ms against 11.1–14.4 ms with this, six pairs).
        async fn start_writeback(&self) {
            let Some(file) = self.0.clone() else {
                return;
            };
            let _ = tokio::task::spawn_blocking(move || {
                #[cfg(target_os = "linux")]
                {
                    use std::os::fd::AsRawFd;
                    // SAFETY: the descriptor stays open while `file` is held.
                    unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
                }
                #[cfg(not(target_os = "linux"))]
                drop(file);
            })
            .await;
        }
    }

    /// How much of the write-ahead log ahead of its writer [`warm_wal`] asks back into memory: more
    /// than the writer writes between two of the readers' checkpoints at full load (about 100 MB/s).
    const WAL_WARM_BYTES: i64 = 16 << 20;

    /// Asks the kernel to read back, without waiting, whatever part of the write-ahead log the writer
    /// is about to write over and the page cache let go of: where the log goes on (after its `frames`)
    /// and where it starts again. A frame (24 bytes and a page) never covers whole blocks of the file,
    /// and writing part of a block that is not in memory reads it first — in the middle of a commit,
    /// with every change of the group writer waiting. A kernel that reclaims idle pages on its own
    /// (this machine's does, DAMON) had let go of the part of the log a quiet hour never reached, and
    /// the first busy minute's commits read it back a block at a time (BENCHMARKS.md, twelfth
    /// session). Linux only; elsewhere, and for a log that is not there, nothing is done.
    async fn warm_wal(database_file: &std::path::Path, frames: i64) {
        let wal = wal_file(database_file);
        let _ = tokio::task::spawn_blocking(move || {
            #[cfg(target_os = "linux")]
            if let Ok(file) = std::fs::File::open(&wal) {
                use std::os::fd::AsRawFd;
                use std::os::unix::fs::FileExt;
                // The page size is in the log's header (sqlite.org/fileformat2.html, "WAL File Format").
                let mut header = [0u8; 12];
                if file.read_exact_at(&mut header, 0).is_err() {
                    return;
                }
                let page_size = i64::from(u32::from_be_bytes([header[8], header[9], header[10], header[11]]));
                let end = WAL_HEADER_BYTES + frames * (page_size + WAL_FRAME_HEADER_BYTES);
                for start in [0, end] {
                    // SAFETY: the descriptor is open for the duration of the call.
                    unsafe { libc::posix_fadvise(file.as_raw_fd(), start, WAL_WARM_BYTES, libc::POSIX_FADV_WILLNEED) };
                }
            }
        })
        .await;
    }

    /// The sizes of the write-ahead log's header and of each frame's header.
    const WAL_HEADER_BYTES: i64 = 32;
    const WAL_FRAME_HEADER_BYTES: i64 = 24;

    /// What a checkpoint found.
    enum Checkpointed {
        /// The pool is closed: the store is closing.
        Closed,
        /// The write-ahead log's length in frames, when the checkpoint ran.
        Log(Option<i64>),
    }

    /// One `PASSIVE` checkpoint on a connection of `pool`, logged at debug level with the WAL's
    /// frames, those copied and how long it took.
    async fn passive_checkpoint(pool: &sqlx::Pool<Db>, by: &'static str) -> Checkpointed {
        if pool.is_closed() {
            return Checkpointed::Closed;
        }
        let asked = std::time::Instant::now();
        let mut connection = match pool.acquire().await {
            Ok(connection) => connection,
            Err(_) if pool.is_closed() => return Checkpointed::Closed,
            Err(error) => {
                tracing::warn!(error = %error, "WAL checkpoint failed");
                return Checkpointed::Log(None);
            }
        };
        let started = std::time::Instant::now();
        match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut *connection)
            .await
        {
            Ok(row) => {
                let frames: i64 = row.try_get(1).unwrap_or(-1);
                let copied: i64 = row.try_get(2).unwrap_or(-1);
                tracing::debug!(
                    by,
                    frames,
                    copied,
                    waited_us = started.duration_since(asked).as_micros(),
                    took_us = started.elapsed().as_micros(),
                    "checkpoint"
                );
                Checkpointed::Log((frames >= 0).then_some(frames))
            }
            Err(_) if pool.is_closed() => Checkpointed::Closed,
            Err(error) => {
                tracing::warn!(error = %error, "WAL checkpoint failed");
                Checkpointed::Log(None)
            }
        }
    }

    /// A stored response (B3) as SQLite keeps it: a blob whose first byte says how it is written
    /// (`STORED_*`), compressed with LZ4 against a dictionary of a cancelled order's answer. That
    /// answer is about 2.9 KB of JSON — past what a 2 KiB page holds, so each took an overflow page of
    /// its own; LZ4 alone made it 1.5 KB, one to a page; with the dictionary about 0.65 KB, three to a
    /// page (BENCHMARKS.md, thirty-third session). Compressed by the request's own task, off the
    /// group writer. Responses stored as text before still read.
    type StoredResponse = Vec<u8>;

    /// The rest of the blob is the response's UTF-8 as it is (one too long to compress whole).
    const STORED_PLAIN: u8 = 0;
    /// The rest is the response's length (4 bytes, little-endian) and its LZ4 block compressed with
    /// [`STORED_DICTIONARY_1`].
    const STORED_LZ4_DICTIONARY_1: u8 = 1;
    /// What the responses of [`STORED_LZ4_DICTIONARY_1`] were compressed against. Never changed:
    /// stored blobs need it byte for byte to read back — a better dictionary takes a new first byte
    /// (`tests/stored_responses.rs` holds a blob written with it).
    const STORED_DICTIONARY_1: &[u8] = include_bytes!("stored_response_dictionary.json");

    /// The longest response that is compressed, and the longest a compressed one may say it is: a
    /// bulk cancel of the most orders answers well under a megabyte.
    const STORED_RESPONSE_MAX: usize = 64 << 20;

    fn stored_response(body: &str) -> StoredResponse {
        let input = body.as_bytes();
        let plain = || [&[STORED_PLAIN], input].concat();
        if input.len() > STORED_RESPONSE_MAX {
            return plain();
        }
        let Ok(length) = u32::try_from(input.len()).map(u32::to_le_bytes) else {
            return plain();
        };
        let mut stored = vec![0; 5 + lz4_flex::block::get_maximum_output_size(input.len())];
        stored[0] = STORED_LZ4_DICTIONARY_1;
        stored[1..5].copy_from_slice(&length);
        match lz4_flex::block::compress_into_with_dict(input, &mut stored[5..], STORED_DICTIONARY_1) {
            Ok(written) => {
                stored.truncate(5 + written);
                stored
            }
            // Not for an output of the maximum size; kept whole all the same.
            Err(_) => plain(),
        }
    }

    /// A stored response as [`stored_response`] wrote it, or as text (before it compressed).
    fn response_from_store(stored: rusqlite::types::ValueRef<'_>) -> Result<Option<String>> {
        use rusqlite::types::ValueRef;
        let text = match stored {
            ValueRef::Null => return Ok(None),
            ValueRef::Text(text) => text.to_vec(),
            ValueRef::Blob([STORED_PLAIN, plain @ ..]) => plain.to_vec(),
            ValueRef::Blob([STORED_LZ4_DICTIONARY_1, compressed @ ..]) => {
                let (length, compressed) =
                    lz4_flex::block::uncompressed_size(compressed).context("a stored response is cut short")?;
                anyhow::ensure!(
                    length <= STORED_RESPONSE_MAX,
                    "a stored response says it is {length} bytes long"
                );
                let mut text = vec![0; length];
                let written = lz4_flex::block::decompress_into_with_dict(compressed, &mut text, STORED_DICTIONARY_1)
                    .context("a stored response does not decompress")?;
                anyhow::ensure!(written == length, "a stored response is {written} bytes, not {length}");
                text
            }
            ValueRef::Blob(blob) => anyhow::bail!("a stored response of an unknown kind ({:?})", blob.first()),
            ValueRef::Integer(_) | ValueRef::Real(_) => anyhow::bail!("a stored response is a number"),
        };
        Ok(Some(String::from_utf8(text).context("a stored response is not UTF-8")?))
    }

    #[cfg(test)]
    mod stored_response_tests {
        use super::{response_from_store, stored_response, STORED_LZ4_DICTIONARY_1, STORED_PLAIN};
        use rusqlite::types::ValueRef;

        #[test]
        fn a_response_is_stored_compressed_and_read_back_whole_and_a_plain_one_reads_too() {
            let answer = r#"{"id":"ord_1","status":"cancelled","note":"日本語 \"quoted\""}"#;
            let stored = stored_response(answer);
            assert_eq!(stored[0], STORED_LZ4_DICTIONARY_1);
            let read = response_from_store(ValueRef::Blob(&stored)).expect("it reads");
            assert_eq!(read.as_deref(), Some(answer));
            let plain = [&[STORED_PLAIN], answer.as_bytes()].concat();
            let read = response_from_store(ValueRef::Blob(&plain)).expect("it reads");
            assert_eq!(read.as_deref(), Some(answer));
            assert_eq!(response_from_store(ValueRef::Null).expect("it reads"), None);
            assert!(
                response_from_store(ValueRef::Blob(&[STORED_PLAIN, 0xFF])).is_err(),
                "not UTF-8"
            );
        }
    }

    include!("backend.rs");
    include!("outbox.rs");

    /// Writes changes' rows (with the leases workers keep through them, one entry per change, or
    /// none) on the writer connection's own SQLite handle, locked away from sqlx's
    /// worker thread for the duration: one prepared single-row statement per table, run once per row,
    /// and no hand-off between threads per statement or row. The statements are finalized before the
    /// handle goes back to sqlx.
    async fn save_changes(
        connection: &mut Connection,
        changes: &[OrderChange],
        leases: &[Option<crate::Lease>],
    ) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut handle = connection
            .lock_handle()
            .await
            .context("failed to lock the writer's handle")?;
        // SAFETY: the handle is open and, while `handle` lives, used by no other thread; the
        // rusqlite connection does not own it (it never closes it) and is dropped before `handle`.
        let db = unsafe { rusqlite::Connection::from_handle(handle.as_raw_handle().as_ptr()) }?;
        let written = crate::rows::run_now(write_leased_changes(
            &mut Handle(&db),
            changes,
            leases,
            &GroupStock::default(),
        ));
        drop(db);
        written
    }

    /// What `batch::run_group` decides and writes a group through (not used on SQLite, whose group
    /// writer runs on the writer's own handle).
    fn group_sink(connection: &mut Connection, _spare_change_ids: Vec<i64>) -> Statements<'_> {
        Statements(connection)
    }

    /// See `load_orders_numbering_changes` (PostgreSQL's group writer only).
    fn spare_change_ids(_row: &DbRow) -> Result<Vec<i64>> {
        Ok(Vec::new())
    }

    /// See `stock_read` (PostgreSQL's group writer only).
    fn texts_column(_row: &DbRow, name: &str) -> Result<Vec<String>> {
        anyhow::bail!("SQLite has no arrays: no column {name} of them")
    }

    /// `ids` as `Listed::Array` asks: SQLite has no arrays, so an `IN` list.
    fn push_ids(query: &mut QueryBuilder<'_, Db>, ids: &[String]) {
        query.push(" IN (");
        push_in_list(query, ids.iter().cloned());
        query.push(")");
    }

    /// Writes a group's changes after its decisions.
    async fn save_into(
        sink: &mut Statements<'_>,
        changes: &[OrderChange],
        leases: &[Option<crate::Lease>],
        stock: &GroupStock,
    ) -> Result<()> {
        write_leased_changes(sink, changes, leases, stock).await
    }

    /// How long the group writer keeps the writer connection while changes keep coming, at most,
    /// before it queues for it again. What else wants the connection does not wait for that: the
    /// writes beside the group writer (`Backend::write_connection`, `Backend::begin_write`: settings,
    /// tokens, webhooks, the workers' leases, the outbox's deliveries) and the writer's checkpoint
    /// raise [`batch::ConnectionWanted`] and have it after the group being written. Taking the
    /// connection for every group cost 0.6–2 ms each: the pool's hand-over, a blocking thread and
    /// the handle's lock, and the writer's task waiting for a free runtime thread after each; taken
    /// again every 20 ms (until the twenty-fourth session), about 3 % of a full-load run went to it
    /// (BENCHMARKS.md).
    const WRITER_HOLD_MAX: std::time::Duration = std::time::Duration::from_millis(100);
    /// How long the group writer, finding no change waiting after a group, waits for the next one
    /// before it lets the writer connection go. Taking it again cost 0.1–1.4 ms each time (the
    /// pool's hand-back on a runtime task, then sqlx's worker thread for the handle) and came about
    /// every 7 ms at full load, where the queue empties for a moment after most groups; at a steady
    /// 2 000 cancellations/s it came after nearly every group (BENCHMARKS.md, twenty-second session).
    const WRITER_IDLE_WAIT: std::time::Duration = std::time::Duration::from_millis(2);

    /// The group writer, on a thread of its own (never holding up the HTTP workers, never waiting
    /// for one): takes the writer connection's own SQLite handle and runs group after group on it
    /// while they keep coming (up to [`WRITER_HOLD_MAX`]; a change that comes within
    /// [`WRITER_IDLE_WAIT`] of the group before counts) — each group's loads, decisions, writes
    /// and commit with no hand-off between threads per statement or row — keeping its prepared
    /// statements between groups; until the store closes.
    fn run_writer(pool: sqlx::Pool<Db>, mut groups: batch::Groups) {
        let runtime = tokio::runtime::Handle::current();
        let wal = wal_file(pool.connect_options().get_filename());
        let spawned = std::thread::Builder::new()
            .name("rescind-writer".into())
            .spawn(move || {
                // The pool connection goes back to the pool on a task of the runtime.
                let _runtime = runtime.enter();
                let syncer = match crate::syncer::Syncer::start("rescind-wal-sync", move || sync_wal(&wal)) {
                    Ok(syncer) => syncer,
                    Err(error) => {
                        tracing::error!(error = %error, "the WAL syncer's thread did not start; changes will fail");
                        return groups.stopped();
                    }
                };
                let mut kept: Option<KeptHandle> = None;
                while let Some(group) = groups.next_blocking() {
                    let work = work_with(group, &mut groups);
                    if !is_idle(&work) {
                        kept = hold_and_run(&runtime, &pool, &mut groups, work, kept.take(), &syncer);
                    }
                }
                // The statements are finalized, and every written group synced and answered, before
                // a closing caller (then closing the pool) hears.
                drop(kept);
                syncer.stop();
                groups.stopped();
            });
        if let Err(error) = spawned {
            tracing::error!(error = %error, "the group writer's thread did not start; changes will fail");
        }
    }

    /// Takes the writer connection's handle and runs `group`, then the groups that came meanwhile or
    /// within [`WRITER_IDLE_WAIT`] after (up to [`WRITER_HOLD_MAX`]); answers the prepared statements
    /// to keep.
    fn hold_and_run(
        runtime: &tokio::runtime::Handle,
        pool: &sqlx::Pool<Db>,
        groups: &mut batch::Groups,
        work: Work,
        previous: Option<KeptHandle>,
        syncer: &crate::syncer::Syncer,
    ) -> Option<KeptHandle> {
        let asked = std::time::Instant::now();
        let mut connection = match runtime.block_on(pool.acquire()) {
            Ok(connection) => connection,
            Err(error) => {
                fail_work(work, &format!("failed to start a change: {error}"));
                return previous;
            }
        };
        let mut handle = match runtime.block_on(connection.lock_handle()) {
            Ok(handle) => handle,
            Err(error) => {
                fail_work(work, &format!("failed to lock the writer's handle: {error}"));
                return previous;
            }
        };
        let raw = handle.as_raw_handle();
        let mut db = match previous {
            Some(previous) if previous.raw == raw => previous,
            other => {
                if let Some(stale) = other {
                    // Another connection than the one its statements belong to: leak them rather
                    // than finalize them on a handle that may be gone (the pool never replaces
                    // the writer connection, so this is not expected).
                    tracing::error!("the SQLite writer connection changed under the group writer");
                    std::mem::forget(stale);
                }
                // SAFETY: the handle is open and, while `handle` lives, used by no other thread.
                // The rusqlite connection never closes it; its statements are finalized when it is
                // dropped, which happens before the connection can close (`run_writer`).
                match unsafe { rusqlite::Connection::from_handle(raw.as_ptr()) } {
                    Ok(db) => {
                        db.set_prepared_statement_cache_capacity(GROUP_STATEMENTS_MAX);
                        KeptHandle {
                            raw,
                            db,
                            setups: batch::Setups::default(),
                        }
                    }
                    Err(error) => {
                        fail_work(work, &format!("failed to use the writer's handle: {error}"));
                        return None;
                    }
                }
            }
        };
        let held = std::time::Instant::now();
        tracing::debug!(
            took_us = held.duration_since(asked).as_micros(),
            "writer connection taken"
        );
        // The groups' commits leave their fsync to the syncer, which answers them once it is done
        // (`syncer::Syncer`); every other write on this connection commits with its own.
        if let Err(error) = db.db.execute_batch("PRAGMA synchronous = NORMAL") {
            fail_work(work, &format!("failed to start a change: {error}"));
            return Some(db);
        }
        let mut work = work;
        loop {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                group_on_handle(&db.db, &mut db.setups, work, syncer, runtime)
            }));
            if ran.is_err() {
                // A decision or an import's build panicked: its group's callers hear that the
                // change failed, and the connection goes back to the pool with no transaction open.
                tracing::error!("a decision panicked; its group was rolled back");
                if !db.db.is_autocommit() {
                    let _ = db.db.execute_batch("ROLLBACK");
                }
            }
            if held.elapsed() >= WRITER_HOLD_MAX || groups.connection_wanted() {
                break;
            }
            let group = groups.waiting_within(runtime, WRITER_IDLE_WAIT);
            work = work_with(group, groups);
            if is_idle(&work) {
                break;
            }
        }
        if let Err(error) = db.db.execute_batch("PRAGMA synchronous = FULL") {
            // Not expected (the pragma takes no lock). The connection would commit without its
            // fsync: it is closed rather than handed back, and the pool opens a new one.
            tracing::error!(error = %error, "the writer connection could not sync its commits again; closing it");
            drop(handle);
            drop(db);
            connection.close_on_drop();
            return None;
        }
        drop(handle);
        Some(db)
    }

    /// What the group writer writes in one transaction: changes, imports and idempotency keys'
    /// operations (those two first).
    type Work = (Vec<batch::Job>, Vec<batch::ImportJob>, Vec<batch::KeyJob>);

    /// The work that came with `group`.
    fn work_with(group: Vec<batch::Job>, groups: &mut batch::Groups) -> Work {
        (group, groups.take_imports(), groups.take_keys())
    }

    fn is_idle((group, imports, keys): &Work) -> bool {
        group.is_empty() && imports.is_empty() && keys.is_empty()
    }

    /// Tells every caller of `work` that it failed with `error`.
    fn fail_work((group, imports, keys): Work, error: &str) {
        batch::fail_all(group, error);
        batch::fail_imports(imports, error);
        batch::fail_keys(keys, error);
    }

    /// The statements of a key's operations (B3) on the group writer's handle.
    const DROP_STALE_KEY: &str = "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND (created_at < $3 \
         OR (status_code IS NULL AND created_at < $4))";
    const INSERT_KEY: &str =
        "INSERT INTO idempotency_keys (scope, key, fingerprint, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (scope, key) DO NOTHING";
    const SELECT_KEY: &str =
        "SELECT fingerprint, status_code, response_body FROM idempotency_keys WHERE scope = $1 AND key = $2";
    const COMPLETE_KEY: &str =
        "UPDATE idempotency_keys SET status_code = $1, response_body = $2 WHERE scope = $3 AND key = $4";
    const RELEASE_KEY: &str = "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status_code IS NULL";

    /// Runs the keys' operations (B3) on the writer's handle, in the group's transaction; each
    /// failure is its own operation's answer (a statement that fails takes back only its own writes).
    fn keys_on_handle(db: &rusqlite::Connection, keys: Vec<batch::KeyJob>) -> Vec<batch::KeyDone> {
        batch::run_keys(keys, |job| -> Result<Option<crate::IdempotencyClaim>> {
            let (scope, key) = (job.scope.as_str(), job.key.as_str());
            match &job.op {
                batch::KeyOp::Claim { fingerprint, now } => {
                    // Inserted first: nearly every key is new. Only a key found there has its claim
                    // dropped when stale (expired, or abandoned without a response) and tried again.
                    let insert = || {
                        db.prepare_cached(INSERT_KEY)?.execute(rusqlite::params![
                            scope,
                            key,
                            fingerprint,
                            now.unix_micros()
                        ])
                    };
                    if insert()? == 1 {
                        return Ok(Some(crate::IdempotencyClaim::New));
                    }
                    let (expired, abandoned) = stale_keys_before(*now);
                    let dropped = db
                        .prepare_cached(DROP_STALE_KEY)?
                        .execute(rusqlite::params![scope, key, expired, abandoned])?;
                    if dropped == 1 && insert()? == 1 {
                        return Ok(Some(crate::IdempotencyClaim::New));
                    }
                    let mut select = db.prepare_cached(SELECT_KEY)?;
                    let mut rows = select.query(rusqlite::params![scope, key])?;
                    let row = rows.next()?.context("a claimed key is gone")?;
                    let (stored, status_code) = (row.get::<_, String>(0)?, row.get::<_, Option<i64>>(1)?);
                    let body = response_from_store(row.get_ref(2)?)?;
                    Ok(Some(claim_found(&stored, status_code, body, fingerprint)?))
                }
                batch::KeyOp::Complete { status_code, body } => {
                    db.prepare_cached(COMPLETE_KEY)?.execute(rusqlite::params![
                        i64::from(*status_code),
                        body,
                        scope,
                        key
                    ])?;
                    Ok(None)
                }
                batch::KeyOp::Release => {
                    db.prepare_cached(RELEASE_KEY)?.execute(rusqlite::params![scope, key])?;
                    Ok(None)
                }
            }
        })
    }

    /// Imports the group's orders ([`import_all`]) under a savepoint, so that a batch that fails
    /// leaves the group's changes; answers what each came to (every import the batch's error when it
    /// failed), or an error when the transaction can no longer be trusted (a savepoint that did not
    /// end) — the imports then answered.
    fn import_on_handle(db: &rusqlite::Connection, imports: Vec<batch::ImportJob>) -> Result<Vec<batch::Imported>> {
        if imports.is_empty() {
            return Ok(Vec::new());
        }
        if let Err(error) = db.execute_batch("SAVEPOINT imports") {
            batch::fail_imports(imports, &format!("failed to start the imports: {error}"));
            return Err(error.into());
        }
        let (replies, owned, builds) = batch::split_imports(imports);
        let imports = owned.iter().map(batch::OwnedImport::as_new).zip(builds).collect();
        let ran = crate::rows::run_now(import_all(&mut Handle(db), imports));
        let (imported, failure) = batch::answer_batch(replies, ran);
        let end = match failure {
            None => "RELEASE imports",
            Some(_) => "ROLLBACK TO imports; RELEASE imports",
        };
        if let Err(error) = db.execute_batch(end) {
            let error = anyhow::Error::from(error).context("failed to end the imports");
            batch::answer_imports(imported, Some(&error));
            return Err(error);
        }
        Ok(imported)
    }

    /// The group writer's statements kept prepared: its loads and the writes of every table a change
    /// touches (about twenty), with room to spare.
    const GROUP_STATEMENTS_MAX: usize = 64;

    /// What the group writer keeps between groups: its prepared statements, on the writer
    /// connection's handle. They are used only while that handle is locked, and finalized when this is
    /// dropped — when the writer stops, before the pool closes the connection (`Backend::close`); the
    /// pool never closes the writer connection otherwise (no idle timeout, no maximum lifetime).
    struct KeptHandle {
        raw: std::ptr::NonNull<rusqlite::ffi::sqlite3>,
        db: rusqlite::Connection,
        /// The shops' setups as the writer last read them.
        setups: batch::Setups,
    }

    // SAFETY: the rusqlite connection is Send; the raw pointer is only compared, never dereferenced.
    unsafe impl Send for KeptHandle {}

    /// Runs one group in one transaction. Each group is logged at debug level (`rescind_store=debug`)
    /// with its size and the microseconds since it began at the end of each phase: where the one
    /// writer's time goes.
    fn group_on_handle(
        db: &rusqlite::Connection,
        setups: &mut batch::Setups,
        (group, imports, keys): Work,
        syncer: &crate::syncer::Syncer,
        callers: &tokio::runtime::Handle,
    ) {
        let started = std::time::Instant::now();
        let size = group.len();
        let import_count = imports.len();
        let key_count = keys.len();
        let queued_us = batch::queued_us(&group, &imports, started);
        if let Err(error) = db.execute_batch("BEGIN IMMEDIATE") {
            return fail_work((group, imports, keys), &format!("failed to start a change: {error}"));
        }
        let keyed = keys_on_handle(db, keys);
        if db.is_autocommit() {
            // An error that takes the whole transaction back (the disk full, an I/O error) ended it
            // under a key's operation: the rest must not run outside it, one statement at a time.
            let error = anyhow::anyhow!("the group's transaction ended under an idempotency key's operation");
            batch::answer_keys(keyed, Some(&error));
            batch::fail_imports(imports, &format!("{error:#}"));
            return batch::fail_all(group, &format!("{error:#}"));
        }
        let imported = match import_on_handle(db, imports) {
            Ok(imported) => imported,
            Err(error) => {
                // The imports are answered.
                let _ = db.execute_batch("ROLLBACK");
                batch::answer_keys(keyed, Some(&error));
                return batch::fail_all(group, &format!("{error:#}"));
            }
        };
        let imported_us = started.elapsed().as_micros();
        let loaded = load_group_on_handle(db, batch::ids_by_shop(&group), setups);
        let loaded_us = started.elapsed().as_micros();
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                let _ = db.execute_batch("ROLLBACK");
                batch::answer_keys(keyed, Some(&error));
                batch::answer_imports(imported, Some(&error));
                return batch::fail_all(group, &format!("{error:#}"));
            }
        };
        let ((replies, changes, leases, stock), failed) = match crate::rows::run_now(async {
            Ok::<_, anyhow::Error>(batch::decide_all(&mut Handle(db), group, loaded).await)
        }) {
            Ok(decided) => decided,
            Err(error) => {
                // Not reached: the handle's writes never wait. The jobs' answers are gone with it.
                let _ = db.execute_batch("ROLLBACK");
                tracing::error!(error = %error, "a group's decisions waited");
                batch::answer_keys(keyed, Some(&error));
                return batch::answer_imports(imported, Some(&error));
            }
        };
        let decided_us = started.elapsed().as_micros();
        let mut written_us = 0;
        let written = match failed {
            Some(error) => Err(error),
            None => {
                crate::rows::run_now(write_leased_changes(&mut Handle(db), &changes, &leases, &stock)).and_then(|()| {
                    written_us = started.elapsed().as_micros();
                    db.execute_batch("COMMIT").context("failed to commit a change")
                })
            }
        };
        tracing::debug!(
            size,
            imports = import_count,
            keys = key_count,
            queued_us,
            imported_us,
            loaded_us,
            decided_us,
            written_us,
            committed_us = started.elapsed().as_micros(),
            "group written"
        );
        match written {
            // Answered from one task on the callers' runtime, not from the syncer's thread: one wake-up
            // of that runtime per group instead of one per caller (throughput within the noise;
            // BENCHMARKS.md, twenty-first session).
            Ok(()) => {
                // The keys' operations are answered once committed, before the sync (why that is
                // safe: `batch::KeyJob`); the changes and imports only once synced.
                batch::answer_keys(keyed, None);
                let callers = callers.clone();
                syncer.answer_once_synced(Box::new(move |failure| {
                    callers.spawn(async move {
                        batch::answer_imports(imported, failure.as_ref());
                        batch::answer(replies, changes, leases, failure)
                    });
                }))
            }
            Err(error) => {
                if !db.is_autocommit() {
                    let _ = db.execute_batch("ROLLBACK");
                }
                batch::answer_keys(keyed, Some(&error));
                batch::answer_imports(imported, Some(&error));
                batch::answer(replies, changes, leases, Some(error));
            }
        }
    }

    impl Backend {
        /// See [`crate::Store::sqlite_writer_synchronous`].
        pub(crate) async fn writer_synchronous(&self) -> Result<i64> {
            Ok(sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut *self.write_connection().await?)
                .await?)
        }

        /// See [`crate::Store::sqlite_writer_lookaside_full`].
        pub(crate) async fn writer_lookaside_full(&self) -> Result<i64> {
            let mut connection = self.write_connection().await?;
            let mut handle = connection.lock_handle().await?;
            let (mut current, mut highest) = (0, 0);
            // SAFETY: the handle is open and locked for this thread.
            let code = unsafe {
                rusqlite::ffi::sqlite3_db_status(
                    handle.as_raw_handle().as_ptr(),
                    rusqlite::ffi::SQLITE_DBSTATUS_LOOKASIDE_MISS_FULL,
                    &mut current,
                    &mut highest,
                    0,
                )
            };
            anyhow::ensure!(code == rusqlite::ffi::SQLITE_OK, "sqlite3_db_status failed: {code}");
            Ok(i64::from(highest))
        }

        /// Syncs the write-ahead log: whatever a read just saw — perhaps a group the WAL syncer has
        /// not synced yet (`syncer::Syncer`) — is on disk once this returns.
        async fn make_seen_durable(&self) -> Result<()> {
            let wal = wal_file(self.write.connect_options().get_filename());
            tokio::task::spawn_blocking(move || sync_wal(&wal))
                .await
                .context("the WAL's sync did not finish")?
                .context("failed to sync the WAL")
        }
    }

    /// The write-ahead log beside an SQLite database file.
    fn wal_file(database_file: &std::path::Path) -> std::path::PathBuf {
        let mut wal = database_file.as_os_str().to_owned();
        wal.push("-wal");
        wal.into()
    }

    /// Writes every frame of the write-ahead log `wal` that the kernel still holds to disk.
    fn sync_wal(wal: &std::path::Path) -> std::io::Result<()> {
        std::fs::File::open(wal)?.sync_data()
    }

    /// The group's orders with their cancellations, refunds and requests, and each shop's setup, read
    /// on the handle.
    fn load_group_on_handle(
        db: &rusqlite::Connection,
        ids_by_shop: HashMap<String, Vec<String>>,
        kept: &mut batch::Setups,
    ) -> Result<batch::Loaded> {
        static SELECT_ORDER: Load =
            Load::new(|| format!("SELECT {ORDER_COLUMNS} FROM orders WHERE shop_id = $1 AND id = $2"));
        static SELECT_CANCELLATION: Load =
            Load::new(|| format!("SELECT {CANCELLATION_COLUMNS} FROM cancellations WHERE id = $1"));
        static SELECT_REFUND: Load = Load::new(|| format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE id = $1"));
        static SELECT_REQUEST: Load =
            Load::new(|| format!("SELECT {REQUEST_COLUMNS} FROM cancellation_requests WHERE id = $1"));
        let (mut select_order, order_columns) = SELECT_ORDER.prepare(db)?;
        let (mut select_cancellation, cancellation_columns) = SELECT_CANCELLATION.prepare(db)?;
        let (mut select_refund, refund_columns) = SELECT_REFUND.prepare(db)?;
        let (mut select_request, request_columns) = SELECT_REQUEST.prepare(db)?;
        let mut orders = HashMap::new();
        let mut setups = HashMap::new();
        for (shop_id, ids) in ids_by_shop {
            let mut loaded = Vec::with_capacity(ids.len());
            for id in ids {
                let mut found = select_order.query([&shop_id, &id])?;
                let Some(row) = found.next()? else { continue };
                let stored = order_from_row(&order_columns.of_row(row))?;
                drop(found);
                let mut order = stored.order;
                if let Some(cancellation_id) = stored.cancellation_id {
                    let mut found = select_cancellation.query([&cancellation_id])?;
                    if let Some(row) = found.next()? {
                        order.cancellation = Some(cancellation_from_row(&cancellation_columns.of_row(row))?.1);
                    }
                }
                for refund_id in refund_ids_from_text(stored.refund_ids.as_deref()) {
                    let mut found = select_refund.query([refund_id])?;
                    if let Some(row) = found.next()? {
                        order.refunds.push(refund_from_row(&refund_columns.of_row(row))?.1);
                    }
                }
                order.refunds = oldest_first(std::mem::take(&mut order.refunds));
                if let Some(request_id) = stored.request_id {
                    let mut found = select_request.query([&request_id])?;
                    if let Some(row) = found.next()? {
                        order.cancellation_request = Some(request_from_row(&request_columns.of_row(row))?.1);
                    }
                }
                loaded.push(order);
            }
            if let Some(setup) = kept.covering(&shop_id, loaded.iter()) {
                setups.insert(shop_id.clone(), setup.clone());
            } else {
                let setup = ShopSetup {
                    channels: db
                        .prepare_cached(SHOP_CHANNELS_SQL)?
                        .query_and_then([&shop_id], |row| channel_from_row(row))?
                        .collect::<Result<_>>()?,
                    warehouses: db
                        .prepare_cached(&format!(
                            "SELECT {WAREHOUSE_COLUMNS} FROM warehouses WHERE shop_id = $1 ORDER BY id"
                        ))?
                        .query_and_then([&shop_id], |row| warehouse_from_row(row))?
                        .collect::<Result<_>>()?,
                };
                kept.keep(&shop_id, &setup);
                setups.insert(shop_id.clone(), setup);
            }
            for order in loaded {
                orders.insert((shop_id.clone(), order.id.clone()), order);
            }
        }
        Ok((orders, setups, GroupStock::default()))
    }

    /// The statements that write `rows` through sqlx (the writes outside the group writer): multi-row
    /// `VALUES` in as few statements as the parameter limit allows, in power-of-two row counts so that
    /// a few shapes stay prepared.
    fn row_statements<'a>(rows: &'a Rows<'a>, returning: &'static str) -> Result<Vec<QueryBuilder<'a, Db>>> {
        let all: Vec<&[Value<'_>]> = rows.rows().collect();
        let mut statements = Vec::new();
        for chunk in statement_chunks(&all, rows.width()) {
            let mut query = QueryBuilder::<Db>::new(rows.head);
            query.push_values(chunk, |mut row, values| {
                for value in *values {
                    match value {
                        Value::Text(text) => row.push_bind(text.as_deref()),
                        Value::Int(number) => row.push_bind(*number),
                        Value::Bool(flag) => row.push_bind(*flag),
                    };
                }
            });
            query.push(rows.tail);
            query.push(returning);
            statements.push(query);
        }
        Ok(statements)
    }

    impl Read for sqlx::sqlite::SqliteRow {
        fn column<T: Readable>(&self, name: &str) -> Result<T> {
            Ok(self.try_get(name)?)
        }

        fn text<T>(&self, name: &str, read: impl FnOnce(Option<&str>) -> Result<T>) -> Result<T> {
            read(self.try_get(name)?)
        }
    }

    /// A rusqlite value as text in place (NULL as `None`).
    fn text_of(value: rusqlite::types::ValueRef<'_>) -> Result<Option<&str>> {
        match value {
            rusqlite::types::ValueRef::Null => Ok(None),
            other => Ok(Some(other.as_str()?)),
        }
    }

    impl Read for rusqlite::Row<'_> {
        fn column<T: Readable>(&self, name: &str) -> Result<T> {
            Ok(self.get(name)?)
        }

        fn text<T>(&self, name: &str, read: impl FnOnce(Option<&str>) -> Result<T>) -> Result<T> {
            read(text_of(self.get_ref(name)?)?)
        }
    }

    /// A statement's column positions by name, taken once per statement: rusqlite's own lookup by
    /// name asks SQLite for every column's name on each read (about 650 calls for an order row).
    struct Columns(HashMap<String, usize>);

    impl Columns {
        fn of(statement: &rusqlite::Statement<'_>) -> Columns {
            Columns(
                statement
                    .column_names()
                    .into_iter()
                    .enumerate()
                    .map(|(index, name)| (name.to_owned(), index))
                    .collect(),
            )
        }

        fn of_row<'r, 's>(&'r self, row: &'r rusqlite::Row<'s>) -> Named<'r, 's> {
            Named { row, columns: self }
        }
    }

    /// One of a group's load statements: its text, put together once, and its [`Columns`], taken from
    /// the first statement prepared (the text never changes, so neither do they). Taken anew, they
    /// had cost every group four maps of up to 40 names and four texts (BENCHMARKS.md, thirty-sixth
    /// session).
    struct Load {
        sql: std::sync::LazyLock<String>,
        columns: std::sync::OnceLock<Columns>,
    }

    impl Load {
        const fn new(sql: fn() -> String) -> Load {
            Load {
                sql: std::sync::LazyLock::new(sql),
                columns: std::sync::OnceLock::new(),
            }
        }

        /// The statement, prepared on `db` (or taken from its cache), and its columns.
        fn prepare<'c>(
            &'static self,
            db: &'c rusqlite::Connection,
        ) -> Result<(rusqlite::CachedStatement<'c>, &'static Columns)> {
            let statement = db.prepare_cached(&self.sql)?;
            let columns = self.columns.get_or_init(|| Columns::of(&statement));
            Ok((statement, columns))
        }
    }

    /// A row read through its statement's [`Columns`].
    struct Named<'r, 's> {
        row: &'r rusqlite::Row<'s>,
        columns: &'r Columns,
    }

    impl Named<'_, '_> {
        fn index(&self, name: &str) -> Result<usize> {
            self.columns
                .0
                .get(name)
                .copied()
                .ok_or_else(|| anyhow::anyhow!("the statement has no column {name}"))
        }
    }

    impl Read for Named<'_, '_> {
        fn column<T: Readable>(&self, name: &str) -> Result<T> {
            Ok(self.row.get(self.index(name)?)?)
        }

        fn text<T>(&self, name: &str, read: impl FnOnce(Option<&str>) -> Result<T>) -> Result<T> {
            read(text_of(self.row.get_ref(self.index(name)?)?)?)
        }
    }

    /// A [`Sink`] over the SQLite handle itself.
    struct Handle<'c>(&'c rusqlite::Connection);

    impl rusqlite::ToSql for Value<'_> {
        fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
            match self {
                Value::Text(Some(text)) => Ok(rusqlite::types::ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Text(
                    text.as_bytes(),
                ))),
                Value::Text(None) => Ok(rusqlite::types::ToSqlOutput::Owned(rusqlite::types::Value::Null)),
                Value::Int(number) => number.to_sql(),
                Value::Bool(flag) => flag.to_sql(),
            }
        }
    }

    impl Handle<'_> {
        /// Runs the rows' single-row statement once per row, then `after` with the row.
        fn each_row(&self, rows: &Rows<'_>, mut after: impl FnMut(&[Value<'_>])) -> Result<()> {
            if rows.is_empty() {
                return Ok(());
            }
            let mut statement = self.0.prepare_cached(&rows.single_row_sql())?;
            for row in rows.rows() {
                statement.execute(rusqlite::params_from_iter(row))?;
                after(row);
            }
            Ok(())
        }
    }

    impl Handle<'_> {
        /// The active webhooks of these shops, by id.
        fn active_webhooks(&self, shops: &[&str]) -> Result<Vec<ActiveWebhook>> {
            let mut statement = self
                .0
                .prepare_cached("SELECT id, shop_id, events FROM webhooks WHERE active AND shop_id = $1")?;
            let mut webhooks = Vec::new();
            for shop_id in shops {
                let rows = statement.query_map([shop_id], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
                for webhook in rows {
                    webhooks.push(webhook?);
                }
            }
            webhooks.sort();
            Ok(webhooks)
        }
    }

    impl ImportSink for Handle<'_> {
        async fn orders_of_channel_orders(
            &mut self,
            keys: &[(&str, &str)],
        ) -> Result<HashMap<(String, String), String>> {
            use rusqlite::OptionalExtension;
            let mut statement = self
                .0
                .prepare_cached("SELECT id FROM orders WHERE channel_id = $1 AND channel_order_id = $2")?;
            let mut found = HashMap::new();
            for (channel_id, channel_order_id) in keys {
                let id: Option<String> = statement
                    .query_row([channel_id, channel_order_id], |row| row.get(0))
                    .optional()?;
                if let Some(id) = id {
                    found.insert(((*channel_id).to_owned(), (*channel_order_id).to_owned()), id);
                }
            }
            Ok(found)
        }

        async fn lock_shops(&mut self, shop_ids: &[&str]) -> Result<HashMap<String, i64>> {
            use rusqlite::OptionalExtension;
            let mut statement = self
                .0
                .prepare_cached("SELECT next_order_number FROM shops WHERE id = $1")?;
            let mut numbers = HashMap::new();
            for shop_id in shop_ids {
                if let Some(next) = statement.query_row([shop_id], |row| row.get(0)).optional()? {
                    numbers.insert((*shop_id).to_owned(), next);
                }
            }
            Ok(numbers)
        }

        async fn set_next_order_numbers(&mut self, numbers: &[(&str, i64)]) -> Result<()> {
            let mut statement = self.0.prepare_cached(SET_NEXT_ORDER_NUMBER)?;
            for (shop_id, next) in numbers {
                statement.execute(rusqlite::params![next, shop_id])?;
            }
            Ok(())
        }

        async fn history_numbers(&mut self, count: usize) -> Result<Vec<i64>> {
            let mut statement = self.0.prepare_cached(DIALECT.history_numbers)?;
            let numbers = statement.query_map([i64::try_from(count)?], |row| row.get(0))?;
            Ok(numbers.collect::<rusqlite::Result<_>>()?)
        }
    }

    impl Sink for Handle<'_> {
        async fn insert(&mut self, rows: &Rows<'_>) -> Result<()> {
            self.each_row(rows, |_| {})
        }

        async fn insert_history_rows(&mut self, rows: &Rows<'_>) -> Result<Vec<(String, i64)>> {
            let mut numbered = Vec::with_capacity(rows.len());
            let db = self.0;
            self.each_row(rows, |row| {
                if let Some(Value::Text(Some(order_id))) = row.first() {
                    numbered.push((order_id.to_string(), db.last_insert_rowid()));
                }
            })?;
            Ok(numbered)
        }

        async fn insert_events(
            &mut self,
            rows: &Rows<'_>,
            shops: &[&str],
        ) -> Result<(HashMap<String, i64>, Vec<ActiveWebhook>)> {
            // The sequence numbers are only wanted for deliveries: none without an active webhook.
            let webhooks = self.active_webhooks(shops)?;
            let mut seqs = HashMap::new();
            let db = self.0;
            self.each_row(rows, |row| {
                if let (false, Some(Value::Text(Some(id)))) = (webhooks.is_empty(), row.first()) {
                    seqs.insert(id.to_string(), db.last_insert_rowid());
                }
            })?;
            Ok((seqs, webhooks))
        }

        async fn outbox_rows_from(&mut self) -> Result<Option<i64>> {
            use rusqlite::OptionalExtension;
            let sql = DIALECT
                .outbox_numbers_handed_out
                .context("SQLite's writer numbers the outbox")?;
            let handed_out: Option<i64> = self.0.prepare_cached(sql)?.query_row([], |row| row.get(0)).optional()?;
            Ok(Some(crate::rows::next_outbox_row(handed_out.unwrap_or(0))))
        }

        async fn add_stock(&mut self, shop_id: &str, deltas: &[(&str, i64)], at: i64) -> Result<Vec<String>> {
            let mut statement = self.0.prepare_cached(
                "UPDATE inventory SET available = available + $1, updated_at = $2 WHERE shop_id = $3 AND sku = $4",
            )?;
            let mut stocked = Vec::with_capacity(deltas.len());
            for (sku, delta) in deltas {
                if statement.execute(rusqlite::params![delta, at, shop_id, sku])? > 0 {
                    stocked.push((*sku).to_owned());
                }
            }
            Ok(stocked)
        }

        async fn queue_pushes(&mut self, shop_id: &str, skus: &[String], at: i64) -> Result<()> {
            let mut statement = self.0.prepare_cached(
                "INSERT INTO inventory_pushes (channel_id, sku, shop_id, due_at, version, attempts) \
                 SELECT l.channel_id, l.sku, l.shop_id, $1 + s.inventory_push_interval_s * 1000000, 1, 0 \
                 FROM inventory_listings l JOIN shops s ON s.id = l.shop_id WHERE l.shop_id = $2 AND l.sku = $3 \
                 ON CONFLICT (channel_id, sku) DO UPDATE SET version = inventory_pushes.version + 1",
            )?;
            for sku in skus {
                statement.execute(rusqlite::params![at, shop_id, sku])?;
            }
            Ok(())
        }

        async fn delete_jobs(&mut self, order_ids: &[&str]) -> Result<()> {
            let mut statement = self.0.prepare_cached("DELETE FROM workflow_jobs WHERE order_id = $1")?;
            for order_id in order_ids {
                statement.execute([order_id])?;
            }
            Ok(())
        }

        async fn stock_and_proofs(
            &mut self,
            shop_id: &str,
            skus: &[&str],
            orders: &[(&str, &str)],
        ) -> Result<crate::rows::StockAndProofs> {
            // In process, a statement per SKU and per order costs less than building one for them all.
            let mut stocked = self
                .0
                .prepare_cached("SELECT 1 FROM inventory WHERE shop_id = $1 AND sku = $2")?;
            let mut proofs = self
                .0
                .prepare_cached("SELECT sku FROM restocks WHERE order_id = $1 AND cancellation_id = $2")?;
            let mut known = crate::rows::StockAndProofs::default();
            for sku in skus {
                if stocked.exists([shop_id, sku])? {
                    known.stocked.push((*sku).to_owned());
                }
            }
            for (order_id, cancellation_id) in orders {
                let rows = proofs.query_map([order_id, cancellation_id], |row| {
                    Ok(((*order_id).to_owned(), (*cancellation_id).to_owned(), row.get(0)?))
                })?;
                for proof in rows {
                    known.proofs.push(proof?);
                }
            }
            Ok(known)
        }
    }
}

mod postgres {
    //! The PostgreSQL backend.
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
    use std::str::FromStr;
    pub(crate) type Db = sqlx::Postgres;
    const DIALECT: crate::Dialect = crate::Dialect {
        kind: crate::DatabaseKind::Postgres,
        lock_order: "FOR UPDATE",
        like: "ILIKE",
        identity_primary_key: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        append_only_primary_key: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        migration_lock: Some("SELECT pg_advisory_xact_lock(7220301)"),
        skip_locked: "FOR UPDATE SKIP LOCKED",
        read_snapshot: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        outbox_turn: " WHERE (SELECT pg_advisory_xact_lock(7220302)::text) IS NOT NULL",
        outbox_numbers_handed_out: None,
        history_numbers: "SELECT nextval('order_changes_id_seq') FROM (SELECT generate_series(1, $1::int8)) AS n",
        numbered_history_insert: "INSERT INTO order_changes (id, order_id, at, lines) OVERRIDING SYSTEM VALUE ",
    };
    /// Enough for the HTTP workers of one process; PostgreSQL's own default limit is 100.
    const CONNECTIONS_MAX: u32 = 16;

    pub(crate) async fn connect(url: &str) -> anyhow::Result<Backend> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(CONNECTIONS_MAX)
            // A ping before every use is a round trip per transaction and per read; a connection the
            // server dropped fails its statement instead, and the pool replaces it.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        Ok(Backend {
            known: std::sync::Arc::default(),
            batcher: batch::start(pool.clone()),
            write: pool.clone(),
            read: pool,
        })
    }

    /// A stored response (B3) as PostgreSQL keeps it: text, which the server compresses (LZ4 where
    /// it has it, migration 0021).
    type StoredResponse = String;

    fn stored_response(body: &str) -> StoredResponse {
        body.to_owned()
    }

    include!("backend.rs");
    include!("outbox.rs");

    /// Writes changes' rows, each table's in one statement, the plain inserts held back and sent
    /// together (`Batched`); with the leases workers keep through them (one entry per change, or none).
    async fn save_changes(
        connection: &mut Connection,
        changes: &[OrderChange],
        leases: &[Option<crate::Lease>],
    ) -> Result<()> {
        save_into(&mut Batched::new(connection), changes, leases, &GroupStock::default()).await
    }

    /// The most imports one PostgreSQL transaction takes.
    const IMPORTS_MAX: usize = 256;

    /// Waits for a job on `queue` and takes whatever else waits with it, up to `max` in all; `None`
    /// once every sender is gone and the queue is empty.
    async fn next_batch<T>(queue: &mut tokio::sync::mpsc::Receiver<T>, max: usize) -> Option<Vec<T>> {
        let mut jobs = vec![queue.recv().await?];
        while jobs.len() < max {
            match queue.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        Some(jobs)
    }

    /// The imports the writer hands on ([`run_writer`]), written a batch at a time on a task of their
    /// own — beside the change groups, on another connection — each batch in one transaction: the
    /// imports that waited while the one before was written share its statements and its commit.
    /// Each batch runs as a task of its own, so that a `build` that panics fails its batch only. The
    /// task ends once the sender is dropped and every batch sent is written.
    fn start_imports(
        pool: sqlx::Pool<Db>,
    ) -> (tokio::sync::mpsc::Sender<batch::ImportJob>, tokio::task::JoinHandle<()>) {
        let (imports, mut queue) = tokio::sync::mpsc::channel::<batch::ImportJob>(IMPORTS_MAX * 16);
        let importer = tokio::spawn(async move {
            while let Some(jobs) = next_batch(&mut queue, IMPORTS_MAX).await {
                let pool = pool.clone();
                let written = tokio::spawn(async move {
                    let (replies, owned, builds) = batch::split_imports(jobs);
                    let imports = owned.iter().map(batch::OwnedImport::as_new).zip(builds).collect();
                    let ran = import_batch(&pool, imports).await;
                    let (imported, _) = batch::answer_batch(replies, ran);
                    batch::answer_imports(imported, None);
                });
                if let Err(error) = written.await {
                    // Its callers hear that the writer stopped; the next batch goes on.
                    tracing::error!(error = %error, "a batch of imports panicked; it was rolled back");
                }
            }
        });
        (imports, importer)
    }

    /// Writes a batch of imports ([`import_all`]) in a transaction of its own; committed when any
    /// was stored.
    async fn import_batch(pool: &sqlx::Pool<Db>, imports: Vec<(NewImport<'_>, Build)>) -> Result<Vec<ImportOutcome>> {
        let mut tx = pool.begin().await.context("failed to start the imports")?;
        let outcomes = import_all(&mut Statements(&mut tx), imports).await?;
        if outcomes.iter().any(Result::is_ok) {
            tx.commit().await.context("failed to commit the imports")?;
        }
        Ok(outcomes)
    }

    /// What `batch::run_group` decides and writes a group through: one [`Batched`] for both — a
    /// decision's read (a restock's levels and proofs, [`GroupStock::learn`]) is sent at once, and
    /// the group's writes, its restocks' with them, go out together after the decisions.
    fn group_sink(connection: &mut Connection, spare_change_ids: Vec<i64>) -> Batched<'_> {
        Batched {
            spare_change_ids,
            ..Batched::new(connection)
        }
    }

    /// The history row numbers `load_orders_numbering_changes` took, on its first row (none on the others).
    fn spare_change_ids(row: &DbRow) -> Result<Vec<i64>> {
        Ok(row
            .try_get::<Option<Vec<i64>>, _>("spare_change_ids")?
            .unwrap_or_default())
    }

    /// A column of text arrays on the load's first row (`stock_read`); empty where it is NULL.
    fn texts_column(row: &DbRow, name: &str) -> Result<Vec<String>> {
        Ok(row.try_get::<Option<Vec<String>>, _>(name)?.unwrap_or_default())
    }

    /// `ids` as `Listed::Array` asks: `= ANY` one array parameter, whatever their number.
    fn push_ids(query: &mut QueryBuilder<'_, Db>, ids: &[String]) {
        query.push(" = ANY (");
        query.push_bind(ids.to_vec());
        query.push(")");
    }

    /// Writes a group's changes after its decisions, with whatever the decisions left held.
    async fn save_into(
        sink: &mut Batched<'_>,
        changes: &[OrderChange],
        leases: &[Option<crate::Lease>],
        stock: &GroupStock,
    ) -> Result<()> {
        write_leased_changes(sink, changes, leases, stock).await?;
        sink.flush().await
    }

    /// The statement that writes `rows`: one whatever their number, each column bound as one array
    /// ([`push_rows`]) — one round trip and one prepared shape per table.
    fn row_statements<'a>(rows: &'a Rows<'a>, returning: &'static str) -> Result<Vec<QueryBuilder<'a, Db>>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut query = QueryBuilder::<Db>::new("");
        push_rows(&mut query, rows)?;
        query.push(returning);
        Ok(vec![query])
    }

    /// `rows` as a statement of their own pushed onto `query` (a held part of [`Batched`], which
    /// outlives them, or a statement of its own): `rows.head`, then a `SELECT` of each column's array
    /// unnested in step — `SELECT unnest($1::text[]), unnest($2::int8[]), …` — then `rows.tail`. The
    /// texts are copied into one buffer per column ([`TextArray`]).
    ///
    /// `unnest` in the select list hands its values on one by one (PostgreSQL's `ProjectSet`), where
    /// `FROM UNNEST(…)` (until the thirty-first session) first copied every row into a tuplestore,
    /// whose first allocation — 16 KiB, freed back after each statement — was faulted in anew every
    /// time: with five such tables in a group's write, 15–19 % of the writer backend's CPU at 8 clients.
    /// PostgreSQL's CPU per own-store cancellation 13 % less at 64 clients, the rate +9 % there and
    /// +12 % at 8 (BENCHMARKS.md). Arrays of one length give the same rows either way.
    fn push_rows<'q>(query: &mut QueryBuilder<'q, Db>, rows: &Rows<'_>) -> Result<()> {
        query.push(rows.head);
        query.push("SELECT ");
        for (index, column) in columns(rows)?.into_iter().enumerate() {
            if index > 0 {
                query.push(", ");
            }
            query.push("unnest(");
            match column {
                Column::Texts(texts) => query.push_bind(TextArray::of(&texts)?).push("::text[]"),
                Column::Ints(numbers) => query.push_bind(numbers).push("::int8[]"),
                Column::Bools(flags) => query.push_bind(flags).push("::bool[]"),
            };
            query.push(")");
        }
        query.push(rows.tail);
        Ok(())
    }

    /// A column of texts bound as a `text[]`, in PostgreSQL's binary array format, built at once from
    /// borrowed texts: one buffer per column instead of a `String` per value (a group's held write
    /// outlives the rows it was built from).
    struct TextArray(Vec<u8>);

    /// PostgreSQL's type number of `text`, the arrays' element type.
    const TEXT_OID: u32 = 25;

    impl TextArray {
        fn of(texts: &[Option<&str>]) -> Result<TextArray> {
            let length: usize = texts.iter().map(|text| 4 + text.map_or(0, str::len)).sum();
            let mut bytes = Vec::with_capacity(20 + length);
            bytes.extend(1_i32.to_be_bytes()); // dimensions
            bytes.extend(0_i32.to_be_bytes()); // flags
            bytes.extend(TEXT_OID.to_be_bytes());
            bytes.extend(i32::try_from(texts.len())?.to_be_bytes());
            bytes.extend(1_i32.to_be_bytes()); // lower bound
            for text in texts {
                match text {
                    Some(text) => {
                        bytes.extend(i32::try_from(text.len())?.to_be_bytes());
                        bytes.extend_from_slice(text.as_bytes());
                    }
                    None => bytes.extend((-1_i32).to_be_bytes()),
                }
            }
            Ok(TextArray(bytes))
        }
    }

    impl sqlx::Type<Db> for TextArray {
        fn type_info() -> sqlx::postgres::PgTypeInfo {
            <Vec<String> as sqlx::Type<Db>>::type_info()
        }
    }

    impl sqlx::Encode<'_, Db> for TextArray {
        fn encode_by_ref(
            &self,
            buf: &mut sqlx::postgres::PgArgumentBuffer,
        ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
            buf.extend_from_slice(&self.0);
            Ok(sqlx::encode::IsNull::No)
        }
    }

    /// One column of rows, as the array it is bound as.
    enum Column<'a> {
        Texts(Vec<Option<&'a str>>),
        Ints(Vec<Option<i64>>),
        Bools(Vec<bool>),
    }

    /// The columns of `rows`, each of one value type.
    fn columns<'a>(rows: &'a Rows<'a>) -> Result<Vec<Column<'a>>> {
        let Some(first) = rows.rows().next() else {
            return Err(anyhow::anyhow!("no rows for `{}`", rows.head.trim()));
        };
        let mut columns = Vec::with_capacity(first.len());
        for (column, kind) in first.iter().enumerate() {
            let values = rows.rows().map(move |row| &row[column]);
            let mismatch = || anyhow::anyhow!("column {column} of `{}` mixes value types", rows.head.trim());
            columns.push(match kind {
                Value::Text(_) => Column::Texts(
                    values
                        .map(|value| match value {
                            Value::Text(text) => Ok(text.as_deref()),
                            _ => Err(mismatch()),
                        })
                        .collect::<Result<_>>()?,
                ),
                Value::Int(_) => Column::Ints(
                    values
                        .map(|value| match value {
                            Value::Int(number) => Ok(*number),
                            _ => Err(mismatch()),
                        })
                        .collect::<Result<_>>()?,
                ),
                Value::Bool(_) => Column::Bools(
                    values
                        .map(|value| match value {
                            Value::Bool(flag) => Ok(*flag),
                            _ => Err(mismatch()),
                        })
                        .collect::<Result<_>>()?,
                ),
            });
        }
        Ok(columns)
    }

    /// A change's writes with the plain inserts (and the finished jobs' delete) held back, each one
    /// data-modifying part of a `WITH` in front of the next statement that has to run — the outbox
    /// events' insert, whose sequence numbers the webhook deliveries need, or anything that reads —
    /// or sent on their own by [`Batched::flush`]. A cancellation's order, cancellation, refund,
    /// job and history then reach the server in one round trip instead of one each. Every part sees
    /// the database as the statement began and none sees another's rows, which the change's writes
    /// never need: each table is written once, and foreign keys are checked at the statement's end.
    /// The most rows of one table held back (copied) by [`Batched`]: a group's; a bulk cancel's
    /// thousands go out at once, bound without a copy.
    const HELD_ROWS_MAX: usize = 256;

    struct Batched<'c> {
        connection: &'c mut Connection,
        held: Option<QueryBuilder<'static, Db>>,
        parts: usize,
        /// History row numbers taken with the group's orders, ascending: history rows written with
        /// them go out with the rest of the write, not in a round trip of their own.
        spare_change_ids: Vec<i64>,
    }

    impl<'c> Batched<'c> {
        fn new(connection: &'c mut Connection) -> Self {
            Batched {
                connection,
                held: None,
                parts: 0,
                spare_change_ids: Vec::new(),
            }
        }

        /// The held statement, opened for one more part.
        fn hold(&mut self) -> &mut QueryBuilder<'static, Db> {
            let part = self.parts;
            self.parts += 1;
            let query = self.held.get_or_insert_with(|| QueryBuilder::new("WITH "));
            if part > 0 {
                query.push(", ");
            }
            query.push("held_").push(part).push(" AS (");
            query
        }

        /// The held parts, to go in front of the statement to come; `None` when nothing is held.
        fn take_held(&mut self) -> Option<QueryBuilder<'static, Db>> {
            self.parts = 0;
            self.held.take().map(|mut query| {
                query.push(" ");
                query
            })
        }

        /// Sends what is held, if anything.
        async fn flush(&mut self) -> Result<()> {
            if let Some(mut query) = self.take_held() {
                query.push("SELECT 1");
                query.build().execute(&mut *self.connection).await?;
            }
            Ok(())
        }
    }

    impl Sink for Batched<'_> {
        async fn insert(&mut self, rows: &Rows<'_>) -> Result<()> {
            if rows.is_empty() {
                return Ok(());
            }
            if rows.len() > HELD_ROWS_MAX {
                self.flush().await?;
                return Statements(&mut *self.connection).insert(rows).await;
            }
            let query = self.hold();
            push_rows(query, rows)?;
            query.push(")");
            Ok(())
        }

        async fn insert_history_rows(&mut self, rows: &Rows<'_>) -> Result<Vec<(String, i64)>> {
            if rows.len() <= self.spare_change_ids.len() {
                let mut numbered_rows = Rows::new(DIALECT.numbered_history_insert, 4, "");
                let mut numbered = Vec::with_capacity(rows.len());
                for (row, id) in rows.rows().zip(self.spare_change_ids.drain(..rows.len())) {
                    let [order_id, at, lines] = row else {
                        anyhow::bail!("a history row of {} values", row.len());
                    };
                    let Value::Text(Some(order)) = order_id else {
                        anyhow::bail!("a history row without its order");
                    };
                    numbered.push((order.to_string(), id));
                    numbered_rows.push([id.into(), order_id.clone(), at.clone(), lines.clone()]);
                }
                self.insert(&numbered_rows).await?;
                return Ok(numbered);
            }
            // Without numbers taken beforehand (a bulk cancel's write, or a group that needs more): the
            // numbers are wanted before the order's row is written, so a round trip of its own.
            self.flush().await?;
            Statements(&mut *self.connection).insert_history_rows(rows).await
        }

        async fn outbox_rows_from(&mut self) -> Result<Option<i64>> {
            // PostgreSQL's identity column numbers the rows, sixteen apart.
            Ok(None)
        }

        async fn insert_events(
            &mut self,
            rows: &Rows<'_>,
            shops: &[&str],
        ) -> Result<(HashMap<String, i64>, Vec<ActiveWebhook>)> {
            if rows.len() > HELD_ROWS_MAX {
                self.flush().await?;
                return Statements(&mut *self.connection).insert_events(rows, shops).await;
            }
            // What is held, the events and the shops' webhooks: one statement, one snapshot.
            let mut query = match self.take_held() {
                Some(mut query) => {
                    query.push(", ");
                    query
                }
                None => QueryBuilder::new("WITH "),
            };
            query.push("new_events AS (");
            push_rows(&mut query, rows)?;
            query.push(
                " RETURNING id, seq) SELECT id, seq, NULL::text AS shop_id, NULL::text AS events FROM new_events \
                 UNION ALL SELECT id, NULL, shop_id, events FROM webhooks WHERE active AND shop_id = ANY(",
            );
            query.push_bind(shops.iter().map(|shop| (*shop).to_owned()).collect::<Vec<String>>());
            query.push("::text[])");
            let mut seqs = HashMap::new();
            let mut webhooks = Vec::new();
            for row in query.build().fetch_all(&mut *self.connection).await? {
                match row.try_get::<Option<String>, _>("shop_id")? {
                    None => {
                        seqs.insert(row.try_get("id")?, row.try_get("seq")?);
                    }
                    Some(shop_id) => webhooks.push((row.try_get("id")?, shop_id, row.try_get("events")?)),
                }
            }
            webhooks.sort();
            Ok((seqs, webhooks))
        }

        async fn add_stock(&mut self, shop_id: &str, deltas: &[(&str, i64)], at: i64) -> Result<Vec<String>> {
            if deltas.is_empty() {
                return Ok(Vec::new());
            }
            // The update is held like an insert, and what is held goes with it.
            let part = self.parts;
            let skus: Vec<String> = deltas.iter().map(|(sku, _)| (*sku).to_owned()).collect();
            let amounts: Vec<i64> = deltas.iter().map(|(_, delta)| *delta).collect();
            let query = self.hold();
            push_stock_update(query, shop_id, skus, amounts, at);
            query.push(" RETURNING inventory.sku)");
            let mut query = self.take_held().expect("the update is held");
            query.push("SELECT sku FROM held_").push(part);
            query
                .build()
                .fetch_all(&mut *self.connection)
                .await?
                .iter()
                .map(|row| Ok(row.try_get("sku")?))
                .collect()
        }

        async fn queue_pushes(&mut self, shop_id: &str, skus: &[String], at: i64) -> Result<()> {
            if skus.is_empty() {
                return Ok(());
            }
            // Held like an insert: a group queues each shop's SKUs once, so no other part of the
            // statement upserts the same rows.
            let query = self.hold();
            query.push(QUEUE_PUSHES_HEAD);
            query.push_bind(at);
            query.push(QUEUE_PUSHES_DUE_FROM);
            query.push_bind(shop_id.to_owned());
            query.push(" AND l.sku = ANY(");
            query.push_bind(skus.to_vec());
            query.push("::text[])");
            query.push(QUEUE_PUSHES_AGAIN);
            query.push(")");
            Ok(())
        }

        async fn delete_jobs(&mut self, order_ids: &[&str]) -> Result<()> {
            if order_ids.is_empty() {
                return Ok(());
            }
            let ids: Vec<String> = order_ids.iter().map(|id| (*id).to_owned()).collect();
            let query = self.hold();
            query
                .push("DELETE FROM workflow_jobs WHERE order_id = ANY(")
                .push_bind(ids)
                .push("::text[]))");
            Ok(())
        }

        async fn stock_and_proofs(
            &mut self,
            shop_id: &str,
            skus: &[&str],
            orders: &[(&str, &str)],
        ) -> Result<crate::rows::StockAndProofs> {
            // A read sees what is held: it is sent first.
            self.flush().await?;
            // One prepared statement whose function keeps its plans (migration 0018), instead of a
            // statement parsed and planned for each group.
            let (proof_orders, proof_cancellations): (Vec<String>, Vec<String>) = orders
                .iter()
                .map(|(order_id, cancellation_id)| ((*order_id).to_owned(), (*cancellation_id).to_owned()))
                .unzip();
            let skus: Vec<String> = skus.iter().map(|sku| (*sku).to_owned()).collect();
            let rows = sqlx::query(
                "SELECT stocked_sku, proof_order_id, proof_cancellation_id, proof_sku \
                 FROM rescind_stock_and_proofs($1, $2, $3, $4)",
            )
            .bind(shop_id)
            .bind(skus)
            .bind(proof_orders)
            .bind(proof_cancellations)
            .fetch_all(&mut *self.connection)
            .await?;
            let mut known = crate::rows::StockAndProofs::default();
            for row in rows {
                match row.try_get::<Option<String>, _>("stocked_sku")? {
                    Some(sku) => known.stocked.push(sku),
                    None => known.proofs.push((
                        row.try_get("proof_order_id")?,
                        row.try_get("proof_cancellation_id")?,
                        row.try_get("proof_sku")?,
                    )),
                }
            }
            Ok(known)
        }

        async fn add_known_stock(&mut self, shop_id: &str, deltas: &[(&str, i64)], at: i64) -> Result<()> {
            if deltas.is_empty() {
                return Ok(());
            }
            let skus: Vec<String> = deltas.iter().map(|(sku, _)| (*sku).to_owned()).collect();
            let amounts: Vec<i64> = deltas.iter().map(|(_, delta)| *delta).collect();
            let query = self.hold();
            push_stock_update(query, shop_id, skus, amounts, at);
            query.push(")");
            Ok(())
        }
    }

    /// The update that adds each of `amounts` to the shop's SKU of `skus` at the same place, as a
    /// part of a held statement (without its closing parenthesis).
    fn push_stock_update(
        query: &mut QueryBuilder<'static, Db>,
        shop_id: &str,
        skus: Vec<String>,
        amounts: Vec<i64>,
        at: i64,
    ) {
        query
            .push("UPDATE inventory SET available = available + moved.move_delta, updated_at = ")
            .push_bind(at)
            .push(" FROM (SELECT unnest(")
            .push_bind(skus)
            .push("::text[]) AS move_sku, unnest(")
            .push_bind(amounts)
            .push("::bigint[]) AS move_delta) AS moved WHERE inventory.shop_id = ")
            .push_bind(shop_id.to_owned())
            .push(" AND inventory.sku = moved.move_sku");
    }

    impl Read for sqlx::postgres::PgRow {
        fn column<T: Readable>(&self, name: &str) -> Result<T> {
            Ok(self.try_get(name)?)
        }

        fn text<T>(&self, name: &str, read: impl FnOnce(Option<&str>) -> Result<T>) -> Result<T> {
            read(self.try_get(name)?)
        }
    }

    impl Backend {
        /// Nothing to do: a PostgreSQL commit (`synchronous_commit = on`) is seen by others only
        /// once it is flushed.
        async fn make_seen_durable(&self) -> Result<()> {
            Ok(())
        }
    }

    /// The group writer: runs each group of single-order changes in one transaction through sqlx,
    /// one group at a time, until the store closes — on a thread of its own, with a runtime and
    /// connections of its own, so that it never waits behind the HTTP workers' tasks for its turn
    /// between its round trips (the workflow about a tenth faster; BENCHMARKS.md, twenty-first
    /// session). Its callers are answered on the runtime `run_writer` was called on; imports are
    /// written there, on `shared`.
    fn run_writer(shared: sqlx::Pool<Db>, groups: batch::Groups) {
        let (imports, importer) = start_imports(shared.clone());
        let (keys, keyer) = start_keys(shared.clone());
        let beside = Beside {
            imports,
            importer,
            keys,
            keyer,
        };
        let callers = tokio::runtime::Handle::current();
        let options = shared.connect_options().as_ref().clone();
        let spawned = std::thread::Builder::new()
            .name("rescind-writer".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        tracing::error!(error = %error, "the group writer's runtime did not start; changes will fail");
                        return groups.stopped();
                    }
                };
                runtime.block_on(async move {
                    // Connected when first used: a database not reachable yet fails the groups that
                    // come meanwhile ("failed to start a change"), as the shared pool's would.
                    let pool = PgPoolOptions::new()
                        .max_connections(WRITER_CONNECTIONS)
                        .test_before_acquire(false)
                        .connect_lazy_with(options);
                    let groups = write_groups(&pool, groups, beside, &callers).await;
                    // Closed before a closing caller hears, who may drop the database next.
                    pool.close().await;
                    groups.stopped();
                });
            });
        if let Err(error) = spawned {
            tracing::error!(error = %error, "the group writer's thread did not start; changes will fail");
        }
    }

    /// The group writer's own connections: one in use at a time, and one more so that the next
    /// group never waits for the last one's connection to be handed back.
    const WRITER_CONNECTIONS: u32 = 2;

    /// Runs group after group until the store closes; answers the queue, to be told it stopped.
    async fn write_groups(
        pool: &sqlx::Pool<Db>,
        mut groups: batch::Groups,
        beside: Beside,
        callers: &tokio::runtime::Handle,
    ) -> batch::Groups {
        let mut setups = batch::Setups::default();
        let mut next: Option<batch::Next> = None;
        loop {
            let (group, begun) = match next.take() {
                Some(next) => next,
                None => match groups.next().await {
                    Some(group) => (group, None),
                    None => break,
                },
            };
            beside.hand_on(&mut groups).await;
            if !group.is_empty() {
                next = batch::run_group(pool, group, begun, &mut setups, &mut groups, callers).await;
                // What came while the group was committed, with no change to start the next: handed
                // on now, not left until a change comes (a quiet store's imports and keys waited).
                beside.hand_on(&mut groups).await;
            }
        }
        // The imports and keys handed on are written, and answered, before a closing caller hears.
        let Beside {
            imports,
            importer,
            keys,
            keyer,
        } = beside;
        drop((imports, keys));
        let _ = importer.await;
        let _ = keyer.await;
        groups
    }

    /// What the group writer hands on, to be written beside its groups on the shared pool.
    struct Beside {
        imports: tokio::sync::mpsc::Sender<batch::ImportJob>,
        importer: tokio::task::JoinHandle<()>,
        keys: tokio::sync::mpsc::Sender<batch::KeyJob>,
        keyer: tokio::task::JoinHandle<()>,
    }

    impl Beside {
        /// Hands on the keys' operations and imports `groups` took with its changes: they are
        /// written apart, in batches of their own.
        async fn hand_on(&self, groups: &mut batch::Groups) {
            for job in groups.take_keys() {
                if let Err(tokio::sync::mpsc::error::SendError(job)) = self.keys.send(job).await {
                    batch::fail_keys(vec![job], "the keys' writer has stopped");
                }
            }
            for import in groups.take_imports() {
                if let Err(tokio::sync::mpsc::error::SendError(import)) = self.imports.send(import).await {
                    batch::fail_imports(vec![import], "the importer has stopped");
                }
            }
        }
    }

    /// The most keys' operations one PostgreSQL transaction takes.
    const KEYS_MAX: usize = 256;

    /// The idempotency keys' operations the writer hands on (B3), written a batch at a time on a task
    /// of their own, each batch in one transaction of a few statements whatever its size
    /// ([`key_batch`]): the operations that waited while the batch before was written share its
    /// statements and its commit. One transaction per operation ran own-store with a key per cancel
    /// at 2 241–2 421/s, batches at 2 755–3 048/s (BENCHMARKS.md, twenty-third session). The task
    /// ends once the sender is dropped and every batch sent is written.
    fn start_keys(pool: sqlx::Pool<Db>) -> (tokio::sync::mpsc::Sender<batch::KeyJob>, tokio::task::JoinHandle<()>) {
        let (keys, mut queue) = tokio::sync::mpsc::channel::<batch::KeyJob>(KEYS_MAX * 16);
        let keyer = tokio::spawn(async move {
            while let Some(jobs) = next_batch(&mut queue, KEYS_MAX).await {
                match key_batch(&pool, &jobs).await {
                    Ok(ran) => batch::answer_keys(
                        jobs.into_iter().zip(ran).map(|(job, ran)| job.done(ran)).collect(),
                        None,
                    ),
                    Err(error) => batch::fail_keys(jobs, &format!("{error:#}")),
                }
            }
        });
        (keys, keyer)
    }

    /// A stored key's fingerprint, response status and body.
    type StoredKey = (String, Option<i32>, Option<String>);

    /// Runs `jobs` in one transaction: every response stored and claim given up (one statement each
    /// for all), then every claim — the keys inserted (one statement) and, only when a key was there
    /// already, the stale rows among those dropped and their keys inserted again, then the keys there
    /// read. Two claims of one key in a batch: the first is new, the second finds it. Answers each
    /// job's outcome, in order.
    async fn key_batch(
        pool: &sqlx::Pool<Db>,
        jobs: &[batch::KeyJob],
    ) -> Result<Vec<Result<Option<crate::IdempotencyClaim>>>> {
        // Committed without waiting for the WAL's flush (why that is safe: `batch::KeyJob`); in the
        // one round trip of `BEGIN`.
        let mut tx = pool
            .begin_with("BEGIN; SET LOCAL synchronous_commit TO OFF")
            .await
            .context("failed to start the keys' batch")?;
        let completes: Vec<(&batch::KeyJob, u16, &str)> = jobs
            .iter()
            .filter_map(|job| match &job.op {
                batch::KeyOp::Complete { status_code, body } => Some((job, *status_code, body.as_str())),
                _ => None,
            })
            .collect();
        if !completes.is_empty() {
            sqlx::query(
                "UPDATE idempotency_keys k SET status_code = i.status_code, response_body = i.body \
                 FROM (SELECT unnest($1::int4[]) AS status_code, unnest($2::text[]) AS body, \
                 unnest($3::text[]) AS scope, unnest($4::text[]) AS key) AS i \
                 WHERE k.scope = i.scope AND k.key = i.key",
            )
            .bind(
                completes
                    .iter()
                    .map(|(_, status_code, _)| i32::from(*status_code))
                    .collect::<Vec<_>>(),
            )
            .bind(completes.iter().map(|(_, _, body)| *body).collect::<Vec<_>>())
            .bind(completes.iter().map(|(job, ..)| job.scope.as_str()).collect::<Vec<_>>())
            .bind(completes.iter().map(|(job, ..)| job.key.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        let releases: Vec<&batch::KeyJob> = jobs
            .iter()
            .filter(|job| matches!(job.op, batch::KeyOp::Release))
            .collect();
        if !releases.is_empty() {
            sqlx::query(
                "DELETE FROM idempotency_keys k \
                 USING (SELECT unnest($1::text[]) AS scope, unnest($2::text[]) AS key) AS i \
                 WHERE k.scope = i.scope AND k.key = i.key AND k.status_code IS NULL",
            )
            .bind(releases.iter().map(|job| job.scope.as_str()).collect::<Vec<_>>())
            .bind(releases.iter().map(|job| job.key.as_str()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await?;
        }
        let claims: Vec<(&batch::KeyJob, &str, Timestamp)> = jobs
            .iter()
            .filter_map(|job| match &job.op {
                batch::KeyOp::Claim { fingerprint, now } => Some((job, fingerprint.as_str(), *now)),
                _ => None,
            })
            .collect();
        let mut found: HashMap<(String, String), StoredKey> = HashMap::new();
        let mut inserted: HashSet<(String, String)> = HashSet::new();
        if !claims.is_empty() {
            inserted.extend(insert_claims(&mut tx, &claims).await?);
            // A key already there may be stale (a response past its retention, a claim abandoned): those
            // rows are dropped and their keys inserted again. Most batches are all new keys, so the drop
            // runs only when a claim found its key — a round trip fewer than dropping first.
            let all_new = inserted.len() == claims.len();
            if !all_new {
                let found_there: Vec<(&batch::KeyJob, &str, Timestamp)> = claims
                    .iter()
                    .filter(|(job, ..)| !inserted.contains(&(job.scope.clone(), job.key.clone())))
                    .copied()
                    .collect();
                if drop_stale_claims(&mut tx, &found_there).await? > 0 {
                    inserted.extend(insert_claims(&mut tx, &found_there).await?);
                }
            }
            // The keys already there, read only when a claim found one (a round trip fewer again).
            let rows = if all_new {
                Vec::new()
            } else {
                let scopes: Vec<&str> = claims.iter().map(|(job, ..)| job.scope.as_str()).collect();
                let keys: Vec<&str> = claims.iter().map(|(job, ..)| job.key.as_str()).collect();
                sqlx::query(
                    "SELECT k.scope, k.key, k.fingerprint, k.status_code, k.response_body FROM idempotency_keys k \
                     JOIN (SELECT DISTINCT scope, key \
                     FROM (SELECT unnest($1::text[]) AS scope, unnest($2::text[]) AS key) AS u) i \
                     ON k.scope = i.scope AND k.key = i.key",
                )
                .bind(&scopes)
                .bind(&keys)
                .fetch_all(&mut *tx)
                .await?
            };
            for row in rows {
                found.insert(
                    (row.try_get("scope")?, row.try_get("key")?),
                    (
                        row.try_get("fingerprint")?,
                        row.try_get("status_code")?,
                        row.try_get("response_body")?,
                    ),
                );
            }
        }
        tx.commit().await.context("failed to commit the keys' batch")?;
        Ok(jobs
            .iter()
            .map(|job| match &job.op {
                batch::KeyOp::Claim { fingerprint, .. } => {
                    let named = (job.scope.clone(), job.key.clone());
                    // The first claim of a key the batch inserted is new; any other finds it.
                    if inserted.remove(&named) {
                        return Ok(Some(crate::IdempotencyClaim::New));
                    }
                    let (stored, status_code, body) = found
                        .get(&named)
                        .cloned()
                        .context("a claimed key was neither inserted nor found")?;
                    Ok(Some(claim_found(
                        &stored,
                        status_code.map(i64::from),
                        body,
                        fingerprint,
                    )?))
                }
                batch::KeyOp::Complete { .. } | batch::KeyOp::Release => Ok(None),
            })
            .collect())
    }

    /// Inserts the claims' keys, each unless it is there; answers those inserted (the first of two
    /// claims of one key).
    async fn insert_claims(
        connection: &mut Connection,
        claims: &[(&batch::KeyJob, &str, Timestamp)],
    ) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, created_at) \
             SELECT scope, key, fingerprint, created_at \
             FROM (SELECT unnest($1::text[]) AS scope, unnest($2::text[]) AS key, \
             unnest($3::text[]) AS fingerprint, unnest($4::int8[]) AS created_at, \
             generate_series(1, cardinality($1::text[])) AS place) AS i ORDER BY place \
             ON CONFLICT (scope, key) DO NOTHING RETURNING scope, key",
        )
        .bind(claims.iter().map(|(job, ..)| job.scope.as_str()).collect::<Vec<_>>())
        .bind(claims.iter().map(|(job, ..)| job.key.as_str()).collect::<Vec<_>>())
        .bind(
            claims
                .iter()
                .map(|(_, fingerprint, _)| *fingerprint)
                .collect::<Vec<_>>(),
        )
        .bind(claims.iter().map(|(.., now)| now.unix_micros()).collect::<Vec<_>>())
        .fetch_all(&mut *connection)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("scope")?, row.try_get("key")?)))
            .collect()
    }

    /// Drops the stale rows of the claims' keys (B3's retention); answers how many.
    async fn drop_stale_claims(
        connection: &mut Connection,
        claims: &[(&batch::KeyJob, &str, Timestamp)],
    ) -> Result<u64> {
        let stale: Vec<(i64, i64)> = claims.iter().map(|(.., now)| stale_keys_before(*now)).collect();
        Ok(sqlx::query(
            "DELETE FROM idempotency_keys k \
             USING (SELECT unnest($1::text[]) AS scope, unnest($2::text[]) AS key, \
             unnest($3::int8[]) AS expired, unnest($4::int8[]) AS abandoned) AS i \
             WHERE k.scope = i.scope AND k.key = i.key \
             AND (k.created_at < i.expired OR (k.status_code IS NULL AND k.created_at < i.abandoned))",
        )
        .bind(claims.iter().map(|(job, ..)| job.scope.as_str()).collect::<Vec<_>>())
        .bind(claims.iter().map(|(job, ..)| job.key.as_str()).collect::<Vec<_>>())
        .bind(stale.iter().map(|(expired, _)| *expired).collect::<Vec<_>>())
        .bind(stale.iter().map(|(_, abandoned)| *abandoned).collect::<Vec<_>>())
        .execute(&mut *connection)
        .await?
        .rows_affected())
    }

    #[cfg(test)]
    mod row_tests {
        use super::*;
        use sqlx::Connection;

        /// A group's rows, written as each column's array unnested in the select list, arrive whole
        /// and in order (NULLs, empty and multi-byte texts too), and PostgreSQL hands them on value by
        /// value: its plan has a `ProjectSet` and no function scan, whose tuplestore cost a fault-in of
        /// fresh memory per table and statement.
        #[tokio::test]
        async fn rows_unnested_in_the_select_list_arrive_whole_and_in_order_without_a_tuplestore() {
            let Ok(url) = std::env::var("RESCIND_TEST_DATABASE_URL") else {
                return;
            };
            let mut connection = sqlx::PgConnection::connect(&url).await.expect("connected");
            // A temporary table: gone with the connection, whatever the test's outcome.
            sqlx::query("CREATE TEMPORARY TABLE unnested (place int8, label text, flag bool)")
                .execute(&mut connection)
                .await
                .expect("created");
            let mut rows = Rows::new("INSERT INTO unnested (place, label, flag) ", 3, "");
            rows.push([1.into(), "キャンセル済み".into(), true.into()]);
            rows.push([2.into(), Option::<&str>::None.into(), false.into()]);
            rows.push([3.into(), "".into(), true.into()]);

            let mut explain = QueryBuilder::<Db>::new("EXPLAIN ");
            push_rows(&mut explain, &rows).expect("built");
            let plan: Vec<String> = explain
                .build()
                .fetch_all(&mut connection)
                .await
                .expect("explained")
                .iter()
                .map(|row| row.get::<String, _>(0))
                .collect();
            assert!(plan.iter().any(|step| step.contains("ProjectSet")), "{plan:#?}");
            assert!(!plan.iter().any(|step| step.contains("Function Scan")), "{plan:#?}");

            for mut statement in row_statements(&rows, "").expect("built") {
                statement.build().execute(&mut connection).await.expect("written");
            }
            let written: Vec<(i64, Option<String>, bool)> =
                sqlx::query_as("SELECT place, label, flag FROM unnested ORDER BY place")
                    .fetch_all(&mut connection)
                    .await
                    .expect("read");
            assert_eq!(
                written,
                vec![
                    (1, Some("キャンセル済み".to_owned()), true),
                    (2, None, false),
                    (3, Some(String::new()), true)
                ]
            );
            connection.close().await.expect("closed");
        }
    }

    #[cfg(test)]
    mod text_array_tests {
        use super::*;
        use sqlx::Encode;

        /// The held write's texts reach PostgreSQL exactly as sqlx would send the same `Vec` of
        /// owned texts: NULLs, empty texts and multi-byte ones included.
        #[test]
        fn a_text_array_is_encoded_byte_for_byte_as_sqlx_encodes_one() {
            for texts in [
                vec![Some("ord_1"), None, Some(""), Some("キャンセル済み"), Some("{\"a\":1}")],
                vec![None],
                vec![],
            ] {
                let mut ours = sqlx::postgres::PgArgumentBuffer::default();
                let null = TextArray::of(&texts)
                    .expect("encoded")
                    .encode_by_ref(&mut ours)
                    .expect("written");
                assert!(matches!(null, sqlx::encode::IsNull::No));
                let owned: Vec<Option<String>> = texts.iter().map(|text| text.map(str::to_owned)).collect();
                let mut theirs = sqlx::postgres::PgArgumentBuffer::default();
                let null = owned.encode_by_ref(&mut theirs).expect("written");
                assert!(matches!(null, sqlx::encode::IsNull::No));
                assert_eq!(&ours[..], &theirs[..], "{texts:?}");
            }
        }
    }
}

/// A worker's lease on an order's job, offered to be kept through the outcome it records: when the
/// change schedules the order's next step by `keep_if_due_by`, the job stays the worker's until
/// `until`, and the worker goes on with that step itself.
#[derive(Clone, Debug)]
pub struct Lease {
    pub owner: String,
    pub until: Timestamp,
    pub keep_if_due_by: Timestamp,
}

/// The store, on whichever backend the database URL names.
#[derive(Clone, Debug)]
pub enum Store {
    Sqlite(sqlite::Backend),
    Postgres(postgres::Backend),
}

macro_rules! dispatch {
    ($self:ident, $backend:ident => $call:expr) => {
        match $self {
            Store::Sqlite($backend) => $call,
            Store::Postgres($backend) => $call,
        }
    };
}

impl Store {
    /// Whether `database_url` names a PostgreSQL database (`postgres://…` or `postgresql://…`).
    pub fn names_postgres(database_url: &str) -> bool {
        database_url.starts_with("postgres:") || database_url.starts_with("postgresql:")
    }

    /// Connects (creating an SQLite file on first start) and applies pending migrations.
    /// `sqlite://path` or `postgres://…`.
    pub async fn open(database_url: &str) -> Result<Store> {
        let store = if database_url.starts_with("sqlite:") {
            Store::Sqlite(sqlite::connect(database_url).await?)
        } else if Store::names_postgres(database_url) {
            Store::Postgres(postgres::connect(database_url).await?)
        } else {
            anyhow::bail!("unsupported database URL `{database_url}`: use sqlite://FILE or postgres://…");
        };
        let opened = &store;
        dispatch!(opened, backend => backend.migrate().await)?;
        Ok(store)
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    /// SQLite's `synchronous` setting on the writer connection as any write outside the group
    /// writer finds it (2, `FULL`: each commit waits for its own fsync); `None` on PostgreSQL. For
    /// tests: the group writer commits with `NORMAL` while it holds the connection.
    #[doc(hidden)]
    pub async fn sqlite_writer_synchronous(&self) -> Result<Option<i64>> {
        match self {
            Store::Sqlite(backend) => Ok(Some(backend.writer_synchronous().await?)),
            Store::Postgres(_) => Ok(None),
        }
    }

    /// How many of SQLite's small allocations on the writer connection went past its lookaside
    /// because every slot was taken, since it was opened; `None` on PostgreSQL. For tests: the
    /// writer's groups run within their lookaside (`WRITER_LOOKASIDE_SLOTS`).
    #[doc(hidden)]
    pub async fn sqlite_writer_lookaside_full(&self) -> Result<Option<i64>> {
        match self {
            Store::Sqlite(backend) => Ok(Some(backend.writer_lookaside_full().await?)),
            Store::Postgres(_) => Ok(None),
        }
    }

    pub async fn close(&self) {
        dispatch!(self, backend => backend.close().await)
    }

    pub async fn create_shop(&self, shop: &Shop, token: &ApiToken) -> Result<()> {
        dispatch!(self, backend => backend.create_shop(shop, token, now()).await)
    }

    pub async fn shop(&self, shop_id: &str) -> Result<Option<Shop>> {
        dispatch!(self, backend => backend.shop(shop_id).await)
    }

    pub async fn count_shops(&self) -> Result<i64> {
        dispatch!(self, backend => backend.count_shops().await)
    }

    pub async fn create_token(&self, token: &ApiToken) -> Result<()> {
        dispatch!(self, backend => backend.create_token(token, now()).await)
    }

    pub async fn token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        dispatch!(self, backend => backend.token_by_hash(token_hash).await)
    }

    pub async fn create_console_session(&self, session: &ConsoleSession) -> Result<()> {
        dispatch!(self, backend => backend.create_console_session(session).await)
    }

    /// The session, while it has not expired.
    pub async fn console_session(&self, id_hash: &str) -> Result<Option<ConsoleSession>> {
        dispatch!(self, backend => backend.console_session(id_hash, now()).await)
    }

    /// Ends the session, and removes every expired one.
    pub async fn end_console_session(&self, id_hash: &str) -> Result<()> {
        dispatch!(self, backend => backend.end_console_session(id_hash, now()).await)
    }

    pub async fn create_webhook(&self, webhook: &Webhook) -> Result<()> {
        dispatch!(self, backend => backend.create_webhook(webhook).await)
    }

    pub async fn webhooks(&self, shop_id: &str) -> Result<Vec<Webhook>> {
        dispatch!(self, backend => backend.webhooks(shop_id).await)
    }

    pub async fn webhook(&self, shop_id: &str, webhook_id: &str) -> Result<Option<Webhook>> {
        dispatch!(self, backend => backend.webhook(shop_id, webhook_id).await)
    }

    /// Stops a webhook; `false` when the shop has no such webhook.
    pub async fn deactivate_webhook(&self, shop_id: &str, webhook_id: &str) -> Result<bool> {
        dispatch!(self, backend => backend.deactivate_webhook(shop_id, webhook_id).await)
    }

    /// A webhook's deliveries, newest first (the caller has checked the webhook is the shop's).
    pub async fn deliveries(
        &self,
        webhook_id: &str,
        status: Option<DeliveryStatus>,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<Page<Delivery>> {
        dispatch!(self, backend => backend.deliveries(webhook_id, status, cursor, limit).await)
    }

    pub async fn replay_delivery(&self, webhook_id: &str, delivery_id: &str) -> Result<Option<Delivery>> {
        dispatch!(self, backend => backend.replay_delivery(webhook_id, delivery_id, now()).await)
    }

    pub async fn claim_deliveries(&self, owner: &str, lease_until: Timestamp, limit: u32) -> Result<Vec<DueDelivery>> {
        dispatch!(self, backend => backend.claim_deliveries(owner, now(), lease_until, limit).await)
    }

    pub async fn finish_delivery(&self, delivery_id: &str, owner: &str, outcome: &DeliveryOutcome) -> Result<()> {
        dispatch!(self, backend => backend.finish_delivery(delivery_id, owner, outcome, now()).await)
    }

    pub async fn next_delivery_due_at(&self) -> Result<Option<Timestamp>> {
        dispatch!(self, backend => backend.next_delivery_due_at().await)
    }

    /// Events not yet on the event stream, leased to `owner` until `lease_until`.
    pub async fn claim_unpublished(&self, owner: &str, lease_until: Timestamp, limit: u32) -> Result<Vec<OutboxEvent>> {
        dispatch!(self, backend => backend.claim_unpublished(owner, now(), lease_until, limit).await)
    }

    pub async fn mark_published(&self, seqs: &[i64], owner: &str) -> Result<()> {
        dispatch!(self, backend => backend.mark_published(seqs, owner, now()).await)
    }

    /// Forgets finished deliveries and the events behind them that are older than
    /// [`OUTBOX_RETENTION_S`] at `at` (the present, but for tests).
    pub async fn purge_outbox(&self, at: Timestamp) -> Result<u64> {
        dispatch!(self, backend => backend.purge_outbox(at).await)
    }

    /// The shop's events after `after_seq`, oldest first.
    pub async fn events(&self, shop_id: &str, after_seq: i64, limit: u32) -> Result<Vec<OutboxEvent>> {
        dispatch!(self, backend => backend.events(shop_id, after_seq, limit).await)
    }

    pub async fn update_settings(&self, shop_id: &str, patch: SettingsPatch) -> Result<Settings> {
        dispatch!(self, backend => backend.update_settings(shop_id, patch).await)
    }

    pub async fn create_channel(&self, channel: &Channel) -> Result<()> {
        dispatch!(self, backend => backend.create_channel(channel).await)
    }

    pub async fn channel(&self, shop_id: &str, channel_id: &str) -> Result<Option<Channel>> {
        dispatch!(self, backend => backend.channel(shop_id, channel_id).await)
    }

    pub async fn channels(&self, shop_id: &str) -> Result<Vec<Channel>> {
        dispatch!(self, backend => backend.channels(shop_id).await)
    }

    /// Stores a new order. `build` receives the order number to use (the request's, or the next of
    /// the shop's counter) and returns the order or its problems. The import shares a transaction
    /// with the imports waiting with it (on SQLite with the changes too: group commit), and `build`
    /// runs on the writer's side (SQLite's writer thread, PostgreSQL's import task); the answer still
    /// comes only once it is committed (and, on SQLite, synced).
    pub async fn import_order(
        &self,
        shop_id: &str,
        channel_order_id: Option<&str>,
        channel_id: &str,
        requested_number: Option<&str>,
        build: impl FnOnce(String) -> Result<(Order, HistoryEntry), Vec<String>> + Send + 'static,
    ) -> Result<Order, ImportError> {
        let import = NewImport {
            shop_id,
            channel_id,
            channel_order_id,
            requested_number,
        };
        dispatch!(self, backend => backend.import_order(&import, build).await)
    }

    /// Which of `order_ids` have a cancellation still processing (a look far lighter than reading
    /// the orders).
    pub async fn processing_orders(&self, shop_id: &str, order_ids: &[String]) -> Result<HashSet<String>> {
        dispatch!(self, backend => backend.processing_orders(shop_id, order_ids).await)
    }

    pub async fn order(&self, shop_id: &str, order_id: &str) -> Result<Option<Order>> {
        dispatch!(self, backend => backend.order(shop_id, order_id).await)
    }

    pub async fn orders(
        &self,
        shop_id: &str,
        filter: &OrderFilter,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Order>> {
        dispatch!(self, backend => backend.orders(shop_id, filter, cursor, limit).await)
    }

    /// The order's history, oldest first; `None` when the order is not in this shop.
    pub async fn history(&self, shop_id: &str, order_id: &str) -> Result<Option<Vec<HistoryEntry>>> {
        dispatch!(self, backend => backend.history(shop_id, order_id).await)
    }

    /// Read-decide-write on one order in one transaction.
    pub async fn change_order<E>(
        &self,
        shop_id: &str,
        order_id: &str,
        decide: impl FnOnce(&Order) -> Result<OrderChange, E>,
    ) -> Result<OrderChange, ChangeError<E>> {
        dispatch!(self, backend => backend.change_order(shop_id, order_id, decide).await)
    }

    /// [`Store::change_order`] for the hot path: the change shares a transaction with the others
    /// waiting (group commit), and `decide` gets the shop's setup read in that transaction and the
    /// order itself to change (the group's loaded order, not a copy, unless another change of the
    /// group is on the same order); the answer still comes only once it is committed.
    pub async fn change_order_grouped<E: Send + 'static>(
        &self,
        shop_id: &str,
        order_id: &str,
        decide: impl FnOnce(Order, &ShopSetup) -> Result<OrderChange, E> + Send + 'static,
    ) -> Result<OrderChange, ChangeError<E>> {
        dispatch!(self, backend => backend.change_order_grouped(shop_id, order_id, decide).await)
    }

    /// [`Store::change_order_grouped`] by the worker holding the order's job under `lease`: when the
    /// change schedules the next step by `lease.keep_if_due_by`, the job stays leased to the worker
    /// (until `lease.until`) so that it goes on with that step without claiming it again; answers the
    /// change and whether the lease was kept.
    pub async fn change_order_leased<E: Send + 'static>(
        &self,
        shop_id: &str,
        order_id: &str,
        lease: Lease,
        decide: impl FnOnce(Order, &ShopSetup) -> Result<OrderChange, E> + Send + 'static,
    ) -> Result<(OrderChange, bool), ChangeError<E>> {
        dispatch!(self, backend => backend.change_order_leased(shop_id, order_id, lease, decide).await)
    }

    /// [`Store::change_order_leased`], and when the change leaves the cancellation's restock as its
    /// next step, due now, the restock too, in the same transaction: the stock goes back once and
    /// `restock` records the outcome, as [`Store::restock`] does — one commit instead of two. A
    /// refused restock (a stale step) leaves the change alone, and the restock to run on its own.
    pub async fn change_order_leased_then_restock<E: Send + 'static>(
        &self,
        shop_id: &str,
        order_id: &str,
        lease: Lease,
        decide: impl FnOnce(Order, &ShopSetup) -> Result<OrderChange, E> + Send + 'static,
        restock: impl FnOnce(&Order, RestockReport) -> Result<OrderChange, E> + Send + 'static,
    ) -> Result<(OrderChange, bool), ChangeError<E>> {
        dispatch!(self, backend => backend.change_order_leased_then_restock(shop_id, order_id, lease, decide, restock).await)
    }

    /// Read-decide-write on many orders in one transaction; one order's refusal never stops the
    /// others. Results come in the order of `order_ids`.
    pub async fn change_orders<E>(
        &self,
        shop_id: &str,
        order_ids: &[String],
        decide: impl FnMut(&Order) -> Result<OrderChange, E>,
    ) -> Result<Vec<Result<OrderChange, ChangeError<E>>>> {
        dispatch!(self, backend => backend.change_orders(shop_id, order_ids, decide).await)
    }

    /// The shop's channels and warehouses, which every cancel decision consults.
    pub async fn shop_setup(&self, shop_id: &str) -> Result<ShopSetup> {
        dispatch!(self, backend => backend.shop_setup(shop_id).await)
    }

    pub async fn create_warehouse(&self, warehouse: &Warehouse) -> Result<()> {
        dispatch!(self, backend => backend.create_warehouse(warehouse).await)
    }

    pub async fn warehouse(&self, shop_id: &str, warehouse_id: &str) -> Result<Option<Warehouse>> {
        dispatch!(self, backend => backend.warehouse(shop_id, warehouse_id).await)
    }

    /// A warehouse by id alone, for requests the warehouse itself makes (events).
    pub async fn warehouse_by_id(&self, warehouse_id: &str) -> Result<Option<Warehouse>> {
        dispatch!(self, backend => backend.warehouse_by_id(warehouse_id).await)
    }

    pub async fn warehouses(&self, shop_id: &str) -> Result<Vec<Warehouse>> {
        dispatch!(self, backend => backend.warehouses(shop_id).await)
    }

    /// The order whose outbound request at `warehouse_id` is `external_id`.
    pub async fn order_id_by_outbound(
        &self,
        warehouse_id: &str,
        external_id: &str,
    ) -> Result<Option<(String, String)>> {
        dispatch!(self, backend => backend.order_id_by_outbound(warehouse_id, external_id).await)
    }

    pub async fn create_payment_provider(&self, provider: &PaymentProvider) -> Result<()> {
        dispatch!(self, backend => backend.create_payment_provider(provider).await)
    }

    pub async fn payment_provider(&self, shop_id: &str, provider_id: &str) -> Result<Option<PaymentProvider>> {
        dispatch!(self, backend => backend.payment_provider(shop_id, provider_id).await)
    }

    pub async fn payment_providers(&self, shop_id: &str) -> Result<Vec<PaymentProvider>> {
        dispatch!(self, backend => backend.payment_providers(shop_id).await)
    }

    /// The shop's cancellations, newest first; only those needing attention (or not) when asked.
    pub async fn cancellations(
        &self,
        shop_id: &str,
        needs_attention: Option<bool>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<CancellationOfOrder>> {
        dispatch!(self, backend => backend.cancellations(shop_id, needs_attention, cursor, limit).await)
    }

    /// The shop's customer cancellation requests, newest first; only those of `status` when given.
    pub async fn cancellation_requests(
        &self,
        shop_id: &str,
        status: Option<rescind_domain::RequestStatus>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<RequestOfOrder>> {
        dispatch!(self, backend => backend.cancellation_requests(shop_id, status, cursor, limit).await)
    }

    pub async fn order_id_of_request(&self, shop_id: &str, request_id: &str) -> Result<Option<String>> {
        dispatch!(self, backend => backend.order_id_of_request(shop_id, request_id).await)
    }

    pub async fn order_id_of_cancellation(&self, shop_id: &str, cancellation_id: &str) -> Result<Option<String>> {
        dispatch!(self, backend => backend.order_id_of_cancellation(shop_id, cancellation_id).await)
    }

    /// A channel by id alone, for requests the channel itself makes (webhooks).
    pub async fn channel_by_id(&self, channel_id: &str) -> Result<Option<Channel>> {
        dispatch!(self, backend => backend.channel_by_id(channel_id).await)
    }

    pub async fn order_id_by_channel_order_id(
        &self,
        channel_id: &str,
        channel_order_id: &str,
    ) -> Result<Option<String>> {
        dispatch!(self, backend => backend.order_id_by_channel_order_id(channel_id, channel_order_id).await)
    }

    /// Channel order ids of the channel's open orders that no cancellation is under way for.
    pub async fn open_channel_order_ids(&self, channel_id: &str, limit: u32) -> Result<Vec<String>> {
        dispatch!(self, backend => backend.open_channel_order_ids(channel_id, limit).await)
    }

    pub async fn all_channels(&self) -> Result<Vec<Channel>> {
        dispatch!(self, backend => backend.all_channels().await)
    }

    /// The shop's sync history (F5), newest first, of one kind and one result when given; `cursor` is the `next_cursor` of the page before.
    pub async fn sync_history(
        &self,
        shop_id: &str,
        kind: Option<rescind_domain::SyncKind>,
        ok: Option<bool>,
        cursor: Option<i64>,
        limit: u32,
    ) -> Result<Page<SyncEntry>> {
        dispatch!(self, backend => backend.sync_history(shop_id, kind, ok, cursor, limit).await)
    }

    /// The channels that sell `sku` (I5).
    pub async fn listings(&self, shop_id: &str, sku: &str) -> Result<Vec<Listing>> {
        dispatch!(self, backend => backend.listings(shop_id, sku).await)
    }

    /// Replaces the channels that sell `sku`, and queues a push of its level to each.
    pub async fn set_listings(&self, shop_id: &str, sku: &str, listings: &[Listing]) -> Result<()> {
        dispatch!(self, backend => backend.set_listings(shop_id, sku, listings, now()).await)
    }

    /// Claims the levels due to be pushed, grouped by channel, under a lease until `lease_until`.
    pub async fn claim_stock_pushes(&self, owner: &str, lease_until: Timestamp) -> Result<Vec<PushBatch>> {
        dispatch!(self, backend => backend.claim_stock_pushes(owner, now(), lease_until).await)
    }

    /// Records what became of a claimed push, with its sync history entry.
    pub async fn finish_stock_push(
        &self,
        batch: &PushBatch,
        outcome: &PushOutcome,
        record: &rescind_domain::SyncRecord,
    ) -> Result<()> {
        dispatch!(self, backend => backend.finish_stock_push(batch, outcome, record, now()).await)
    }

    pub async fn stock(&self, shop_id: &str, sku: &str) -> Result<Option<StockLevel>> {
        dispatch!(self, backend => backend.stock(shop_id, sku).await)
    }

    /// Stock levels by SKU, `limit` at a time after the cursor (a SKU).
    pub async fn stock_levels(
        &self,
        shop_id: &str,
        q: Option<&str>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<StockLevel>> {
        dispatch!(self, backend => backend.stock_levels(shop_id, q, cursor, limit).await)
    }

    pub async fn set_stock(&self, shop_id: &str, sku: &str, available: i64) -> Result<StockLevel> {
        dispatch!(self, backend => backend.set_stock(shop_id, sku, available, now()).await)
    }

    /// `None` when the SKU is not stocked.
    pub async fn adjust_stock(&self, shop_id: &str, sku: &str, delta: i64, reason: &str) -> Result<Option<StockLevel>> {
        dispatch!(self, backend => backend.adjust_stock(shop_id, sku, delta, reason, now()).await)
    }

    /// Restocks the order's current cancellation exactly once and records the outcome with it.
    pub async fn restock<E: Send + 'static>(
        &self,
        shop_id: &str,
        order_id: &str,
        decide: impl FnOnce(&Order, RestockReport) -> Result<OrderChange, E> + Send + 'static,
    ) -> Result<OrderChange, ChangeError<E>> {
        dispatch!(self, backend => backend.restock(shop_id, order_id, decide).await)
    }

    /// Takes the lease of up to `limit` due jobs for `owner` until `lease_until`.
    pub async fn claim_jobs(&self, owner: &str, lease_until: Timestamp, limit: u32) -> Result<Vec<Job>> {
        dispatch!(self, backend => backend.claim_jobs(owner, now(), lease_until, limit).await)
    }

    /// Forgets a job `owner` holds whose work turned out to be done already.
    pub async fn finish_job(&self, order_id: &str, owner: &str) -> Result<()> {
        dispatch!(self, backend => backend.finish_job(order_id, owner).await)
    }

    pub async fn next_job_due_at(&self) -> Result<Option<Timestamp>> {
        dispatch!(self, backend => backend.next_job_due_at().await)
    }

    /// Frees every lease. Only for SQLite, where one process owns the database: at start, the leases
    /// of the process before it are void.
    pub async fn release_all_leases(&self) -> Result<u64> {
        dispatch!(self, backend => backend.release_all_leases().await)
    }

    pub async fn count_jobs(&self) -> Result<i64> {
        dispatch!(self, backend => backend.count_jobs().await)
    }

    pub async fn claim_idempotency_key(&self, scope: &str, key: &str, fingerprint: &str) -> Result<IdempotencyClaim> {
        dispatch!(self, backend => backend.claim_idempotency_key(scope, key, fingerprint, now()).await)
    }

    /// [`Store::claim_idempotency_key`] as of `at`. For tests: a claim left without a response, or a
    /// stored response, counts as stale only after a while.
    #[doc(hidden)]
    pub async fn claim_idempotency_key_at(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        at: Timestamp,
    ) -> Result<IdempotencyClaim> {
        dispatch!(self, backend => backend.claim_idempotency_key(scope, key, fingerprint, at).await)
    }

    pub async fn complete_idempotency_key(&self, scope: &str, key: &str, status_code: u16, body: &str) -> Result<()> {
        dispatch!(self, backend => backend.complete_idempotency_key(scope, key, status_code, body).await)
    }

    /// Forgets a claim whose request failed unexpectedly, so a retry runs it again.
    pub async fn release_idempotency_key(&self, scope: &str, key: &str) -> Result<()> {
        dispatch!(self, backend => backend.release_idempotency_key(scope, key).await)
    }

    /// Deletes stored responses older than [`IDEMPOTENCY_RETENTION_S`]; returns how many.
    pub async fn purge_idempotency_keys(&self) -> Result<u64> {
        dispatch!(self, backend => backend.purge_idempotency_keys(now()).await)
    }
}
