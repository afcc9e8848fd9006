-- Deliver one signal (SPEC §2.1, D4). Atomic: the idempotency record is taken first (SET NX), and only then is the
-- signal appended to the receiver's durable inbox, shown in the K2 view and announced on the receiver's channel.
-- KEYS[1] blocking:idempotency:{messageId}   KEYS[2] blocking:inbox:{receiverId}   KEYS[3] blocking:signal:{receiverId}
-- ARGV[1] signal JSON   ARGV[2] signal TTL (s)   ARGV[3] idempotency TTL (s)   ARGV[4] receiver channel
-- ARGV[5] messageId     ARGV[6] consumer group
-- Returns {1, streamEntryId} when delivered, {0, ''} for a duplicate messageId.
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) then
  return {0, ''}
end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[2], ARGV[6], '0', 'MKSTREAM')
end
local id = redis.call('XADD', KEYS[2], '*', 'messageId', ARGV[5], 'signal', ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[2])
redis.call('PUBLISH', ARGV[4], 'signal ' .. ARGV[5])
return {1, id}
