-- A stored response (B3) is the whole answer to a keyed request — a cancelled order's body is about
-- 2.5 KB — and PostgreSQL compresses a row's text past about 2 KB before it writes the row. With its
-- default method, pglz, compressing the responses of a batch of keys took half of the statement that
-- stores them (42 µs a key): own-store cancellations with a key each ran 3 916–4 097/s against
-- 4 319–4 636/s with LZ4, PostgreSQL's CPU 207–215 against 184–192 µs per cancellation, in alternating
-- runs (BENCHMARKS.md, thirty-second session). LZ4 compresses these bodies about as small, several times
-- faster. Rows stored before keep their method (each value names its own); a server built without LZ4
-- keeps pglz.
DO $$
BEGIN
    ALTER TABLE idempotency_keys ALTER COLUMN response_body SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'this server has no LZ4: stored responses stay compressed with pglz';
END
$$;
