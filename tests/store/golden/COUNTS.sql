SELECT count(*) AS total,
       count(*) FILTER (WHERE status IN ('pending', 'running', 'recovering')) AS active,
       (SELECT count(*) FROM checkpoints)
     + (SELECT count(*) FROM events WHERE kind = 'checkpoint') AS checkpoints,
       (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('checkpoints'))
     + (SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree('events'))
     + pg_total_relation_size('executions') + pg_total_relation_size('snapshots') AS bytes
FROM executions
