-- The store's schema. Executions carry their current state (one row each: save() is an upsert),
-- checkpoints hold history, snapshots are named copies, events is the audit trail.
-- checkpoints and events are range-partitioned on the execution's creation time (a DEFAULT
-- partition takes every row until monthly partitions are created by enable_partitioning).

CREATE TABLE executions (
    id                   text PRIMARY KEY,
    status               text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'running', 'recovering', 'completed', 'failed', 'cancelled')),
    attempt              integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    current_step         bigint,
    last_checkpoint_step bigint,
    checkpoint_retention integer CHECK (checkpoint_retention >= 1),
    checkpoint_count     bigint NOT NULL DEFAULT 0,
    labels               jsonb,
    error                text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    finished_at          timestamptz,
    state_codec          text,
    state_size           integer,
    state_hash           bytea,
    state                bytea
) WITH (fillfactor = 80);  -- room for HOT updates: every save() rewrites the row

CREATE INDEX executions_status_created_idx ON executions (status, created_at);
CREATE INDEX executions_created_idx ON executions (created_at);
CREATE INDEX executions_finished_idx ON executions (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE checkpoints (
    execution_id         text NOT NULL,
    execution_created_at timestamptz NOT NULL,
    step                 bigint NOT NULL,
    attempt              integer NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    codec                text NOT NULL,
    size_bytes           integer NOT NULL,
    hash                 bytea NOT NULL,
    state                bytea NOT NULL,
    PRIMARY KEY (execution_id, step, execution_created_at)
) PARTITION BY RANGE (execution_created_at);
CREATE TABLE checkpoints_default PARTITION OF checkpoints DEFAULT;

CREATE SEQUENCE events_seq;
CREATE TABLE events (
    execution_id         text NOT NULL,
    execution_created_at timestamptz NOT NULL,
    seq                  bigint NOT NULL DEFAULT nextval('events_seq'),
    kind                 text NOT NULL,
    step                 bigint,
    attempt              integer,
    at                   timestamptz NOT NULL DEFAULT now(),
    size_bytes           integer,
    hash                 bytea,
    detail               jsonb,
    PRIMARY KEY (execution_id, seq, execution_created_at)
) PARTITION BY RANGE (execution_created_at);
CREATE TABLE events_default PARTITION OF events DEFAULT;

CREATE TABLE snapshots (
    execution_id text NOT NULL,
    name         text NOT NULL,
    step         bigint NOT NULL,
    attempt      integer NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    codec        text NOT NULL,
    size_bytes   integer NOT NULL,
    hash         bytea NOT NULL,
    state        bytea NOT NULL,
    PRIMARY KEY (execution_id, name)
);

-- Raised by a fenced write (SQLSTATE SR001); the SDK turns it into StaleAttemptError.
CREATE FUNCTION strata_stale_attempt(p_id text, p_attempt integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    current_attempt integer;
BEGIN
    SELECT attempt INTO current_attempt FROM executions WHERE id = p_id;
    RAISE EXCEPTION USING
        ERRCODE = 'SR001',
        MESSAGE = format('write to execution %s refused: attempt %s is stale, the current attempt is %s',
                         p_id, p_attempt, current_attempt),
        DETAIL = coalesce(current_attempt::text, '');
END
$$;
