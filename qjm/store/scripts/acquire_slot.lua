-- Take one of a backend's pending-job slots for a job, if one is free.
-- Leases that ran out (a holder that died) are reclaimed first; a job that holds a slot keeps it.
--
-- KEYS[1]  the backend's slot hash                (keys.slots)
-- KEYS[2]  the backend's waiting set              (keys.waiting)
-- ARGV[1]  the job's ref                          (keys.job_ref)
-- ARGV[2]  the number of slots                    (QJM_MAX_PENDING_JOBS)
-- ARGV[3]  the lease's expiry, epoch seconds
-- ARGV[4]  now, epoch seconds
--
-- Returns 1 when the job holds a slot (and no longer waits), 0 otherwise.
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) < tonumber(ARGV[4]) and all[i] ~= ARGV[1] then redis.call('HDEL', KEYS[1], all[i]) end
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 or redis.call('HLEN', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return 0
