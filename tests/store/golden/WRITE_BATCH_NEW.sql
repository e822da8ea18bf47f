WITH i AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::int[], $4::bytea[], $5::text[], $6::int[], $7::bytea[],
                         $8::bigint[], $16::bool[])
        AS i(id, step, attempt, state, codec, size, hash, hist_step, must_exist)
), ex AS (
    INSERT INTO executions AS e (id, status, attempt, current_step, last_checkpoint_step,
                                 state, state_codec, state_size, state_hash)
    SELECT id, 'running', coalesce(attempt, 1), step, hist_step, state, codec, size, hash FROM i
    WHERE NOT i.must_exist OR EXISTS (SELECT 1 FROM executions x WHERE x.id = i.id FOR KEY SHARE)
    ON CONFLICT (id) DO UPDATE SET
        status = strata_status_after_write(e.status),
        attempt = greatest(e.attempt, EXCLUDED.attempt),
        current_step = EXCLUDED.current_step,
        last_checkpoint_step = coalesce(EXCLUDED.last_checkpoint_step, e.last_checkpoint_step),
        state = EXCLUDED.state,
        state_codec = EXCLUDED.state_codec,
        state_size = EXCLUDED.state_size,
        state_hash = EXCLUDED.state_hash,
        state_base_step = NULL,
        updated_at = now()
    WHERE strata_admits(e.attempt, (SELECT i.attempt FROM i WHERE i.id = e.id))
    RETURNING e.id, e.created_at, e.attempt, coalesce(e.checkpoint_retention, $15::int) AS keep
), cp AS (
    -- distinct new steps and no retention (the caller checks); a step that exists already raises a
    -- unique violation (nothing written) and the backend sends WRITE_BATCH instead
    INSERT INTO checkpoints (execution_id, execution_created_at, step, attempt, codec, size_bytes, hash, state)
    SELECT h.id, ex.created_at, h.step, ex.attempt, h.codec, h.size, h.hash, h.state
    FROM unnest($9::text[], $10::bigint[], $11::bytea[], $12::text[], $13::int[], $14::bytea[])
         WITH ORDINALITY AS h(id, step, state, codec, size, hash, ord)
    JOIN ex ON ex.id = h.id
    ORDER BY h.ord
)
SELECT id FROM ex WHERE keep IS NOT NULL
UNION ALL
SELECT strata_stale_attempt(i.id, i.attempt)::text FROM i
WHERE NOT EXISTS (SELECT 1 FROM ex WHERE ex.id = i.id)
