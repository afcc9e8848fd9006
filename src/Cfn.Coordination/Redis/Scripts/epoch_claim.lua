-- A starting instance takes the next fencing epoch of its ID and shows itself alive in the same step (D6). Done apart,
-- a monitor could judge the ID's previous (dead) instance between the two and fence the new one before its first
-- heartbeat: a process that just started would find itself superseded. With the registry score written here the
-- monitor sees a fresh ID, and a dead verdict can only come before the claim (then this epoch is above its fence).
-- The agent mark is written in the same step too: an agent that died at once must never be mistaken for a coordinator
-- a host could replace.
-- KEYS[1] coordinator:epoch:{id}   KEYS[2] blocking:coordinators   KEYS[3] coordinator:swarms   KEYS[4] coordinator:agents
-- ARGV[1] id   ARGV[2] swarm id   ARGV[3] agent kind ('' for a coordinator or validator cfn runs itself)
-- Returns the new epoch.
local epoch = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], 604800)
local now = now_ms()
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[4], ARGV[1])
else
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[3])
end
return epoch
