-- Shared by send_signal.lua and send_and_wait.lua: RedisScripts prepends it.
-- Delivers one signal (SPEC §2.1, D4). The sender's epoch is checked first (a superseded sender writes nothing), then
-- the idempotency record is taken (SET NX), and only then is the signal appended to the receiver's durable inbox,
-- shown in the K2 view and announced on the receiver's channel. Scripts are not rolled back on error, so every check
-- comes before the first write: a failed send must not leave an idempotency record behind that would make its retry
-- look like a duplicate.
-- KEYS[1] blocking:idempotency:{messageId}   KEYS[2] blocking:inbox:{receiverId}   KEYS[3] blocking:signal:{receiverId}
-- KEYS[4] coordinator:epoch:{senderId}
-- ARGV[1] signal JSON   ARGV[2] signal TTL (s)   ARGV[3] idempotency TTL (s)   ARGV[4] receiver channel
-- ARGV[5] messageId     ARGV[6] consumer group   ARGV[7] the sender's epoch
-- Returns {1, streamEntryId} when delivered, {0, ''} for a duplicate messageId, {-1, currentEpoch} when the sender
-- was superseded (a newer instance, or a replacement after it was declared dead), or an error reply table.
local function deliver_signal()
  local epoch = redis.call('GET', KEYS[4])
  if not epoch then
    redis.call('SET', KEYS[4], ARGV[7]) -- Redis lost its data: not a newer instance
  elseif epoch ~= ARGV[7] then
    return {-1, epoch}
  end
  local inbox_type = redis.call('TYPE', KEYS[2])['ok']
  local view_type = redis.call('TYPE', KEYS[3])['ok']
  if (inbox_type ~= 'none' and inbox_type ~= 'stream') or (view_type ~= 'none' and view_type ~= 'string') then
    return redis.error_reply('WRONGTYPE inbox or signal view of the receiver holds another type')
  end
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
end

