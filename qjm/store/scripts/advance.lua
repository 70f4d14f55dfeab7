-- Move a job forward in its lifecycle (qjm.lifecycle); a final status never changes.
-- Ranks come from Python, so a new status needs no change here.
--
-- KEYS[1]  the job's hash                         (keys.job)
-- KEYS[2]  the blob written with the status       (keys.result or keys.isa), used when ARGV[5] ~= ''
-- KEYS[3]  the set's hash                          (keys.job_set): counts down its jobs_left
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
-- Returns {status afterwards, 1 if this call moved the job else 0, 1 if this move made the set's
-- last job final else 0}: a job that is final, further along, or already in that status stays as
-- it is. A job becomes final once, so the count of jobs left is exact and the last move is told
-- to exactly one caller (who sends the set's assembly). False if the job does not exist.
local h = redis.call('HMGET', KEYS[1], 'status', 'rank')
local cur = h[1]
if not cur then return false end
local cur_rank, new_rank, final_rank = tonumber(h[2] or '0'), tonumber(ARGV[2]), tonumber(ARGV[3])
if cur_rank >= final_rank or new_rank <= cur_rank then return {cur, 0, 0} end
local fields = {'status', ARGV[1], 'rank', ARGV[2], 'updated', ARGV[6], 'at_' .. ARGV[1], ARGV[6]}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
-- A final job waits for no step (see qjm.store.steps).
if new_rank >= final_rank then fields[#fields + 1] = 'step'; fields[#fields + 1] = '' end
redis.call('HSET', KEYS[1], unpack(fields))
if ARGV[5] ~= '' then redis.call('SET', KEYS[2], ARGV[5], 'EX', tonumber(ARGV[4])) end
local last = 0
if new_rank >= final_rank then
  if redis.call('HINCRBY', KEYS[3], 'jobs_left', -1) == 0 then last = 1 end
end
return {ARGV[1], 1, last}
