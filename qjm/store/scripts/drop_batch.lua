-- Forget a set's batch that the service closed, so the next post opens a new one; only if it is
-- still the set's batch (another worker may have replaced it already).
--
-- KEYS[1]  the set's hash                          (keys.job_set)
-- ARGV[1]  the id of the batch that is closed
-- ARGV[2]  the set's field of that batch             (records.batch_field)
--
-- Returns 1 if the batch was forgotten, 0 if the set had another one.
if redis.call('HGET', KEYS[1], ARGV[2]) == ARGV[1] then
  redis.call('HDEL', KEYS[1], ARGV[2])
  return 1
end
return 0
