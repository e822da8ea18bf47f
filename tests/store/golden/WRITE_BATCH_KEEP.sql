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
), h AS (
    SELECT h.*, ex.created_at, ex.attempt, ex.keep, nextval('events_seq') AS seq
    FROM unnest($9::text[], $10::bigint[], $11::bytea[], $12::text[], $13::int[], $14::bytea[])
         WITH ORDINALITY AS h(id, step, state, codec, size, hash, ord)
    JOIN ex ON ex.id = h.id
    ORDER BY h.ord
), newest AS (
    SELECT DISTINCT ON (id, step) * FROM h ORDER BY id, step, ord DESC
), superseded AS (
    INSERT INTO events (execution_id, execution_created_at, seq, kind, step, attempt, at, size_bytes, hash)
    SELECT h.id, h.created_at, h.seq, 'checkpoint', h.step, h.attempt, now(), h.size, h.hash
    FROM h WHERE NOT EXISTS (SELECT 1 FROM newest n WHERE n.ord = h.ord)
), superseded_stored AS (
    INSERT INTO events (execution_id, execution_created_at, seq, kind, step, attempt, at, size_bytes, hash)
    SELECT c.execution_id, c.execution_created_at, c.seq, 'checkpoint', c.step, c.attempt, c.created_at,
           c.size_bytes, c.hash
    FROM newest n JOIN checkpoints c
      ON c.execution_id = n.id AND c.execution_created_at = n.created_at AND c.step = n.step
    FOR UPDATE OF c  -- the latest version, so concurrent rewriters never copy the same audit row
    RETURNING execution_id, step, seq
), cp AS (
    INSERT INTO checkpoints AS c (execution_id, execution_created_at, step, attempt,
                                  codec, size_bytes, hash, state, seq)
    SELECT n.id, n.created_at, n.step, n.attempt, n.codec, n.size, n.hash, n.state, n.seq FROM newest n
    ON CONFLICT (execution_id, step, execution_created_at) DO UPDATE SET
        attempt = EXCLUDED.attempt, created_at = now(), codec = EXCLUDED.codec,
        size_bytes = EXCLUDED.size_bytes, hash = EXCLUDED.hash, state = EXCLUDED.state, seq = EXCLUDED.seq
    WHERE EXISTS (SELECT 1 FROM superseded_stored o
                  WHERE o.execution_id = c.execution_id AND o.step = c.step AND o.seq = c.seq)
    RETURNING 1
), pruned AS (
    DELETE FROM checkpoints c
    USING newest n, strata_steps_beyond_retention(n.id, n.created_at, n.step, n.keep) b(step)
    WHERE c.execution_id = n.id AND c.execution_created_at = n.created_at AND c.step = b.step
    RETURNING c.*
), pruned_audit AS (
    INSERT INTO events (execution_id, execution_created_at, seq, kind, step, attempt, at, size_bytes, hash)
    SELECT execution_id, execution_created_at, seq, 'checkpoint', step, attempt, created_at, size_bytes, hash
    FROM pruned
)
SELECT id FROM ex WHERE keep IS NOT NULL
UNION ALL
SELECT strata_stale_attempt(i.id, i.attempt)::text FROM i
WHERE NOT EXISTS (SELECT 1 FROM ex WHERE ex.id = i.id)
UNION ALL
SELECT strata_step_raced()::text WHERE (SELECT count(*) FROM cp) < (SELECT count(*) FROM newest)
