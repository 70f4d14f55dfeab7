-- Extend a held slot's lease; never re-creates a slot that was released.
--
-- KEYS[1]  the backend's slot hash                (keys.slots)
-- ARGV[1]  the job's ref                          (keys.job_ref)
-- ARGV[2]  the lease's new expiry, epoch seconds
--
-- Returns 1 if the job held the slot, 0 if it did not.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
