-- Nothing to change on SQLite: it compares text byte by byte already (its `BINARY` collation).
-- PostgreSQL's half of this migration makes every text column compare so too
-- (0017_text_compared_bytewise.postgres.sql).
SELECT 1;
