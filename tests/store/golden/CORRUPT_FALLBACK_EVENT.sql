INSERT INTO events (execution_id, execution_created_at, kind, step, attempt, detail)
SELECT id, created_at, 'corrupt_fallback', $3::bigint, attempt,
       jsonb_build_object('bad_step', $2::bigint, 'used_step', $3::bigint)
FROM executions WHERE id = $1
