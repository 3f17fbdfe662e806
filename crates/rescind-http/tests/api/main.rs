//! API tests: the real server on port 0 against a fresh database, every test on SQLite and, when
//! `RESCIND_TEST_DATABASE_URL` is set, again on PostgreSQL (each in a schema of its own).

mod helpers;

mod inventory;

mod access;
mod cancel;
mod channel_rules;
mod channels;
mod console;
mod events;
mod operations;
mod orders;
mod partial;
mod payments;
mod properties;
mod refunds;
mod requests;
mod security;
mod stock_push;
mod warehouses;
