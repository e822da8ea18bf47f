SELECT id, status, attempt, current_step, last_checkpoint_step, created_at, updated_at, finished_at, error, labels, checkpoint_retention FROM executions
