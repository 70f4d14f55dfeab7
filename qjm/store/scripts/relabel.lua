-- Change a job set's name and/or tags, only if the set still exists (a deleted or expired set
-- must not come back as a partial hash without a TTL).
--
-- KEYS[1]  the set's hash                          (keys.job_set)
-- ARGV[1..] field, value pairs: name and/or tags (JSON list)
--
-- Returns 1 if the set was changed, 0 if it does not exist.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
