-- The index by warehouse outbound id held every order, most of them with no outbound (own-store
-- orders, orders not yet sent to a warehouse): and since every change of an order writes its
-- warehouse and outbound id back (the group's upsert), every cancellation took its entry out and put
-- it back, a page of the index written at a random place (0.37 of the eight pages a cancellation
-- writes at full load; BENCHMARKS.md, fifteenth session). It holds only the orders that have an
-- outbound id now; the one read that uses it asks for an outbound id by value, which implies one.
DROP INDEX orders_by_outbound;
CREATE INDEX orders_by_outbound ON orders (warehouse_id, outbound_external_id) WHERE outbound_external_id IS NOT NULL;
