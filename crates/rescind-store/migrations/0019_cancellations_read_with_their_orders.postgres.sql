-- The current cancellations of orders the caller has just locked, read with a snapshot taken now.
-- PostgreSQL's group writer reads a group's orders `FOR UPDATE` and then their cancellations; in a
-- statement of their own, that was a round trip, a bind and a plan per group (about 0.14 ms of
-- PostgreSQL's and a round trip's wait in a card cancellation's workflow, BENCHMARKS.md, thirtieth
-- session). Joined to the orders in the locking statement, a cancellation could be older than its
-- order: an order row locked after waiting for another transaction is re-read at its newest version,
-- a joined row of a table not locked is the one the statement first saw. Called from the locking
-- statement once every order is locked (its argument reads them all first), this function's query
-- runs with a snapshot of its own (a VOLATILE function's statements each take one under READ
-- COMMITTED), so it sees what the transactions it waited for committed — as the separate statement
-- did. Sequential scans are off for it, as for 0018's function: a plan kept from while the table was
-- small must not read it whole.
CREATE FUNCTION rescind_cancellations_now(ids TEXT[]) RETURNS SETOF cancellations
LANGUAGE plpgsql VOLATILE SET enable_seqscan = off SET search_path FROM CURRENT AS $$
BEGIN
    RETURN QUERY SELECT * FROM cancellations c WHERE c.id = ANY (ids);
END
$$;
