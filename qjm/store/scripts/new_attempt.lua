-- Start a job's next attempt: the previous one ended without running for a reason of the
-- service's (its batch ended), or (later) a user's re-run. The job goes back to TRANSPILED with
-- no remote job; the previous attempt is kept in its history. Only one caller per attempt wins.
--
-- KEYS[1]  the job's hash                          (keys.job)
-- ARGV[1]  the attempt that ended (the call is refused if the job is on another one)
-- ARGV[2]  the status the new attempt starts from  (TRANSPILED)
-- ARGV[3]  its rank                                (JobStatus.rank)
-- ARGV[4]  now, epoch seconds
-- ARGV[5]  why the previous attempt ended
--
-- Returns the new attempt number, or 0 if the job was on another attempt.
local h = redis.call('HMGET', KEYS[1], 'attempt', 'remote_id', 'history')
if (h[1] or '1') ~= ARGV[1] then return 0 end
local history = cjson.decode(h[3] or '[]')
table.insert(history, {attempt = tonumber(ARGV[1]), remote_id = h[2] or cjson.null, error = ARGV[5],
                       ended = tonumber(ARGV[4])})
local next_attempt = tonumber(ARGV[1]) + 1
redis.call('HSET', KEYS[1], 'attempt', next_attempt, 'status', ARGV[2], 'rank', ARGV[3], 'updated', ARGV[4],
           'history', cjson.encode(history))
redis.call('HDEL', KEYS[1], 'remote_id', 'post_attempted', 'submitted_at', 'seen_pending_age', 'waiting_since',
           'finished_at', 'error')
return next_attempt
