-- Reopen a final job set for a re-run of its failed jobs (qjm.client.rerun): it reads RUNNING again at
-- once, its cancel flag and batch are forgotten (the next post opens a new batch), and its
-- combined result goes (the per-job results of its DONE jobs were restored first). The
-- assembly is marked as just sent, so a reconciler tick racing the re-run waits a grace period
-- before it could assemble the set with its old outcomes.
--
-- KEYS[1]  the set's hash                          (keys.job_set)
-- KEYS[2]  the combined result                     (keys.combined)
-- ARGV[1]  now, epoch seconds
--
-- Returns 1 if this call reopened the set, 0 if it was not final, false if it does not exist.
local cur = redis.call('HGET', KEYS[1], 'status')
if not cur then return false end
if cur == 'RUNNING' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'RUNNING', 'assemble_sent_at', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'reruns', 1)
redis.call('HDEL', KEYS[1], 'cancel_requested', 'finished', 'batch_id', 'batch_closed')
redis.call('DEL', KEYS[2])
return 1
