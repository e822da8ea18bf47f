SELECT count(*) FROM executions
WHERE created_at >= $1 AND created_at < $2
  AND NOT (status = ANY($3::text[]) AND finished_at IS NOT NULL AND finished_at < $4)
