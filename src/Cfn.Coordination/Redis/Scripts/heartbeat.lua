-- Write one heartbeat (SPEC K1, §2.9, D5, D6). The timestamp is the Redis server's clock, so a coordinator's clock
-- skew can never make it look dead; the registry is updated in the same step so an expired K1 is still found.
-- An instance whose epoch is no longer current (restarted elsewhere, or declared dead and replaced) writes nothing.
-- KEYS[1] the heartbeat key: blocking:heartbeat:{id} (K1) for a coordinator, validator:heartbeat:{id} for a validator
-- KEYS[2] blocking:coordinators (both kinds; KEYS[5] tells them apart)   KEYS[3] coordinator:activity:{id}
-- KEYS[4] coordinator:epoch:{id}   KEYS[5] coordinator:swarms
-- ARGV[1] K1 JSON without its time fields   ARGV[2] K1 TTL (s)   ARGV[3] coordinator id   ARGV[4] K7 TTL (s)
-- ARGV[5] the writer's epoch   ARGV[6] comma-separated names of the fields that get the Redis time   ARGV[7] swarm id
-- Returns the heartbeat time in ms, or -1 when the writer has been superseded.
local epoch = redis.call('GET', KEYS[4])
if not epoch then
  -- Redis lost its data (restart without persistence): that is not a newer instance, so the writer keeps its epoch.
  redis.call('SET', KEYS[4], ARGV[5])
elseif epoch ~= ARGV[5] then
  return -1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- The time fields go first in the object; nothing inside the JSON is rewritten.
local head = ''
for name in string.gmatch(ARGV[6], '[^,]+') do
  head = head .. '"' .. name .. '":' .. string.format('%d', now) .. ','
end
local json = ARGV[1] == '{}' and ('{' .. string.sub(head, 1, -2) .. '}') or ('{' .. head .. string.sub(ARGV[1], 2))
redis.call('SET', KEYS[1], json, 'EX', ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[3])
-- The swarm survives K1's expiry, so a coordinator found dead late still has its work found and handed over.
redis.call('HSET', KEYS[5], ARGV[3], ARGV[7])
-- Heartbeats keep K7 alive but never move lastActivity (SPEC K7).
redis.call('EXPIRE', KEYS[3], ARGV[4])
-- The epoch outlives its coordinator by a week, long enough to fence any zombie, then goes (no leak per retired ID).
redis.call('EXPIRE', KEYS[4], 604800)
return now
