-- A live checkpoint row is its own audit row (seq, step, time, size, hash, attempt): a checkpoint
-- then costs one history row instead of two. Retention pruning, step rewrites and restores move
-- that audit row into events before removing or replacing the checkpoint (see postgres_sql.py).
-- One sequence (events_seq) orders the whole trail; get_audit reads both tables by seq.

ALTER TABLE checkpoints ADD COLUMN seq bigint;

-- Rows written before this migration: adopt the seq of their newest checkpoint event, then drop
-- that event (the live row now carries it).
UPDATE checkpoints c SET seq = e.seq
FROM (
    SELECT execution_id, execution_created_at, step, max(seq) AS seq
    FROM events WHERE kind = 'checkpoint'
    GROUP BY execution_id, execution_created_at, step
) e
WHERE e.execution_id = c.execution_id AND e.execution_created_at = c.execution_created_at AND e.step = c.step;

DELETE FROM events e USING checkpoints c
WHERE e.kind = 'checkpoint' AND e.execution_id = c.execution_id
  AND e.execution_created_at = c.execution_created_at AND e.seq = c.seq;

UPDATE checkpoints SET seq = nextval('events_seq') WHERE seq IS NULL;
ALTER TABLE checkpoints ALTER COLUMN seq SET DEFAULT nextval('events_seq');
ALTER TABLE checkpoints ALTER COLUMN seq SET NOT NULL;

-- Raised by a batch write that met a checkpoint step created concurrently after its snapshot; the
-- SDK re-runs the statement (it sees the step then). A unique violation, as a plain INSERT raises.
CREATE FUNCTION strata_step_raced() RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'unique_violation',
        MESSAGE = 'a checkpoint step was written concurrently; retry the statement';
END
$$;
