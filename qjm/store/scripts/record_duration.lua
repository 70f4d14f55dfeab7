-- Fold one finished job's duration into its backend's running estimate: an exponentially
-- weighted mean and mean absolute deviation. The first observation sets the mean, and a tenth
-- of it as the deviation (no spread seen yet).
--
-- KEYS[1]  the backend's durations hash           (keys.durations)
-- ARGV[1]  the observed duration, seconds
-- ARGV[2]  the weight of the new observation (0..1)
-- ARGV[3]  ttl of the estimate, seconds
local x, a = tonumber(ARGV[1]), tonumber(ARGV[2])
local mean = tonumber(redis.call('HGET', KEYS[1], 'mean'))
local dev = tonumber(redis.call('HGET', KEYS[1], 'dev'))
if not mean then mean, dev = x, 0.1 * x
else dev = (1 - a) * dev + a * math.abs(x - mean); mean = (1 - a) * mean + a * x end
redis.call('HSET', KEYS[1], 'mean', tostring(mean), 'dev', tostring(dev))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
