-- Nothing to change on SQLite: its group writer reads a group's orders and their cancellations with
-- prepared statements on its own connection, no round trips. PostgreSQL's half of this migration reads
-- the cancellations in the statement that locks the orders (0019_cancellations_read_with_their_orders.postgres.sql).
SELECT 1;
