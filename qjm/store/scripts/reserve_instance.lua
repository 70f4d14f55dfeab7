-- Reserve a job attempt's estimated QPU seconds in its instance's month, right before its post
-- (after its set granted them: reserve_set.lua, on the set's own slot): granted while consumed +
-- reserved + the estimate stays within the instance's budget (always, when it has none). The
-- reservation is kept under the attempt's name, so a redelivery keeps it and the reconciler can
-- find and return one whose job ended without settling it.
--
-- KEYS[1]  the instance's month                    (keys.usage_month): reserved, consumed, r:<ref>
-- ARGV[1]  the attempt's name                      (usage.attempt_ref: <set>:<job>:<attempt>)
-- ARGV[2]  its estimate, seconds
-- ARGV[3]  the instance's budget, seconds, or '' for none
-- ARGV[4]  now, epoch seconds
-- ARGV[5]  seconds the month's figures are kept  (a few months: the budget is per month)
--
-- Returns {1, ''} when granted (or held already), {0, used} when the budget holds it back.
local field = 'r:' .. ARGV[1]
if redis.call('HEXISTS', KEYS[1], field) == 1 then return {1, ''} end
local s = redis.call('HMGET', KEYS[1], 'reserved', 'consumed')
local used = tonumber(s[1] or '0') + tonumber(s[2] or '0')
local budget = tonumber(ARGV[3])
if budget and used + tonumber(ARGV[2]) > budget + 1e-9 then return {0, tostring(used)} end
redis.call('HINCRBYFLOAT', KEYS[1], 'reserved', ARGV[2])
redis.call('HSET', KEYS[1], field, ARGV[2] .. '@' .. ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {1, ''}
