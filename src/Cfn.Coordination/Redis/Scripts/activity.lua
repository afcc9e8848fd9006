-- Record progress (SPEC K7, D5): the activity record with lastActivity (and blockingSince when a wait starts) from
-- the Redis clock, and the coordinator's wait deadline in the deadlines index (the stuck-wait check reads only that).
-- KEYS[1] coordinator:activity:{id}   KEYS[2] coordinator:epoch:{id}   KEYS[3] coordinator:deadlines
-- ARGV[1] K7 JSON without its time fields   ARGV[2] TTL (s)   ARGV[3] comma-separated names of the fields that get the Redis time
-- ARGV[4] the writer's epoch   ARGV[5] coordinator id
-- ARGV[6] earliest known wait deadline (Redis ms, 0 = none)   ARGV[7] timeout (ms) of a wait starting now (0 = none)
-- Returns the time written in ms, or -1 when the writer was superseded.
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  redis.call('SET', KEYS[2], ARGV[4]) -- Redis lost its data: not a newer instance
elseif epoch ~= ARGV[4] then
  return -1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local head = ''
for name in string.gmatch(ARGV[3], '[^,]+') do
  head = head .. '"' .. name .. '":' .. string.format('%d', now) .. ','
end
local json = ARGV[1] == '{}' and ('{' .. string.sub(head, 1, -2) .. '}') or ('{' .. head .. string.sub(ARGV[1], 2))
redis.call('SET', KEYS[1], json, 'EX', ARGV[2])
local deadline = tonumber(ARGV[6])
local starting = tonumber(ARGV[7])
if starting > 0 and (deadline == 0 or now + starting < deadline) then
  deadline = now + starting
end
if deadline > 0 then
  redis.call('ZADD', KEYS[3], deadline, ARGV[5])
else
  redis.call('ZREM', KEYS[3], ARGV[5])
end
return now
