-- Nothing to change on SQLite, which stores text as it is given. PostgreSQL's half of this migration
-- compresses stored responses with LZ4 instead of pglz (0021_stored_responses_compressed_with_lz4.postgres.sql).
SELECT 1;
