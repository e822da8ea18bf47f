SELECT instance, host, pid FROM workers
WHERE renewed_at + make_interval(secs => lease_seconds) > now() AND instance IS DISTINCT FROM $1::uuid
