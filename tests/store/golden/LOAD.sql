SELECT step, attempt, state, codec, hash, delta_base, delta_base_codec
FROM current_states WHERE execution_id = $1
