INSERT INTO workers AS w (worker_id, instance, host, pid, lease_seconds)
VALUES ($1, $2::uuid, $3, $4::int, $5::float8)
ON CONFLICT (worker_id) DO UPDATE SET
    instance = EXCLUDED.instance, host = EXCLUDED.host, pid = EXCLUDED.pid,
    lease_seconds = EXCLUDED.lease_seconds, renewed_at = now()
WHERE w.instance IN ($2::uuid, $6::uuid)
RETURNING instance
