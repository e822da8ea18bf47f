SELECT instance, host, pid, renewed_at + make_interval(secs => lease_seconds) > now() AS unexpired
FROM workers WHERE worker_id = $1
