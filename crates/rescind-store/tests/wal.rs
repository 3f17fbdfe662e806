//! SQLite's write-ahead log stays small under steady writes: its frames are copied into the database
//! beside the writer and the log starts again from its beginning, instead of growing by every commit
//! until the load stops (it reached 800 MB in a 20 000-order benchmark before).

mod common;

use rescind_store::{ApiToken, Settings, Shop, Store};
use std::time::{Duration, Instant};

/// The WAL header's checkpoint sequence number (big-endian, bytes 12..16), which SQLite counts up
/// each time the log starts again from its beginning.
fn checkpoint_sequence(wal: &std::path::Path) -> u32 {
    let header = std::fs::read(wal).expect("the WAL is readable");
    u32::from_be_bytes(header[12..16].try_into().expect("a WAL header"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_ahead_log_starts_again_while_writes_go_on() {
    let folder = tempfile::tempdir().expect("a temporary folder");
    let path = folder.path().join("rescind.db");
    let store = Store::open(&format!("sqlite://{}", path.display()))
        .await
        .expect("the store opens");
    let shop = Shop {
        id: "shop_wal".into(),
        name: "WAL".into(),
        settings: Settings::default(),
    };
    let token = ApiToken {
        id: "tok_wal".into(),
        shop_id: shop.id.clone(),
        token_hash: "0".repeat(64),
        scopes: vec![],
    };
    store.create_shop(&shop, &token).await.expect("the shop is created");
    store
        .set_stock(&shop.id, "SKU-1", 1_000_000)
        .await
        .expect("stock is set");

    let wal = folder.path().join("rescind.db-wal");
    let mut commits = 0_u64;
    let first_sequence = checkpoint_sequence(&wal);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        store
            .adjust_stock(&shop.id, "SKU-1", -1, "a steady write")
            .await
            .expect("stock is adjusted");
        commits += 1;
    }
    let restarts = checkpoint_sequence(&wal).wrapping_sub(first_sequence);
    let size = std::fs::metadata(&wal).expect("the WAL exists").len();
    eprintln!("{commits} commits in 3 s; the WAL started again {restarts} times and is {size} bytes");
    assert!(commits >= 300, "the writes went on ({commits} commits)");
    assert!(
        restarts >= 2,
        "the WAL started again {restarts} times during 3 s of writes"
    );
    assert!(
        size <= 64 << 20,
        "the WAL is cut back to 64 MiB when it starts again ({size} bytes)"
    );
    let level = store
        .stock(&shop.id, "SKU-1")
        .await
        .expect("stock is read")
        .expect("the SKU exists");
    assert_eq!(level.available, 1_000_000 - commits as i64, "every adjustment is kept");
    store.close().await;
}

/// The page size a database file's header gives (big-endian, bytes 16..18).
fn page_size(file: &std::path::Path) -> u32 {
    let header = std::fs::read(file).expect("the database file is readable");
    u32::from(u16::from_be_bytes(
        header[16..18].try_into().expect("a database header"),
    ))
}

/// Every commit writes each page it changed whole into the WAL, so a new database is made of 2 KiB
/// pages (half the bytes per commit of SQLite's 4 KiB); a database made before keeps its own pages and
/// still opens and takes writes.
#[tokio::test]
async fn a_new_database_is_made_of_2_kib_pages_and_an_older_one_keeps_its_own() {
    use sqlx::ConnectOptions;
    let folder = tempfile::tempdir().expect("a temporary folder");
    let new = folder.path().join("new.db");
    let store = Store::open(&format!("sqlite://{}", new.display()))
        .await
        .expect("the new store opens");
    store.close().await;
    assert_eq!(page_size(&new), 2048, "a new database's pages");

    let older = folder.path().join("older.db");
    let connection = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&older)
        .create_if_missing(true)
        .page_size(4096)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .connect()
        .await
        .expect("an older database is made");
    sqlx::Connection::close(connection).await.expect("it closes");
    let store = Store::open(&format!("sqlite://{}", older.display()))
        .await
        .expect("the older store opens");
    // A shop, its channel and an order: the older store takes writes.
    let shop_id = common::open_shop(&store, "shop_older").await;
    common::import_an_order(&store, &shop_id).await;
    store.close().await;
    assert_eq!(page_size(&older), 4096, "an older database's pages");
}
