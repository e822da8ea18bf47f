-- A large current state may be stored as a zstd delta against the checkpoint at state_base_step
-- (see backends/pg_delta.py): save() of a growing state then rewrites a small row, not the whole
-- state. NULL: executions.state is the whole state (or NULL, see postgres_sql.py).
ALTER TABLE executions ADD COLUMN state_base_step bigint;

-- save() rewrites the execution row on every step: vacuum the table and its TOAST table after a few
-- hundred dead versions, not after 20% of the table, so states stored whole are reclaimed soon.
ALTER TABLE executions SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 200,
    toast.autovacuum_vacuum_scale_factor = 0.01,
    toast.autovacuum_vacuum_threshold = 200
);
