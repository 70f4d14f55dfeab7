-- Record a job set's final state and combined result, once: the first assembly to get here wins,
-- and a later one (a redelivery, or a re-sent chain's assembly racing it) changes nothing. The
-- per-job results are then redundant and deleted, in the same step.
--
-- KEYS[1]  the set's hash                          (keys.job_set)
-- KEYS[2]  the combined result                     (keys.combined)
-- KEYS[3..] every job's result                     (keys.result)
-- ARGV[1]  the final status                        (lifecycle.JobSetStatus)
-- ARGV[2]  the combined result, JSON
-- ARGV[3]  its ttl, seconds
-- ARGV[4]  now, epoch seconds
-- ARGV[5]  the channel the final status is announced on (keys.final_channel)
--
-- Returns 1 if this call finished the set, 0 if it was final already.
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur or cur ~= 'RUNNING' then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EX', tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished', ARGV[4])
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('PUBLISH', ARGV[5], ARGV[1])
return 1
