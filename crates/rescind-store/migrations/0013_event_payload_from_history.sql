-- An outbox event stored its payload (B4): its order's id, number and channel order id, the order's
-- status then, and its history line's actor, message and data — the line repeated, four times for a
-- cancellation, written by the one SQLite writer inside every change (a fifth of its time on the
-- events; BENCHMARKS.md, eighteenth session). An event now names its history line instead: the
-- history row's number (`change_id`), the line's place in it (`line_index`) and the order's status
-- when it happened (`order_status`, which the order's row does not keep); its payload is built from
-- them when it is read or delivered, and stored as the empty text. Events written before keep the
-- payload they stored.
ALTER TABLE outbox_events ADD COLUMN change_id BIGINT;
ALTER TABLE outbox_events ADD COLUMN line_index BIGINT;
ALTER TABLE outbox_events ADD COLUMN order_status TEXT;
