-- A history checkpoint of a running execution at a new highest step is written without touching
-- its executions row: one INSERT, the row only share-locked as the attempt fence (postgres_sql.py,
-- FAST). Such rows are marked fast; readers fold the highest-step checkpoint into the execution
-- (current and last checkpoint step, liveness) when it is fast and newer than the row's state_seq,
-- the events_seq value every other write of the row's state takes.

ALTER TABLE checkpoints ADD COLUMN fast boolean NOT NULL DEFAULT false;

ALTER TABLE executions ADD COLUMN state_seq bigint;
UPDATE executions SET state_seq = nextval('events_seq');
ALTER TABLE executions ALTER COLUMN state_seq SET DEFAULT nextval('events_seq');
ALTER TABLE executions ALTER COLUMN state_seq SET NOT NULL;

-- Counted from the audit trail instead (every checkpoint ever made has exactly one audit row).
ALTER TABLE executions DROP COLUMN checkpoint_count;
