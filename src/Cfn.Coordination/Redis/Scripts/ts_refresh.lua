-- Record what the monitor saw of the watched TS coordinators' heartbeats (CFN_TS_COMPAT, SPEC D13, D5). The client
-- read K1 and compared it with the hash; here each change is scored with the Redis clock of this moment, never with
-- the TS coordinator's own lastHeartbeat, so its clock skew can neither cause nor hide a death.
-- KEYS[1] coordinator:ts-coordinators   KEYS[2] coordinator:ts-heartbeats
-- ARGV[1] n   ARGV[2..n+1] IDs that leave the watch (now cfn, or in the registry)
-- then triples: id, the 'lastHeartbeat:sequence' the client compared against, the new one
-- Returns how many changes were recorded.
local now = now_ms()
local n = tonumber(ARGV[1])
for i = 2, n + 1 do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
end
local changed = 0
for i = n + 2, #ARGV, 3 do
  -- Only over what the client read: an entry a cleanup removed meanwhile must not come back, and another monitor
  -- that recorded the same change first keeps its (earlier) score.
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 2])
    redis.call('ZADD', KEYS[1], now, ARGV[i])
    changed = changed + 1
  end
end
return changed
