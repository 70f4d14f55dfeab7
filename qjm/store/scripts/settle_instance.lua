-- End a job attempt's reservation in its instance's month: the reserved seconds are given back
-- and the attempt's charge (if it ran) counted. Only a reservation still held is settled, so a
-- charge is counted once however many times this runs.
--
-- KEYS[1]  the instance's month                    (keys.usage_month)
-- KEYS[2]  the instance's totals per backend, never reset (keys.usage_totals; qjm_qpu_seconds_total)
-- ARGV[1]  the attempt's name                      (usage.attempt_ref)
-- ARGV[2]  its charge in seconds, or '' when the attempt never ran
-- ARGV[3]  the backend it ran on
--
-- Returns 1 if this call settled the reservation, 0 if it was settled already.
local field = 'r:' .. ARGV[1]
local held = redis.call('HGET', KEYS[1], field)
if not held then return 0 end
local amount = tonumber(string.match(held, '^([^@]+)'))
redis.call('HINCRBYFLOAT', KEYS[1], 'reserved', -amount)
redis.call('HDEL', KEYS[1], field)
if ARGV[2] ~= '' then
  redis.call('HINCRBYFLOAT', KEYS[1], 'consumed', ARGV[2])
  redis.call('HINCRBYFLOAT', KEYS[2], ARGV[3], ARGV[2])
end
return 1
