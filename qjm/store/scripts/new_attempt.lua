-- Start a job's next attempt: the previous one ended without running for a reason of the
-- service's (its batch ended), failed in a way the service calls transient (an automatic retry),
-- or a user re-runs it. The job goes back to the given status with no remote job; the previous
-- attempt, with when it reached each status (the at_<status> fields), is kept in its history.
-- Only one caller per attempt wins. A final job (a user's cancel of the job or of its set may
-- land between a worker's read and this call) is reopened only by the user's re-run.
--
-- KEYS[1]  the job's hash                          (keys.job)
-- KEYS[2]  the set's hash                          (keys.job_set): a final job reopened counts
--                                                  again in its jobs_left (see advance.lua)
-- ARGV[1]  the attempt that ended (the call is refused if the job is on another one)
-- ARGV[2]  the status the new attempt starts from  (TRANSPILED, or QUEUED when not transpiled)
-- ARGV[3]  its rank                                (JobStatus.rank)
-- ARGV[4]  now, epoch seconds
-- ARGV[5]  why the previous attempt ended
-- ARGV[6]  what starts the new attempt: repost, retry or rerun (qjm.engine.retries)
-- ARGV[7]  the rank of every final status          (lifecycle.FINAL_RANK)
--
-- Returns the new attempt number, or 0 if the job was on another attempt or is final and this
-- is not a re-run.
local h = redis.call('HMGET', KEYS[1], 'attempt', 'remote_id', 'history', 'rank')
if (h[1] or '1') ~= ARGV[1] then return 0 end
if tonumber(h[4] or '0') >= tonumber(ARGV[7]) then
  if ARGV[6] ~= 'rerun' then return 0 end
  redis.call('HINCRBY', KEYS[2], 'jobs_left', 1)
end
local history = cjson.decode(h[3] or '[]')
local all = redis.call('HGETALL', KEYS[1])
local times, stale = {}, {}
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 3) == 'at_' then
    times[string.sub(all[i], 4)] = tonumber(all[i + 1])
    table.insert(stale, all[i])
  end
end
table.insert(history, {attempt = tonumber(ARGV[1]), remote_id = h[2] or cjson.null, error = ARGV[5],
                       ended = tonumber(ARGV[4]), kind = ARGV[6], times = times})
if #stale > 0 then redis.call('HDEL', KEYS[1], unpack(stale)) end
local next_attempt = tonumber(ARGV[1]) + 1
redis.call('HSET', KEYS[1], 'attempt', next_attempt, 'status', ARGV[2], 'rank', ARGV[3], 'updated', ARGV[4],
           'history', cjson.encode(history), 'at_' .. ARGV[2], ARGV[4])
redis.call('HDEL', KEYS[1], 'remote_id', 'post_attempted', 'cancel_sent', 'submitted_at', 'seen_pending_age', 'waiting_since', 'held',
           'service_estimate',
           'finished_at', 'error')
return next_attempt
