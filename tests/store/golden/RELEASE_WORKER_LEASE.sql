DELETE FROM workers WHERE worker_id = $1 AND instance = $2::uuid
