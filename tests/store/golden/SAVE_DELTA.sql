WITH base AS (
    SELECT 1 FROM executions e
    JOIN checkpoints c ON c.execution_id = e.id AND c.execution_created_at = e.created_at
    WHERE e.id = $1 AND c.step = $8::bigint AND c.hash = $9::bytea
    FOR SHARE OF c
), ex AS (
    UPDATE executions e SET
        status = strata_status_after_write(e.status),
        attempt = greatest(e.attempt, coalesce($3::int, 1)),
        current_step = $2::bigint,
        state = $4::bytea,
        state_codec = $5::text,
        state_size = $6::int,
        state_hash = $7::bytea,
        state_base_step = $8::bigint,
        updated_at = now()
    WHERE e.id = $1 AND strata_admits(e.attempt, $3::int) AND EXISTS (SELECT 1 FROM base)
    RETURNING 1
)
SELECT count(*) FROM ex
