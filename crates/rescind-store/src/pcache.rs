//! SQLite's own page cache (`pcache1`), but for the page number it lends a page it renumbers.
//!
//! When a B-tree page splits, SQLite renumbers the new pages so that they lie in the file in key
//! order, swapping two pages' numbers through a third: the number of the page that holds the
//! locking byte (`PENDING_BYTE`, at 1 GiB), which no database page ever has (`balance_nonroot`).
//! `pcache1` remembers the largest page number it has held, and a commit drops every cached page
//! past the database's end (`pcache1Truncate`): once that number was lent, the largest is far past
//! the end, and every commit walks the whole cache — every page of it, under a mutex — to find none.
//! The group writer's orders, indexes and history split pages in nearly every group, so every
//! commit paid for a walk of the whole cache: about 2 % of the writer's time with SQLite's default
//! 2 MB cache, and −21 % ± 5 throughput with a 64 MB one (BENCHMARKS.md, thirty-seventh session).
//!
//! This cache hands every call to `pcache1`, but lends number 0 — which no page has either —
//! instead of the locking page's: the largest number held stays the database's end, and a commit
//! finds nothing to drop without looking. Installed once, before SQLite initializes
//! ([`install`]); if SQLite was already initialized, it keeps `pcache1` as it is.

use rusqlite::ffi;
use std::ffi::{c_int, c_uint};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The byte SQLite's locks are taken on; the page that holds it is never used.
const PENDING_BYTE: c_uint = 0x4000_0000;
/// The number lent instead: SQLite numbers pages from 1.
const LENT: c_uint = 0;

/// How often the locking page's number was asked for and [`LENT`] given instead (a B-tree page's
/// renumbering asks three times).
static LENDINGS: AtomicU64 = AtomicU64::new(0);

/// `pcache1`'s methods, read once.
struct Inner(ffi::sqlite3_pcache_methods2);
// SAFETY: SQLite's page cache methods are called from every connection's thread by design.
unsafe impl Send for Inner {}
unsafe impl Sync for Inner {}
static INNER: OnceLock<Inner> = OnceLock::new();

fn inner() -> &'static ffi::sqlite3_pcache_methods2 {
    &INNER.get().expect("the page cache is installed").0
}

/// One connection's cache: `pcache1`'s, and the locking page's number at its page size.
struct Cache {
    inner: *mut ffi::sqlite3_pcache,
    locking_page: c_uint,
}

impl Cache {
    /// `cache` as created by [`create`].
    unsafe fn of<'a>(cache: *mut ffi::sqlite3_pcache) -> &'a Cache {
        unsafe { &*cache.cast::<Cache>() }
    }

    fn key(&self, key: c_uint) -> c_uint {
        if key == self.locking_page {
            LENDINGS.fetch_add(1, Ordering::Relaxed);
            LENT
        } else {
            key
        }
    }
}

/// Puts this cache in place of `pcache1`: `true` if it is, `false` if SQLite had already been
/// initialized (or refused it), and `pcache1` serves as it is.
pub(crate) fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        // SAFETY: both calls only read or replace SQLite's global page cache methods, which SQLite
        // allows before it is initialized and refuses (SQLITE_MISUSE) after; the methods given
        // live as long as the process.
        unsafe {
            let mut methods: ffi::sqlite3_pcache_methods2 = std::mem::zeroed();
            if ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, &mut methods as *mut _) != ffi::SQLITE_OK
                || methods.xCreate.is_none()
            {
                return false;
            }
            let ours = ffi::sqlite3_pcache_methods2 {
                iVersion: methods.iVersion,
                pArg: methods.pArg,
                xInit: methods.xInit,
                xShutdown: methods.xShutdown,
                xCreate: Some(create),
                xCachesize: Some(cachesize),
                xPagecount: Some(pagecount),
                xFetch: Some(fetch),
                xUnpin: Some(unpin),
                xRekey: Some(rekey),
                xTruncate: Some(truncate),
                xDestroy: Some(destroy),
                xShrink: Some(shrink),
            };
            if INNER.set(Inner(methods)).is_err() {
                return false;
            }
            let ours: &'static ffi::sqlite3_pcache_methods2 = Box::leak(Box::new(ours));
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_PCACHE2, ours as *const _) == ffi::SQLITE_OK
        }
    })
}

unsafe extern "C" fn create(page_size: c_int, extra: c_int, purgeable: c_int) -> *mut ffi::sqlite3_pcache {
    let Some(create) = inner().xCreate else {
        return std::ptr::null_mut();
    };
    // SAFETY: `pcache1`'s own create, with SQLite's arguments.
    let cache = unsafe { create(page_size, extra, purgeable) };
    if cache.is_null() {
        return cache;
    }
    let locking_page = c_uint::try_from(page_size).map_or(0, |size| PENDING_BYTE / size.max(1) + 1);
    Box::into_raw(Box::new(Cache {
        inner: cache,
        locking_page,
    }))
    .cast()
}

unsafe extern "C" fn cachesize(cache: *mut ffi::sqlite3_pcache, pages: c_int) {
    // SAFETY: `cache` is one of ours ([`create`]), alive until [`destroy`].
    unsafe {
        if let Some(cachesize) = inner().xCachesize {
            cachesize(Cache::of(cache).inner, pages);
        }
    }
}

unsafe extern "C" fn pagecount(cache: *mut ffi::sqlite3_pcache) -> c_int {
    // SAFETY: as in `cachesize`.
    unsafe {
        inner()
            .xPagecount
            .map_or(0, |pagecount| pagecount(Cache::of(cache).inner))
    }
}

unsafe extern "C" fn fetch(
    cache: *mut ffi::sqlite3_pcache,
    key: c_uint,
    create: c_int,
) -> *mut ffi::sqlite3_pcache_page {
    // SAFETY: as in `cachesize`.
    unsafe {
        let cache = Cache::of(cache);
        inner()
            .xFetch
            .map_or(std::ptr::null_mut(), |fetch| fetch(cache.inner, cache.key(key), create))
    }
}

unsafe extern "C" fn unpin(cache: *mut ffi::sqlite3_pcache, page: *mut ffi::sqlite3_pcache_page, discard: c_int) {
    // SAFETY: as in `cachesize`; `page` is one `pcache1` handed out.
    unsafe {
        if let Some(unpin) = inner().xUnpin {
            unpin(Cache::of(cache).inner, page, discard);
        }
    }
}

unsafe extern "C" fn rekey(
    cache: *mut ffi::sqlite3_pcache,
    page: *mut ffi::sqlite3_pcache_page,
    old: c_uint,
    new: c_uint,
) {
    // SAFETY: as in `unpin`.
    unsafe {
        let cache = Cache::of(cache);
        if let Some(rekey) = inner().xRekey {
            rekey(cache.inner, page, cache.key(old), cache.key(new));
        }
    }
}

unsafe extern "C" fn truncate(cache: *mut ffi::sqlite3_pcache, limit: c_uint) {
    // SAFETY: as in `cachesize`.
    unsafe {
        if let Some(truncate) = inner().xTruncate {
            truncate(Cache::of(cache).inner, limit);
        }
    }
}

unsafe extern "C" fn destroy(cache: *mut ffi::sqlite3_pcache) {
    // SAFETY: `cache` is one of ours, destroyed once: `pcache1`'s goes first, then ours.
    unsafe {
        let ours = Box::from_raw(cache.cast::<Cache>());
        if let Some(destroy) = inner().xDestroy {
            destroy(ours.inner);
        }
    }
}

unsafe extern "C" fn shrink(cache: *mut ffi::sqlite3_pcache) {
    // SAFETY: as in `cachesize`.
    unsafe {
        if let Some(shrink) = inner().xShrink {
            shrink(Cache::of(cache).inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, OpenFlags};

    /// Rows with random keys in an index, as the orders' and the history's: its pages split at
    /// random places, and SQLite renumbers the new pages through the locking page's number.
    #[test]
    fn pages_split_and_renumbered_through_the_lent_number_keep_every_row() {
        assert!(
            install(),
            "SQLite was initialized before the page cache could be installed"
        );
        let directory = tempfile::tempdir().unwrap();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        let db = Connection::open_with_flags_and_vfs(
            directory.path().join("split.db"),
            flags,
            crate::vfs::register().unwrap(),
        )
        .unwrap();
        db.execute_batch(
            "PRAGMA page_size = 2048; PRAGMA journal_mode = WAL; PRAGMA cache_size = -65536;
             CREATE TABLE items (id INTEGER PRIMARY KEY, key TEXT NOT NULL, body TEXT NOT NULL);
             CREATE INDEX items_by_key ON items (key);",
        )
        .unwrap();
        let lent_before = LENDINGS.load(Ordering::Relaxed);
        let mut next: u64 = 0x2545_f491_4f6c_dd1d;
        for group in 0..100 {
            let transaction = db.unchecked_transaction().unwrap();
            for row in 0..50 {
                next = next
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                transaction
                    .execute(
                        "INSERT INTO items (key, body) VALUES (?1, ?2)",
                        (format!("{next:016x}"), format!("{group}/{row}").repeat(20)),
                    )
                    .unwrap();
            }
            transaction.commit().unwrap();
        }
        assert!(LENDINGS.load(Ordering::Relaxed) > lent_before, "no page was renumbered");
        let integrity: String = db.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
        assert_eq!(integrity, "ok");
        let (rows, keys): (i64, i64) = db
            .query_row(
                "SELECT count(*), count(DISTINCT key) FROM items INDEXED BY items_by_key",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((rows, keys), (5_000, 5_000));
        let body: String = db
            .query_row("SELECT body FROM items WHERE id = 4321", [], |row| row.get(0))
            .unwrap();
        assert_eq!(body, "86/20".repeat(20));
    }
}
