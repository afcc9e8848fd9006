-- Write one heartbeat (SPEC K1, §2.9, D5, D6). The timestamp is the Redis server's clock, so a coordinator's clock
-- skew can never make it look dead; the registry is updated in the same step so an expired K1 is still found.
-- An instance whose epoch is no longer current (restarted elsewhere, or declared dead and replaced) writes nothing.
-- KEYS[1] the heartbeat key: blocking:heartbeat:{id} (K1) for a coordinator, validator:heartbeat:{id} for a validator
-- KEYS[2] blocking:coordinators (both kinds; KEYS[5] tells them apart)   KEYS[3] coordinator:activity:{id}
-- KEYS[4] coordinator:epoch:{id}   KEYS[5] coordinator:swarms
-- ARGV[1] K1 JSON without its time fields   ARGV[2] K1 TTL (s)   ARGV[3] coordinator id   ARGV[4] K7 TTL (s)
-- ARGV[5] the writer's epoch   ARGV[6] comma-separated names of the fields that get the Redis time   ARGV[7] swarm id
-- Returns the heartbeat time in ms, or {'fenced', currentEpoch} when the writer has been superseded.
local fenced = fence(KEYS[4], ARGV[5])
if fenced then
  return fenced
end
local now = now_ms()
redis.call('SET', KEYS[1], stamp(ARGV[1], ARGV[6], now), 'EX', ARGV[2])
redis.call('ZADD', KEYS[2], now, ARGV[3])
-- The swarm survives K1's expiry, so a coordinator found dead late still has its work found and handed over.
redis.call('HSET', KEYS[5], ARGV[3], ARGV[7])
-- Heartbeats keep K7 alive but never move lastActivity (SPEC K7).
redis.call('EXPIRE', KEYS[3], ARGV[4])
-- The epoch outlives its coordinator by a week, long enough to fence any zombie, then goes (no leak per retired ID).
redis.call('EXPIRE', KEYS[4], 604800)
return now
