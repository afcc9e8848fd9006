-- Gives an unfinished item whose owner will never finish it back to the front of its swarm's queue (D16): a dead
-- coordinator's items when auto-escalation is off, a replacement's items when the replacement never came up. One step:
-- the item becomes 'released' (only if it is still exactly the copy the caller read, so a concurrent adoption or claim
-- wins or loses as a whole), leaves its owner's index, and its queue entry goes to the front; the swarm is woken; the
-- work ID's record says it is queued again, and why.
-- KEYS[1] the item   KEYS[2] coordinator:owned:{swarm}:{owner}   KEYS[3] swarm:{swarm}:queue
-- KEYS[4] swarm:{swarm}:work:{workId} (lib_work_record.lua)
-- ARGV[1] expected stored JSON   ARGV[2] released JSON without its time fields   ARGV[3] its time fields
-- ARGV[4] queue entry JSON   ARGV[5] the swarm's wake-up channel   ARGV[6] work ID
-- ARGV[7] the owner giving it back   ARGV[8] why (a fixed word)   ARGV[9] the record's TTL (ms) while unfinished
-- Returns 'ok' | 'not_found' | 'conflict'.
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SREM', KEYS[2], ARGV[6])
  return 'not_found'
end
if current ~= ARGV[1] then
  return 'conflict'
end
local ttl = redis.call('PTTL', KEYS[1])
local now = now_ms()
local json = stamp(ARGV[2], ARGV[3], now)
if ttl > 0 then
  redis.call('SET', KEYS[1], json, 'PX', ttl)
else
  redis.call('SET', KEYS[1], json)
end
redis.call('SREM', KEYS[2], ARGV[6])
redis.call('LPUSH', KEYS[3], ARGV[4])
work_note(KEYS[4], 'queued', 'requeued', '', ARGV[7], ARGV[8], now, tonumber(ARGV[9]))
redis.call('PUBLISH', ARGV[5], 'work')
return 'ok'
