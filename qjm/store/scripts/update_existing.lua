-- Change fields of a hash only while it exists. A set deleted (or expired) while a task or the
-- reconciler still held its record stays gone: a late write never brings back a key of it that
-- has no expiry.
--
-- KEYS[1]  the hash                                (keys.job_set or keys.job)
-- ARGV[1]  'set': HSET every pair; 'setnx': HSETNX the one pair; 'incr': HINCRBY every pair
-- ARGV[2..] field, value pairs
--
-- Returns false when the hash does not exist; else 1 for 'set', 1 or 0 (whether the field was
-- set) for 'setnx', and the new values in order for 'incr'.
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local mode = ARGV[1]
if mode == 'setnx' then return redis.call('HSETNX', KEYS[1], ARGV[2], ARGV[3]) end
if mode == 'incr' then
  local out = {}
  for i = 2, #ARGV, 2 do out[#out + 1] = redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
  return out
end
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
return 1
