-- Record progress (SPEC K7, D5): the activity record with lastActivity from the Redis clock.
-- KEYS[1] coordinator:activity:{id}
-- ARGV[1] K7 JSON with "__NOW__" where the time goes   ARGV[2] TTL (s)
-- Returns the time written in ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local json = (string.gsub(ARGV[1], '"__NOW__"', string.format('%d', now)))
redis.call('SET', KEYS[1], json, 'EX', ARGV[2])
return now
