-- Every text column compared byte by byte (`COLLATE "C"`), as SQLite compares text (its `BINARY`
-- collation). rescind's text keys are identifiers — ids, SKUs, statuses, channel order numbers — whose
-- order means nothing in any language; only ids and SKUs are ever sorted (lists, cursors, lock order).
-- Under the database's own collation every comparison in a B-tree of text (each key of each index
-- insert and look-up) went through the C library's or ICU's `strcoll` on copies of both strings:
-- about 5.7 % of the group writer's backend in a card cancellation's workflow on a `C.UTF-8` database,
-- more under a language's collation (BENCHMARKS.md, twenty-ninth session). Byte by byte, the two
-- backends now also sort ids and SKUs alike.
--
-- A column cannot change its collation under a trigger's condition that names it: the triggers with a
-- condition (those of 0016 that check a row moved to another order) go, and come back as they were
-- defined. Each table's columns change in one statement, so its indexes are rebuilt once (its rows are
-- not rewritten: the type stays `text`).
DO $$
DECLARE
    conditional RECORD;
    definitions TEXT[] := ARRAY[]::TEXT[];
    definition TEXT;
    changed RECORD;
BEGIN
    FOR conditional IN
        SELECT t.tgname, c.relname, pg_get_triggerdef(t.oid) AS definition
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE NOT t.tgisinternal AND t.tgqual IS NOT NULL AND c.relnamespace = current_schema()::regnamespace
        ORDER BY c.relname, t.tgname
    LOOP
        definitions := definitions || conditional.definition;
        EXECUTE format('DROP TRIGGER %I ON %I', conditional.tgname, conditional.relname);
    END LOOP;
    FOR changed IN
        SELECT c.table_name,
            string_agg(format('ALTER COLUMN %I TYPE text COLLATE "C"', c.column_name), ', ' ORDER BY c.ordinal_position)
                AS alterations
        FROM information_schema.columns c
        JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
        WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' AND c.data_type = 'text'
            AND c.collation_name IS DISTINCT FROM 'C'
        GROUP BY c.table_name
        ORDER BY c.table_name
    LOOP
        EXECUTE format('ALTER TABLE %I %s', changed.table_name, changed.alterations);
    END LOOP;
    FOREACH definition IN ARRAY definitions
    LOOP
        EXECUTE definition;
    END LOOP;
END
$$;
