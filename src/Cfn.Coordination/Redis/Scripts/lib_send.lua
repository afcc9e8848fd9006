-- Shared by send_signal.lua, send_and_wait.lua and resend_signal.lua: RedisScripts prepends it.
-- Delivering a signal (SPEC §2.1, D4). Scripts are not rolled back on error, so every check comes before the first
-- write: a failed send must not leave an idempotency record behind that would make its retry look like a duplicate.
-- KEYS[1] blocking:idempotency:{messageId}   KEYS[2] blocking:inbox:{receiverId}   KEYS[3] blocking:signal:{receiverId}
-- KEYS[4] coordinator:epoch:{senderId}
-- ARGV[1] signal JSON   ARGV[2] signal TTL (s)   ARGV[3] idempotency TTL (s)   ARGV[4] receiver channel
-- ARGV[5] messageId     ARGV[6] consumer group   ARGV[7] the sender's epoch

-- The checks before any write. Returns nil and the inbox's type when the send may go on, or the reply to return:
-- {-1, currentEpoch} when the sender was superseded (a newer instance, or a replacement after it was declared dead),
-- or an error reply when the receiver's keys hold another type.
local function check_send()
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
  return nil, inbox_type
end

-- Appends the signal to the receiver's durable inbox, shows it in the K2 view and announces it on the receiver's
-- channel. Returns the stream entry ID.
local function append_signal()
  if redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('XGROUP', 'CREATE', KEYS[2], ARGV[6], '0', 'MKSTREAM')
  end
  local id = redis.call('XADD', KEYS[2], '*', 'messageId', ARGV[5], 'signal', ARGV[1])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[2])
  redis.call('PUBLISH', ARGV[4], 'signal ' .. ARGV[5])
  return id
end

-- One send: the checks, then the idempotency record (SET NX), and only then the signal. Returns {1, streamEntryId}
-- when delivered, {0, ''} for a duplicate messageId, or what check_send refused with.
local function deliver_signal()
  local refused = check_send()
  if refused then
    return refused
  end
  if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) then
    return {0, ''}
  end
  return {1, append_signal()}
end

