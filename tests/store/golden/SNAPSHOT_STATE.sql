SELECT step, codec, size_bytes, hash, state FROM snapshots WHERE execution_id = $1 AND name = $2
