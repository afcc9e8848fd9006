-- Record progress (SPEC K7, D5): the activity record with lastActivity (and blockingSince when a wait starts) from
-- the Redis clock.
-- KEYS[1] coordinator:activity:{id}
-- ARGV[1] K7 JSON without its time fields   ARGV[2] TTL (s)   ARGV[3] comma-separated names of the fields that get the Redis time
-- Returns the time written in ms.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local head = ''
for name in string.gmatch(ARGV[3], '[^,]+') do
  head = head .. '"' .. name .. '":' .. string.format('%d', now) .. ','
end
local json = ARGV[1] == '{}' and ('{' .. string.sub(head, 1, -2) .. '}') or ('{' .. head .. string.sub(ARGV[1], 2))
redis.call('SET', KEYS[1], json, 'EX', ARGV[2])
return now
