-- Reserve a job attempt's estimated QPU seconds in its set's budget, right before its post:
-- granted while consumed + reserved + the estimate stays within the set's budget (always, when
-- the set has none). A redelivery of an attempt that holds its reservation keeps it.
--
-- KEYS[1]  the set's hash                          (keys.job_set): qpu_budget, qpu_reserved, qpu_consumed
-- KEYS[2]  the job's hash                          (keys.job): reserved_attempt, reserved
-- ARGV[1]  the attempt                             (the call is refused if the job is on another one)
-- ARGV[2]  its estimate, seconds                   (qjm.usage.estimate)
-- ARGV[3]  the instance month it is reserved in    (YYYY-MM, kept as the job's usage_period)
--
-- Returns {1, period} when the attempt holds its reservation (period: the month it holds it in,
-- the one it was first granted in for a redelivery), {0, used} when the budget holds it back
-- (used: consumed + reserved, as a string), {-1, ''} when the job is on another attempt or gone.
local job = redis.call('HMGET', KEYS[2], 'attempt', 'reserved_attempt', 'usage_period')
if not job[1] or job[1] ~= ARGV[1] then return {-1, ''} end
if job[2] == ARGV[1] then return {1, job[3] or ARGV[3]} end
local s = redis.call('HMGET', KEYS[1], 'qpu_budget', 'qpu_reserved', 'qpu_consumed')
local budget = tonumber(s[1] or '')
local used = tonumber(s[2] or '0') + tonumber(s[3] or '0')
local estimate = tonumber(ARGV[2])
if budget and used + estimate > budget + 1e-9 then return {0, tostring(used)} end
redis.call('HINCRBYFLOAT', KEYS[1], 'qpu_reserved', ARGV[2])
redis.call('HSET', KEYS[2], 'reserved_attempt', ARGV[1], 'reserved', ARGV[2], 'usage_period', ARGV[3])
return {1, ARGV[3]}
