-- Move a job forward in its lifecycle (qjm.lifecycle); a final status never changes.
-- Ranks come from Python, so a new status needs no change here.
--
-- KEYS[1]  the job's hash                         (keys.job)
-- KEYS[2]  the blob written with the status       (keys.result or keys.isa), used when ARGV[5] ~= ''
-- ARGV[1]  the new status
-- ARGV[2]  its rank                               (JobStatus.rank)
-- ARGV[3]  the rank of every final status         (lifecycle.FINAL_RANK)
-- ARGV[4]  ttl of the blob, seconds
-- ARGV[5]  the blob, or ''
-- ARGV[6]  now, epoch seconds
-- ARGV[7..] field, value pairs recorded with the status
--
-- The time of the move is kept as field at_<status> (ManagedJob.time_per_step).
--
-- Returns {status afterwards, 1 if this call moved the job else 0}: a job that is final, further
-- along, or already in that status stays as it is. False if the job does not exist.
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return false end
local cur_rank = tonumber(redis.call('HGET', KEYS[1], 'rank') or '0')
local new_rank = tonumber(ARGV[2])
if cur_rank >= tonumber(ARGV[3]) or new_rank <= cur_rank then return {cur, 0} end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'rank', ARGV[2], 'updated', ARGV[6], 'at_' .. ARGV[1], ARGV[6])
for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
-- A final job waits for no step (see qjm.store.steps).
if new_rank >= tonumber(ARGV[3]) then redis.call('HSET', KEYS[1], 'step', '') end
if ARGV[5] ~= '' then redis.call('SET', KEYS[2], ARGV[5], 'EX', tonumber(ARGV[4])) end
return {ARGV[1], 1}
