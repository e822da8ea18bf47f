SELECT attempt FROM executions WHERE id = $1
