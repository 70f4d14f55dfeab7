-- A task begins a job's step and moves the job to the status that step shows (TRANSPILING for a
-- transpile), in one step: ``step_started.lua`` plus the move and the reads the task needs first.
-- A stale redelivery (the job waits for another step) records nothing.
--
-- KEYS[1]  the job's hash                          (keys.job)
-- KEYS[2]  the set's hash                          (keys.job_set)
-- KEYS[3]  the job's circuits                      (keys.circuits): returned, so the task reads
--          them in the same round trip
-- ARGV[1]  the step the task performs              (lifecycle.Step)
-- ARGV[2]  now, epoch seconds
-- ARGV[3]  the worker node running the task
-- ARGV[4]  the status the job moves to, unless it is that far already or final
-- ARGV[5]  its rank                                (JobStatus.rank)
-- ARGV[6]  the rank of every final status          (lifecycle.FINAL_RANK)
--
-- The time of the move is kept as field at_<status>, as advance.lua does (ManagedJob.time_per_step).
--
-- Returns {job hash before the move as a flat list, 1 if moved else 0, the set's cancel_requested,
-- the job's circuits or ''} when recorded, false otherwise.
local flat = redis.call('HGETALL', KEYS[1])
local h = {}
for i = 1, #flat, 2 do h[flat[i]] = flat[i + 1] end
if h['step'] ~= ARGV[1] then return false end
local fields = {'started_at', ARGV[2], 'started_by', ARGV[3], 'startable_at', ''}
local rank, moved = tonumber(h['rank'] or '0'), 0
if rank < tonumber(ARGV[5]) and rank < tonumber(ARGV[6]) then
  for _, v in ipairs({'status', ARGV[4], 'rank', ARGV[5], 'updated', ARGV[2], 'at_' .. ARGV[4], ARGV[2]}) do
    fields[#fields + 1] = v
  end
  moved = 1
end
redis.call('HSET', KEYS[1], unpack(fields))
return {flat, moved, redis.call('HGET', KEYS[2], 'cancel_requested') or '', redis.call('GET', KEYS[3]) or ''}
