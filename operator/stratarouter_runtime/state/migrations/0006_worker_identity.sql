-- Worker identity (state/worker.py): a run records the worker id and the instance of the manager that
-- started or claimed it, so a restarted worker (same id, new instance) claims its own runs at once, and
-- no worker claims a run whose instance still holds its lease.
ALTER TABLE executions ADD COLUMN worker_id text, ADD COLUMN worker_instance uuid;

-- A restarted worker's claim looks up the active runs of its id.
CREATE INDEX executions_active_worker_idx ON executions (worker_id)
    WHERE status IN ('running', 'recovering');

-- One lease per worker id: the instance holding it, where it runs (to tell a dead process on this
-- host at once), and until when it holds without a renewal.
CREATE TABLE workers (
    worker_id     text PRIMARY KEY,
    instance      uuid NOT NULL,
    host          text NOT NULL,
    pid           integer NOT NULL,
    lease_seconds double precision NOT NULL,
    renewed_at    timestamptz NOT NULL DEFAULT now()
);
