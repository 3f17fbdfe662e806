//! The reads every cancel makes go by an index, whatever the tables hold: on SQLite (whose planner
//! answers the same for an empty table as for a full one) the store's own statements are explained.
//! On PostgreSQL, a group's load of its orders reads them by key alone in the generic plan a prepared
//! statement ends up with, however many orders their shop holds; and its restocks' proofs by key from
//! a table not analyzed yet — through a function whose plans, kept since the table was empty, never read
//! it whole — and an import's look-up of its channel orders by both key columns from a
//! channel whose orders came since the table was analyzed. And no row SQLite inserts into any table
//! builds a temporary B-tree to test a partial index's condition.

mod common;

use common::{import_an_order, open_shop, PostgresSchema};
use rescind_store::Store;
use sqlx::{Connection, Row};

/// Asserts that SQLite's plan for `statement` reads `table` through `index` and never scans it.
async fn assert_reads_by(url: &str, statement: &str, table: &str, index: &str) {
    let steps = plan(url, statement).await;
    assert!(
        steps.iter().any(|step| step.contains(&format!("INDEX {index}"))),
        "{steps:?}"
    );
    assert!(
        !steps.iter().any(|step| step.starts_with(&format!("SCAN {table}"))),
        "{steps:?}"
    );
}

/// SQLite's plan for `statement`, one line per step.
async fn plan(url: &str, statement: &str) -> Vec<String> {
    let mut raw = sqlx::SqliteConnection::connect(url).await.expect("the file opens");
    let steps = sqlx::query(&format!("EXPLAIN QUERY PLAN {statement}"))
        .bind("ord_1")
        .fetch_all(&mut raw)
        .await
        .expect("the statement is explained");
    raw.close().await.expect("closed");
    steps.iter().map(|step| step.get::<String, _>("detail")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_s_refunds_and_cancellation_request_are_read_by_the_ids_its_row_names_not_by_scanning() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}", folder.path().join("rescind.db").display());
    let store = Store::open(&url).await.expect("the store opens");
    // The statements the group writer and every read of an order run for what the order's row names
    // (migration 0011): by primary key, however many refunds and requests the shops ever had.
    for (statement, table, index) in [
        (
            "SELECT id, amount FROM refunds WHERE id = $1",
            "refunds",
            "sqlite_autoindex_refunds_1",
        ),
        (
            "SELECT id, amount FROM refunds WHERE id IN ($1, $1)",
            "refunds",
            "sqlite_autoindex_refunds_1",
        ),
        (
            "SELECT id, status FROM cancellation_requests WHERE id = $1",
            "cancellation_requests",
            "sqlite_autoindex_cancellation_requests_1",
        ),
    ] {
        assert_reads_by(&url, statement, table, index).await;
    }
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warehouse_s_outbound_id_finds_its_order_by_the_index_of_orders_that_have_one() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}", folder.path().join("rescind.db").display());
    let store = Store::open(&url).await.expect("the store opens");
    // The statement of `Store::order_id_by_outbound` (a warehouse's notice names its outbound id): the
    // index holds only orders with an outbound id (migration 0010), and asking for one by value may use it.
    assert_reads_by(
        &url,
        "SELECT id, shop_id FROM orders WHERE warehouse_id = $1 AND outbound_external_id = $2",
        "orders",
        "orders_by_outbound",
    )
    .await;
    let mut raw = sqlx::SqliteConnection::connect(&url).await.expect("the file opens");
    let definition: String = sqlx::query_scalar("SELECT sql FROM sqlite_schema WHERE name = 'orders_by_outbound'")
        .fetch_one(&mut raw)
        .await
        .expect("the index is there");
    assert!(
        definition.ends_with("WHERE outbound_external_id IS NOT NULL"),
        "{definition}"
    );
    raw.close().await.expect("closed");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_row_inserted_into_any_table_on_sqlite_builds_a_temporary_b_tree_for_its_indexes() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let url = format!("sqlite://{}", folder.path().join("rescind.db").display());
    let store = Store::open(&url).await.expect("the store opens");
    // A partial index whose condition tests `IN (…)` makes every statement that writes its table open,
    // fill and close a temporary B-tree per execution (and the group writer executes one per row):
    // cancellations' upsert cost three times the order's until migration 0015.
    let mut raw = sqlx::SqliteConnection::connect(&url).await.expect("the file opens");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )
    .fetch_all(&mut raw)
    .await
    .expect("the tables are listed");
    assert!(tables.iter().any(|table| table == "cancellations"), "{tables:?}");
    for table in &tables {
        let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
            .bind(table)
            .fetch_all(&mut raw)
            .await
            .expect("the columns are listed");
        let insert = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            columns.join(", "),
            vec!["NULL"; columns.len()].join(", ")
        );
        // And the upsert that writes a cancellation again as its steps go on.
        let upsert = (table == "cancellations").then(|| {
            format!("{insert} ON CONFLICT (id) DO UPDATE SET status = excluded.status, steps = excluded.steps")
        });
        for statement in std::iter::once(insert).chain(upsert) {
            let program = sqlx::query(&format!("EXPLAIN {statement}"))
                .fetch_all(&mut raw)
                .await
                .expect("the statement is explained");
            let opcodes: Vec<String> = program.iter().map(|step| step.get("opcode")).collect();
            assert!(
                !opcodes.iter().any(|opcode| opcode == "OpenEphemeral"),
                "{statement}: {opcodes:?}"
            );
        }
    }
    raw.close().await.expect("closed");
    store.close().await;
}

/// Orders in the shop whose orders a group loads.
const SHOP_ORDERS: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_s_orders_are_locked_by_their_key_not_by_reading_their_whole_shop_on_postgres() {
    // A shop of many orders in a table not analyzed yet (as a freshly filled one is until autovacuum's
    // next round): PostgreSQL then guesses that a shop holds 0.5 % of the orders — the case where a
    // plan reading the shop's part of `orders_by_shop` beside the key looks cheap, and is not. (Many
    // shops of few orders and one large one mislead it the same way once analyzed.)
    let Some(OnPostgres {
        schema,
        store,
        shop,
        orders: ids,
        mut raw,
    }) = shop_on_postgres("shop_large", SHOP_ORDERS).await
    else {
        return;
    };
    // The plan a prepared statement settles on after its first executions: made without the values;
    // and by an index, as for a table too large to read whole (this one is not).
    for setting in ["SET plan_cache_mode = force_generic_plan", "SET enable_seqscan = off"] {
        sqlx::query(setting).execute(&mut raw).await.expect("set");
    }
    // The group writer's load of a group's orders (`load_orders_numbering_changes`), for 32 of them,
    // with the history row numbers it takes once they are locked, as prepared.
    let keys: Vec<String> = (2..=33).map(|number| format!("${number}")).collect();
    let statement = format!(
        "WITH locked AS (SELECT id FROM orders WHERE id IN ({}) AND shop_id || '' = $1 ORDER BY id FOR UPDATE), \
         numbers AS (SELECT array_agg(nextval('order_changes_id_seq') ORDER BY n) AS spare_change_ids \
         FROM generate_series(1, LEAST((SELECT count(*) FROM locked), 1) * $34::int8) AS n) \
         SELECT locked.*, numbers.spare_change_ids FROM locked CROSS JOIN numbers ORDER BY locked.id",
        keys.join(", ")
    );
    let values: Vec<String> = std::iter::once(shop.clone())
        .chain(ids.iter().take(32).cloned())
        .chain(std::iter::once("64".to_owned()))
        .collect();
    let plan = explain(&mut raw, &statement, &values).await;
    assert!(plan.iter().any(|step| step.contains("orders_pkey")), "{plan:#?}");
    assert!(
        !plan.iter().any(|step| step.contains("orders_by_shop")),
        "the shop's part of its index is not read: {plan:#?}"
    );
    raw.close().await.expect("closed");
    store.close().await;
    schema.drop().await;
}

/// Restocks (one row per SKU a cancellation put back) in the table whose proofs a group reads.
const RESTOCKS: usize = 20_000;

/// Writes [`RESTOCKS`] proofs straight into the table: cancellation `can_n` of order `n % 16` (among
/// `orders`), one SKU each.
async fn fill_restocks(raw: &mut sqlx::PgConnection, orders: &[String]) {
    sqlx::query(
        "INSERT INTO restocks (order_id, cancellation_id, sku, quantity, at) \
         SELECT ($1::text[])[1 + n % 16], 'can_' || n, 'TEA-001', 1, 0 FROM generate_series(1, $2) AS n",
    )
    .bind(orders)
    .bind(i64::try_from(RESTOCKS).expect("a count"))
    .execute(raw)
    .await
    .expect("restocks written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_s_restock_proofs_are_read_by_key_from_a_large_restocks_table_not_analyzed_yet_on_postgres() {
    // A `restocks` table filled since the database was made and not analyzed yet (autovacuum's next
    // round is up to a minute away; a benchmark's run is over by then).
    let Some(OnPostgres {
        schema,
        store,
        orders,
        mut raw,
        ..
    }) = shop_on_postgres("shop_restocks", 16).await
    else {
        return;
    };
    fill_restocks(&mut raw, &orders).await;
    // The restocks part of the group's read of levels and proofs (`stock_and_proofs`), for 32 orders'
    // current cancellations, planned for its values as the store sends it; and by order alone, as it was.
    let pairs: Vec<String> = (0..32)
        .map(|pair| format!("(${}, ${})", 2 * pair + 1, 2 * pair + 2))
        .collect();
    let by_key = format!(
        "SELECT sku, order_id, cancellation_id FROM restocks WHERE (order_id, cancellation_id) IN ({})",
        pairs.join(", ")
    );
    let keys_of_pairs: Vec<String> = (0..32)
        .flat_map(|pair| [orders[pair % orders.len()].clone(), format!("can_{pair}")])
        .collect();
    let plan = explain(&mut raw, &by_key, &keys_of_pairs).await;
    assert!(plan.iter().any(|step| step.contains("restocks_pkey")), "{plan:#?}");
    assert!(
        !plan.iter().any(|step| step.contains("Seq Scan on restocks")),
        "{plan:#?}"
    );
    // What the key is for: by order alone, PostgreSQL guesses that the 32 orders have a fifth of
    // the table, and reads all of it.
    let keys: Vec<String> = (1..=32).map(|number| format!("${number}")).collect();
    let by_order = format!(
        "SELECT sku, order_id, cancellation_id FROM restocks WHERE order_id IN ({})",
        keys.join(", ")
    );
    let order_keys: Vec<String> = (0..32).map(|order| format!("ord_unknown_{order}")).collect();
    let plan = explain(&mut raw, &by_order, &order_keys).await;
    assert!(
        plan.iter().any(|step| step.contains("Seq Scan on restocks")),
        "{plan:#?}"
    );
    raw.close().await.expect("closed");
    store.close().await;
    schema.drop().await;
}

/// How often `table` was read whole and through an index so far (`pg_stat_user_tables`), with this
/// connection's own counts flushed first.
async fn scans(raw: &mut sqlx::PgConnection, table: &str) -> (i64, i64) {
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut *raw)
        .await
        .expect("flushed");
    sqlx::query_as(
        "SELECT seq_scan, idx_scan FROM pg_stat_user_tables WHERE schemaname = current_schema() \
         AND relname = $1",
    )
    .bind(table)
    .fetch_one(&mut *raw)
    .await
    .expect("the table's scans")
}

/// A row of [`STOCK_AND_PROOFS`]: a stocked SKU, or a proof's order, cancellation and SKU.
type StockOrProof = (Option<String>, Option<String>, Option<String>, Option<String>);

/// The group writer's read of levels and proofs on PostgreSQL (`Batched::stock_and_proofs`).
const STOCK_AND_PROOFS: &str = "SELECT stocked_sku, proof_order_id, proof_cancellation_id, proof_sku \
     FROM rescind_stock_and_proofs($1, $2, $3, $4)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_s_restock_proofs_are_read_by_key_in_plans_kept_since_restocks_was_empty_on_postgres() {
    // The function of migration 0018 keeps its plans for the session: the ones here are made while
    // `restocks` is empty (a new database's first groups), then the table fills and is not analyzed
    // (autovacuum's next round is up to a minute away). Not one read of the whole table follows.
    let Some(OnPostgres {
        schema,
        store,
        shop,
        orders,
        mut raw,
    }) = shop_on_postgres("shop_kept_plans", 16).await
    else {
        return;
    };
    sqlx::query("INSERT INTO inventory (shop_id, sku, available, updated_at) VALUES ($1, 'TEA-001', 5, 0)")
        .bind(&shop)
        .execute(&mut raw)
        .await
        .expect("a level");
    let pairs: Vec<(String, String)> = (0..32)
        .map(|pair| (orders[pair % orders.len()].clone(), format!("can_{pair}")))
        .collect();
    let (proof_orders, proof_cancellations): (Vec<String>, Vec<String>) = pairs.into_iter().unzip();
    let read = |skus: Vec<&'static str>| {
        sqlx::query_as::<_, StockOrProof>(STOCK_AND_PROOFS)
            .bind(shop.clone())
            .bind(skus)
            .bind(proof_orders.clone())
            .bind(proof_cancellations.clone())
    };
    // More calls than PostgreSQL's five custom plans before it settles on a kept one.
    for _ in 0..8 {
        let rows = read(vec!["TEA-001", "CUP-002"])
            .fetch_all(&mut raw)
            .await
            .expect("read");
        assert_eq!(
            rows,
            vec![(Some("TEA-001".to_owned()), None, None, None)],
            "the level, no proofs"
        );
    }
    fill_restocks(&mut raw, &orders).await;
    let (seq_before, index_before) = scans(&mut raw, "restocks").await;
    let rows = read(vec!["TEA-001"]).fetch_all(&mut raw).await.expect("read");
    // `can_n` was written for order n % 16 only: the pairs (order 1, can_1) … name 31 such proofs.
    let proofs: Vec<&StockOrProof> = rows.iter().filter(|row| row.1.is_some()).collect();
    assert_eq!(proofs.len(), 31, "{rows:?}");
    assert!(proofs.iter().all(|row| row.3.as_deref() == Some("TEA-001")), "{rows:?}");
    let (seq_after, index_after) = scans(&mut raw, "restocks").await;
    assert_eq!(seq_after, seq_before, "restocks read whole");
    assert!(index_after > index_before, "{index_before} → {index_after}");
    raw.close().await.expect("closed");
    store.close().await;
    schema.drop().await;
}

/// The cancellations the group writer reads with its orders on PostgreSQL, once they are locked
/// (`CURRENT_CANCELLATIONS` in `backend.rs`, migration 0019).
const CANCELLATIONS_NOW: &str = "SELECT id, order_id FROM rescind_cancellations_now($1)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_s_cancellations_are_read_by_key_in_plans_kept_since_cancellations_was_empty_on_postgres() {
    // As for 0018's function: plans made while `cancellations` is empty, kept for the session, then
    // 20 000 cancellations that autovacuum has not analyzed yet. The group's few are read by key.
    let Some(OnPostgres {
        schema,
        store,
        orders,
        mut raw,
        ..
    }) = shop_on_postgres("shop_cancellations_now", 16).await
    else {
        return;
    };
    let ids: Vec<String> = (0..32).map(|n| format!("can_{n}")).collect();
    let read = || sqlx::query_as::<_, (String, String)>(CANCELLATIONS_NOW).bind(ids.clone());
    // More calls than PostgreSQL's five custom plans before it settles on a kept one.
    for _ in 0..8 {
        assert_eq!(read().fetch_all(&mut raw).await.expect("read"), vec![]);
    }
    // Cancellations that failed (in no partial unique index's condition), `can_n` of order n % 16.
    sqlx::query(
        "INSERT INTO cancellations (id, order_id, shop_id, status, requested_by, refund, restock, \
         notify_customer, needs_attention, steps, fulfillment_status_before, financial_status_before, \
         reauthorization_generation, created_at, updated_at) \
         SELECT 'can_' || n, ($1::text[])[1 + n % 16], 'shop', 'failed', 'merchant', false, false, false, \
         false, '[]', 'unfulfilled', 'paid', 0, 0, 0 FROM generate_series(1, 20000) AS n",
    )
    .bind(&orders)
    .execute(&mut raw)
    .await
    .expect("cancellations written");
    let (seq_before, index_before) = scans(&mut raw, "cancellations").await;
    let mut read_back = read().fetch_all(&mut raw).await.expect("read");
    read_back.sort_unstable();
    // can_0 was never written (the series starts at 1).
    let mut expected: Vec<(String, String)> = (1..32).map(|n| (format!("can_{n}"), orders[n % 16].clone())).collect();
    expected.sort_unstable();
    assert_eq!(read_back, expected);
    let (seq_after, index_after) = scans(&mut raw, "cancellations").await;
    assert_eq!(seq_after, seq_before, "cancellations read whole");
    assert!(index_after > index_before, "{index_before} → {index_after}");
    raw.close().await.expect("closed");
    store.close().await;
    schema.drop().await;
}

/// Orders of one channel in the table an import's look-up for orders already there reads.
const CHANNEL_ORDERS: i64 = 5_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_looks_its_channel_orders_up_by_key_not_through_its_channel_s_whole_part_on_postgres() {
    // A channel whose orders were imported since the table was last analyzed (a new database, or a
    // new channel on an old one): PostgreSQL guesses that the channel holds 0.5 % of the orders.
    let Some(OnPostgres {
        schema,
        store,
        orders,
        mut raw,
        ..
    }) = shop_on_postgres("shop_channel", 1).await
    else {
        return;
    };
    sqlx::query("ALTER TABLE orders SET (autovacuum_enabled = off)")
        .execute(&mut raw)
        .await
        .expect("set");
    sqlx::query(
        "INSERT INTO orders SELECT (jsonb_populate_record(o, jsonb_build_object('id', 'ord_c' || n, \
         'number', '#c' || n, 'channel_order_id', 'bench-' || n))).* \
         FROM orders o, generate_series(1, $2) AS n WHERE o.id = $1",
    )
    .bind(&orders[0])
    .bind(CHANNEL_ORDERS)
    .execute(&mut raw)
    .await
    .expect("orders written");
    // The look-up of an import batch of 32 (`orders_of_channel_orders`), its last key repeated as the
    // store pads a batch.
    let keys: Vec<String> = (0..32)
        .flat_map(|key| ["ch_shop_channel".to_owned(), format!("bench-{}", 4_000 + key.min(20))])
        .collect();
    let pairs: Vec<String> = (0..32)
        .map(|pair| format!("(${}, ${})", 2 * pair + 1, 2 * pair + 2))
        .collect();
    let by_key = format!(
        "WITH k (channel_id, channel_order_id) AS (VALUES {}) SELECT o.channel_id, o.channel_order_id, o.id \
         FROM k JOIN orders o ON o.channel_id = k.channel_id AND o.channel_order_id = k.channel_order_id",
        pairs.join(", ")
    );
    // Planned for its values, and as the prepared statement's generic plan.
    for mode in ["force_custom_plan", "force_generic_plan"] {
        sqlx::query(&format!("SET plan_cache_mode = {mode}"))
            .execute(&mut raw)
            .await
            .expect("set");
        let plan = explain(&mut raw, &by_key, &keys).await;
        assert!(
            plan.iter()
                .any(|step| step.contains("Index Cond: ((channel_id = ") && step.contains("AND (channel_order_id = ")),
            "{mode}: {plan:#?}"
        );
        assert!(!plan.iter().any(|step| step.contains("Filter")), "{mode}: {plan:#?}");
    }
    sqlx::query("SET plan_cache_mode = force_custom_plan")
        .execute(&mut raw)
        .await
        .expect("set");
    // What the keys' list is for: as pairs `IN (…)`, PostgreSQL takes the channel out of the pairs,
    // finds it in the index and reads every order of the channel, checking each against the 32.
    let as_pairs = format!(
        "SELECT channel_id, channel_order_id, id FROM orders WHERE (channel_id, channel_order_id) IN ({})",
        pairs.join(", ")
    );
    let plan = explain(&mut raw, &as_pairs, &keys).await;
    assert!(
        plan.iter()
            .any(|step| step.contains("Index Cond: (channel_id = 'ch_shop_channel'::text)")),
        "{plan:#?}"
    );
    raw.close().await.expect("closed");
    store.close().await;
    schema.drop().await;
}

/// A store on a PostgreSQL schema of its own, with a shop and its imported orders, and a connection
/// of its own beside the store.
struct OnPostgres {
    schema: PostgresSchema,
    store: Store,
    shop: String,
    orders: Vec<String>,
    raw: sqlx::PgConnection,
}

/// [`OnPostgres`] with `orders` orders imported into `shop_id`; `None` when no PostgreSQL is set.
async fn shop_on_postgres(shop_id: &str, orders: usize) -> Option<OnPostgres> {
    let schema = PostgresSchema::create().await?;
    let store = Store::open(&schema.url).await.expect("the store opens");
    let shop = open_shop(&store, shop_id).await;
    let mut ids = Vec::with_capacity(orders);
    for _ in 0..orders {
        ids.push(import_an_order(&store, &shop).await);
    }
    let raw = sqlx::PgConnection::connect(&schema.url).await.expect("connected");
    Some(OnPostgres {
        schema,
        store,
        shop,
        orders: ids,
        raw,
    })
}

/// PostgreSQL's plan for `statement` with `values` bound, one line per step.
async fn explain(raw: &mut sqlx::PgConnection, statement: &str, values: &[String]) -> Vec<String> {
    let explained = format!("EXPLAIN {statement}");
    let mut explain = sqlx::query(&explained);
    for value in values {
        explain = explain.bind(value);
    }
    explain
        .fetch_all(raw)
        .await
        .expect("explained")
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect()
}
