-- Record the step a job waits for next, unless a newer plan replaced the one the caller performed
-- (a stale redelivery must not move a job's liveness record backwards).
--
-- KEYS[1]  the job's hash                          (keys.job)
-- ARGV[1]  the step the caller just performed; the plan is made only if the job still waits
--          for it ('' to plan regardless)
-- ARGV[2]  the next step                           (lifecycle.Step)
-- ARGV[3]  its queue
-- ARGV[4]  its ticket in that queue, 0 when it is due at a time
-- ARGV[5]  now, epoch seconds
-- ARGV[6]  when it is due, epoch seconds, or '' when sent now
--
-- Returns 1 when the plan was recorded, 0 otherwise.
local cur = redis.call('HGET', KEYS[1], 'step')
if not cur then return 0 end  -- no such job (a job always has the field, '' when final)
if ARGV[1] ~= '' and cur ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'step', ARGV[2], 'queue', ARGV[3], 'ticket', ARGV[4], 'step_at', ARGV[5],
           'due', ARGV[6], 'startable_at', '')
return 1
