-- The deadline scan pages through due rows by (due_at_ms, pid), so rows of entities that are
-- already running (their timers armed) never hide later ones.
DROP INDEX deadlines_due;
CREATE INDEX deadlines_due ON deadlines (due_at_ms, pid);
