-- Nothing to change on SQLite: its group writer reads levels and proofs with prepared statements on
-- its own connection, no round trips. PostgreSQL's half of this migration reads them in the statement
-- that locks a group's orders (0020_stock_read_with_the_orders.postgres.sql).
SELECT 1;
