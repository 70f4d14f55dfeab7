-- A task begins a job's step: record it, if the job still waits for that step (and, for a poll,
-- the task belongs to the job's current poll loop). A stale redelivery records nothing.
--
-- KEYS[1]  the job's hash                          (keys.job)
-- ARGV[1]  the step the task performs              (lifecycle.Step)
-- ARGV[2]  the poll epoch the task carries, or '' for steps other than poll
-- ARGV[3]  now, epoch seconds
-- ARGV[4]  the worker node running the task
--
-- Returns {ticket, queue} of the step when recorded, false otherwise.
local h = redis.call('HMGET', KEYS[1], 'step', 'poll_epoch', 'ticket', 'queue')
if h[1] ~= ARGV[1] then return false end
if ARGV[2] ~= '' and (h[2] or '0') ~= ARGV[2] then return false end
redis.call('HSET', KEYS[1], 'started_at', ARGV[3], 'started_by', ARGV[4], 'startable_at', '')
return {h[3] or '0', h[4] or ''}
