-- Nothing to change on SQLite: its group writer reads levels and proofs with a prepared statement per
-- SKU and per order on its own connection. PostgreSQL's half of this migration reads them through one
-- function whose plans it keeps (0018_stock_and_proofs_function.postgres.sql).
SELECT 1;
