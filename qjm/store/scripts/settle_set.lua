-- End a job attempt's reservation in its set: its reserved seconds are given back and, when the
-- attempt ran, what the service charged for it is counted (once: the charge is kept per attempt
-- on the job, so a second settlement of the same attempt changes nothing).
--
-- KEYS[1]  the set's hash                          (keys.job_set)
-- KEYS[2]  the job's hash                          (keys.job)
-- ARGV[1]  the attempt
-- ARGV[2]  its charge in seconds, or '' when the attempt never ran (nothing is counted)
-- ARGV[3]  the backend it ran on                   (qpu_consumed@<backend> counts per backend)
--
-- Returns 1 if this call changed anything, 0 otherwise.
local changed = 0
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local held = redis.call('HMGET', KEYS[2], 'reserved_attempt', 'reserved')
if held[1] == ARGV[1] then
  redis.call('HINCRBYFLOAT', KEYS[1], 'qpu_reserved', -tonumber(held[2] or '0'))
  redis.call('HDEL', KEYS[2], 'reserved_attempt', 'reserved')
  changed = 1
end
if ARGV[2] ~= '' and redis.call('HSETNX', KEYS[2], 'charged:' .. ARGV[1], ARGV[2]) == 1 then
  redis.call('HINCRBYFLOAT', KEYS[1], 'qpu_consumed', ARGV[2])
  redis.call('HINCRBYFLOAT', KEYS[1], 'qpu_consumed@' .. ARGV[3], ARGV[2])
  changed = 1
end
return changed
