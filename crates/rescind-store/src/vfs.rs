//! The SQLite files' VFS: the platform's own (`unix`), but for one thing — the frames a commit
//! appends to the write-ahead log reach the kernel in one `pwrite` instead of two per frame.
//!
//! SQLite writes each WAL frame with two calls, its 24-byte header and then its page, so a group of
//! 24 cancellations committing about 170 frames made some 340 system calls, each with the file
//! system's per-call work (`ext4_da_write_begin`/`_end` and the checks around them): about a sixth
//! of the group writer's time, where copying the bytes themselves was a fiftieth (BENCHMARKS.md,
//! thirteenth session). A frame (24 bytes and a 2 KiB page) never covers whole 4 KiB blocks either, so writing
//! one into a block the kernel had let go of read the block first, inside the commit; a commit's
//! frames written together leave at most its two ends partial.
//!
//! Only the `-wal` file is wrapped ([`WalFile`]); every other file is the platform's own object.
//! The writes of a WAL file are gathered while they follow each other, and handed on:
//! - once the page of a commit frame (its header's database size is not zero) is gathered — SQLite
//!   makes the commit visible to other connections (the wal-index) only after that write returns,
//!   and the WAL syncer's fsync (`syncer.rs`) starts after the commit, so both find the frames in
//!   the kernel as they would without this;
//! - before any write that does not follow them, and before anything else is done with the file
//!   (a read, a sync, its size, a truncation, a file control, a lock, closing it);
//! - once [`GATHERED_BYTES_MAX`] are held (a bulk cancel's commit, a transaction whose cache spills).
//!
//! A commit frame's header that does not follow gathered frames (a transaction of one frame, or the
//! checksums SQLite rewrites after overwriting frames in one transaction) is written at once, and so
//! is the page after it: nothing may stay held after a commit frame.
//! Frames held and lost in a crash were never synced, exactly as frames in the page cache are not:
//! what a commit promises still comes from the sync after it.

use rusqlite::ffi;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

/// The VFS's name, given to every connection of an SQLite store (`vfs=`).
pub(crate) const NAME: &str = "rescind";
const NAME_C: &CStr = c"rescind";

/// The most a WAL file holds back unwritten (bytes): a larger commit (a bulk cancel's, a transaction
/// whose cache spills) is handed on in pieces of about this size — no fewer system calls would come
/// of holding more, as the platform's VFS writes at most [`WRITE_BYTES_MAX`] at once. The buffer is
/// allocated once, at the file's first write, with room for one more frame of the largest page.
const GATHERED_BYTES_MAX: usize = 1 << 20;
/// The largest frame SQLite writes: its header and a 64 KiB page.
const FRAME_BYTES_MAX: usize = (64 << 10) + FRAME_HEADER_BYTES as usize;
/// The most the platform's VFS writes in one call (it masks a write's length to 17 bits).
const WRITE_BYTES_MAX: usize = (128 << 10) - 1;
/// The file system's block, on whose boundaries the pieces of a long write end.
const BLOCK_BYTES: i64 = 4096;
/// The WAL's own header, at its start.
const WAL_HEADER_BYTES: i64 = 32;
/// Each frame's header, before its page.
const FRAME_HEADER_BYTES: c_int = 24;

/// Registers the VFS (once per process); answers its name.
pub(crate) fn register() -> anyhow::Result<&'static str> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            // SAFETY: `sqlite3_vfs_find` initializes SQLite and answers a VFS that lives as long as
            // the process; the copy made of it is leaked, so it does too, as SQLite requires of a
            // registered VFS.
            unsafe {
                let platform = ffi::sqlite3_vfs_find(std::ptr::null());
                if platform.is_null() {
                    return Err("SQLite has no default VFS".to_owned());
                }
                let platform_file_bytes = usize::try_from((*platform).szOsFile).unwrap_or(0);
                let mut ours: ffi::sqlite3_vfs = std::ptr::read(platform);
                ours.zName = NAME_C.as_ptr();
                ours.szOsFile = c_int::try_from(PLATFORM_FILE_OFFSET + platform_file_bytes)
                    .map_err(|_| "the platform's file object is too large".to_owned())?;
                ours.xOpen = Some(open);
                ours.pNext = std::ptr::null_mut();
                PLATFORM.get_or_init(|| Platform(platform));
                let ours = Box::leak(Box::new(ours));
                match ffi::sqlite3_vfs_register(ours, 0) {
                    ffi::SQLITE_OK => Ok(()),
                    code => Err(format!("SQLite refused the VFS (code {code})")),
                }
            }
        })
        .clone()
        .map(|()| NAME)
        .map_err(|error| anyhow::anyhow!("failed to register the SQLite VFS: {error}"))
}

/// The platform's VFS, which opens every file.
struct Platform(*mut ffi::sqlite3_vfs);
// SAFETY: a registered VFS is shared by every connection on every thread by design.
unsafe impl Send for Platform {}
unsafe impl Sync for Platform {}
static PLATFORM: OnceLock<Platform> = OnceLock::new();

/// A WAL file: the platform's file object lives right after this, at [`PLATFORM_FILE_OFFSET`] in
/// the memory SQLite gives each file.
#[repr(C)]
struct WalFile {
    /// What SQLite sees: its methods are [`WAL_METHODS`].
    base: ffi::sqlite3_file,
    platform: *mut ffi::sqlite3_file,
    /// Writes not handed on yet, which follow each other from `start`.
    gathered: Vec<u8>,
    start: i64,
    /// Where the page of the commit frame whose header came last is written.
    commit_page_at: Option<i64>,
}

const PLATFORM_FILE_OFFSET: usize = std::mem::size_of::<WalFile>().next_multiple_of(16);

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let Some(Platform(platform)) = PLATFORM.get() else {
        return ffi::SQLITE_CANTOPEN;
    };
    let platform = *platform;
    let Some(platform_open) = (*platform).xOpen else {
        return ffi::SQLITE_CANTOPEN;
    };
    if flags & ffi::SQLITE_OPEN_WAL == 0 {
        // Any other file is the platform's own object, in the first of the memory given (this VFS's
        // file size is larger than the platform's).
        return platform_open(platform, name, file, flags, out_flags);
    }
    let inner = file.cast::<u8>().add(PLATFORM_FILE_OFFSET).cast::<ffi::sqlite3_file>();
    let opened = platform_open(platform, name, inner, flags, out_flags);
    if opened != ffi::SQLITE_OK {
        // SQLite closes nothing whose methods are null.
        (*file).pMethods = std::ptr::null();
        return opened;
    }
    file.cast::<WalFile>().write(WalFile {
        base: ffi::sqlite3_file { pMethods: &WAL_METHODS },
        platform: inner,
        gathered: Vec::new(),
        start: 0,
        commit_page_at: None,
    });
    ffi::SQLITE_OK
}

/// Version 1: a WAL file is never memory-mapped and holds no shared memory (the database file does).
static WAL_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(wal_close),
    xRead: Some(wal_read),
    xWrite: Some(wal_write),
    xTruncate: Some(wal_truncate),
    xSync: Some(wal_sync),
    xFileSize: Some(wal_file_size),
    xLock: Some(wal_lock),
    xUnlock: Some(wal_unlock),
    xCheckReservedLock: Some(wal_check_reserved_lock),
    xFileControl: Some(wal_file_control),
    xSectorSize: Some(wal_sector_size),
    xDeviceCharacteristics: Some(wal_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

/// The WAL file behind `file`, and the platform's methods for it.
///
/// # Safety
/// `file` was opened by [`open`] as a WAL file and not closed.
unsafe fn wal<'a>(file: *mut ffi::sqlite3_file) -> (&'a mut WalFile, &'a ffi::sqlite3_io_methods) {
    let wal = &mut *file.cast::<WalFile>();
    let methods = &*(*wal.platform).pMethods;
    (wal, methods)
}

impl WalFile {
    /// Hands what is gathered to the platform's file: one write, or one per [`WRITE_BYTES_MAX`]
    /// piece (each ending on a block's boundary, so that no block is written in two parts).
    unsafe fn flush(&mut self, methods: &ffi::sqlite3_io_methods) -> c_int {
        self.commit_page_at = None;
        let Some(write) = methods.xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        let mut written = 0;
        let mut result = ffi::SQLITE_OK;
        while written < self.gathered.len() && result == ffi::SQLITE_OK {
            let at = self.start + written as i64;
            let left = self.gathered.len() - written;
            let piece = if left <= WRITE_BYTES_MAX {
                left
            } else {
                WRITE_BYTES_MAX - (at + WRITE_BYTES_MAX as i64).rem_euclid(BLOCK_BYTES) as usize
            };
            let bytes = &self.gathered[written..written + piece];
            result = write(self.platform, bytes.as_ptr().cast(), piece as c_int, at);
            written += piece;
        }
        // Held bytes are never written later than SQLite was told: a failed write fails its call.
        self.gathered.clear();
        result
    }

    fn end(&self) -> i64 {
        self.start + self.gathered.len() as i64
    }
}

unsafe extern "C" fn wal_write(file: *mut ffi::sqlite3_file, data: *const c_void, amount: c_int, offset: i64) -> c_int {
    let (wal, methods) = wal(file);
    let Ok(length) = usize::try_from(amount) else {
        return ffi::SQLITE_IOERR_WRITE;
    };
    let bytes = std::slice::from_raw_parts(data.cast::<u8>(), length);
    if !wal.gathered.is_empty() && offset != wal.end() {
        let flushed = wal.flush(methods);
        if flushed != ffi::SQLITE_OK {
            return flushed;
        }
    }
    let commit_page = wal.commit_page_at == Some(offset);
    let commit_header = amount == FRAME_HEADER_BYTES
        && offset >= WAL_HEADER_BYTES
        && bytes.get(4..8).is_some_and(|size| size != [0, 0, 0, 0]);
    if commit_header && wal.gathered.is_empty() {
        // No frames before it to join: written at once, and its page after it.
        let Some(write) = methods.xWrite else {
            return ffi::SQLITE_IOERR_WRITE;
        };
        wal.commit_page_at = Some(offset + i64::from(FRAME_HEADER_BYTES));
        return write(wal.platform, data, amount, offset);
    }
    if wal.gathered.is_empty() {
        wal.start = offset;
        if wal.gathered.capacity() == 0 {
            wal.gathered.reserve_exact(GATHERED_BYTES_MAX + FRAME_BYTES_MAX);
        }
    }
    wal.gathered.extend_from_slice(bytes);
    if commit_header {
        wal.commit_page_at = Some(offset + i64::from(FRAME_HEADER_BYTES));
        ffi::SQLITE_OK
    } else if commit_page || wal.gathered.len() >= GATHERED_BYTES_MAX {
        wal.flush(methods)
    } else {
        wal.commit_page_at = None;
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn wal_close(file: *mut ffi::sqlite3_file) -> c_int {
    let (wal, methods) = wal(file);
    let flushed = wal.flush(methods);
    let closed = match methods.xClose {
        Some(close) => close(wal.platform),
        None => ffi::SQLITE_OK,
    };
    std::ptr::drop_in_place(file.cast::<WalFile>());
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        closed
    }
}

/// A method of the WAL file that hands on what is gathered, then calls the platform's (or answers
/// `$missing` when the platform has none).
macro_rules! forwarded_after_flush {
    ($name:ident => $method:ident($($argument:ident: $type:ty),*) or $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($argument: $type),*) -> c_int {
            let (wal, methods) = wal(file);
            let flushed = wal.flush(methods);
            if flushed != ffi::SQLITE_OK {
                return flushed;
            }
            match methods.$method {
                Some(forward) => forward(wal.platform, $($argument),*),
                None => $missing,
            }
        }
    };
}

forwarded_after_flush!(wal_read => xRead(data: *mut c_void, amount: c_int, offset: i64) or ffi::SQLITE_IOERR_READ);
forwarded_after_flush!(wal_truncate => xTruncate(size: i64) or ffi::SQLITE_IOERR_TRUNCATE);
forwarded_after_flush!(wal_sync => xSync(flags: c_int) or ffi::SQLITE_IOERR_FSYNC);
forwarded_after_flush!(wal_file_size => xFileSize(size: *mut i64) or ffi::SQLITE_IOERR_FSTAT);
forwarded_after_flush!(wal_lock => xLock(level: c_int) or ffi::SQLITE_OK);
forwarded_after_flush!(wal_unlock => xUnlock(level: c_int) or ffi::SQLITE_OK);
forwarded_after_flush!(wal_check_reserved_lock => xCheckReservedLock(reserved: *mut c_int) or {
    *reserved = 0;
    ffi::SQLITE_OK
});
forwarded_after_flush!(wal_file_control => xFileControl(op: c_int, argument: *mut c_void) or ffi::SQLITE_NOTFOUND);

unsafe extern "C" fn wal_sector_size(file: *mut ffi::sqlite3_file) -> c_int {
    let (wal, methods) = wal(file);
    methods
        .xSectorSize
        .map_or(4096, |sector_size| sector_size(wal.platform))
}

unsafe extern "C" fn wal_device_characteristics(file: *mut ffi::sqlite3_file) -> c_int {
    let (wal, methods) = wal(file);
    methods
        .xDeviceCharacteristics
        .map_or(0, |characteristics| characteristics(wal.platform))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, OpenFlags};

    /// A copy of the database and its WAL as a crash right now would leave them (the page cache is
    /// the file's content), opened with the platform's VFS: its recovery keeps only frames whose
    /// checksums chain, up to the last whole commit.
    fn rows_after_a_crash(directory: &std::path::Path, database: &std::path::Path) -> i64 {
        let copy = directory.join(format!("copy-{}.db", rand::random::<u32>()));
        std::fs::copy(database, &copy).unwrap();
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        let mut wal_copy = copy.as_os_str().to_owned();
        wal_copy.push("-wal");
        std::fs::copy(&wal, &wal_copy).unwrap();
        Connection::open(&copy)
            .unwrap()
            .query_row("SELECT count(*) FROM items", [], |row| row.get(0))
            .unwrap()
    }

    fn opened(database: &std::path::Path) -> Connection {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE;
        let db = Connection::open_with_flags_and_vfs(database, flags, register().unwrap()).unwrap();
        db.execute_batch(
            "PRAGMA page_size = 2048; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             PRAGMA wal_autocheckpoint = 0; CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, body TEXT);",
        )
        .unwrap();
        db
    }

    fn insert(db: &Connection, rows: i64, body_bytes: usize) {
        let body = "x".repeat(body_bytes);
        db.execute_batch("BEGIN").unwrap();
        for _ in 0..rows {
            db.execute("INSERT INTO items (body) VALUES (?1)", [&body]).unwrap();
        }
        db.execute_batch("COMMIT").unwrap();
    }

    #[test]
    fn every_commit_is_in_the_wal_file_when_it_returns_whatever_its_size() {
        let directory = tempfile::tempdir().unwrap();
        let database = directory.path().join("commits.db");
        let db = opened(&database);
        let reader = Connection::open(&database).unwrap();
        let mut expected = 0;
        // One frame, a few, hundreds (more than one gathered piece), and again after a restart.
        for (rows, body_bytes) in [(1, 10), (3, 10), (40, 500), (3000, 1500), (1, 10)] {
            insert(&db, rows, body_bytes);
            expected += rows;
            assert_eq!(rows_after_a_crash(directory.path(), &database), expected);
            let seen: i64 = reader
                .query_row("SELECT count(*) FROM items", [], |row| row.get(0))
                .unwrap();
            assert_eq!(seen, expected, "another connection sees the commit at once");
        }
        db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        insert(&db, 5, 100);
        expected += 5;
        assert_eq!(rows_after_a_crash(directory.path(), &database), expected);
    }

    #[test]
    fn a_checkpoint_has_copied_every_page_into_the_database_file_when_it_returns() {
        let directory = tempfile::tempdir().unwrap();
        let database = directory.path().join("checkpoints.db");
        let db = opened(&database);
        let checkpointer = opened(&database);
        let mut expected = 0;
        for (rows, body_bytes) in [(500, 300), (2000, 1200), (30, 10)] {
            insert(&db, rows, body_bytes);
            expected += rows;
            // A reader's checkpoint beside the writer, as the store runs them.
            let (busy, _, copied): (i64, i64, i64) = checkpointer
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .unwrap();
            assert_eq!(busy, 0);
            assert!(copied > 0);
            // The database file alone, its WAL gone.
            let copy = directory.path().join(format!("alone-{expected}.db"));
            std::fs::copy(&database, &copy).unwrap();
            let alone: i64 = Connection::open(&copy)
                .unwrap()
                .query_row("SELECT count(*) FROM items", [], |row| row.get(0))
                .unwrap();
            assert_eq!(alone, expected);
        }
        let integrity: String = db.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
        assert_eq!(integrity, "ok");
    }

    #[test]
    fn a_transaction_that_spills_and_rewrites_its_frames_commits_whole() {
        let directory = tempfile::tempdir().unwrap();
        let database = directory.path().join("spills.db");
        let db = opened(&database);
        insert(&db, 200, 100);
        // A cache of a few pages spills frames before the commit, and pages changed again are
        // written over their own frames, after which SQLite rewrites the frames' checksums.
        db.execute_batch("PRAGMA cache_size = 10").unwrap();
        db.execute_batch("BEGIN").unwrap();
        for round in 0..4 {
            db.execute("UPDATE items SET body = ?1", [format!("{round}").repeat(120)])
                .unwrap();
            db.execute("INSERT INTO items (body) SELECT body FROM items LIMIT 50", [])
                .unwrap();
        }
        db.execute_batch("COMMIT").unwrap();
        assert_eq!(rows_after_a_crash(directory.path(), &database), 400);
        let rolled_back = {
            db.execute_batch("BEGIN").unwrap();
            db.execute("UPDATE items SET body = 'gone'", []).unwrap();
            db.execute_batch("ROLLBACK").unwrap();
            db.query_row("SELECT count(*) FROM items WHERE body = 'gone'", [], |row| {
                row.get::<_, i64>(0)
            })
            .unwrap()
        };
        assert_eq!(rolled_back, 0);
        insert(&db, 1, 10);
        assert_eq!(rows_after_a_crash(directory.path(), &database), 401);
    }
}
