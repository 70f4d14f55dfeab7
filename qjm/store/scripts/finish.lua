-- Record a job set's final state, once: the first assembly to get here wins, and a later one (a
-- redelivery, or a re-sent chain's assembly racing it) changes nothing. Results stay where the
-- jobs wrote them, one value per job, so no value grows with the set.
--
-- KEYS[1]  the set's hash                          (keys.job_set)
-- ARGV[1]  the final status                        (lifecycle.JobSetStatus)
-- ARGV[2]  now, epoch seconds
-- ARGV[3]  the channel the final status is announced on (keys.final_channel)
--
-- Returns 1 if this call finished the set, 0 if it was final already.
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur or cur ~= 'RUNNING' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'finished', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 1
