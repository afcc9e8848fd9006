-- Shared by send_signal.lua, send_and_wait.lua, resend_signal.lua and deliver_signal.lua: RedisScripts prepends it
-- (after lib_inbox.lua, whose append_entry it uses).
-- Delivering a signal (SPEC §2.1, D4). Scripts are not rolled back on error, so every check comes before the first
-- write: a failed or refused send must not leave an idempotency record behind that would make its retry look like a
-- duplicate.
-- KEYS[1] blocking:idempotency:{messageId}   KEYS[2] blocking:inbox:{receiverId}   KEYS[3] blocking:signal:{receiverId}
-- KEYS[4] coordinator:epoch:{senderId}       KEYS[5] coordinator:escalation:{receiverId}
-- KEYS[6] coordinator:epoch:{receiverId}
-- ARGV[1] signal JSON   ARGV[2] signal TTL (s)   ARGV[3] idempotency TTL (s)   ARGV[4] receiver channel
-- ARGV[5] messageId     ARGV[6] consumer group   ARGV[7] the sender's epoch     ARGV[8] most signals pending per inbox
-- Refusals (nothing written), as the first two reply elements:
--   {'fenced', currentEpoch} the sender was superseded (a newer instance, or a replacement after it was declared dead)
--   {-2, pendingSignals}    the receiver's inbox holds ARGV[8] signals already (SIGNAL_INBOX_MAX_LENGTH)
--   {-3, replacementId}     the receiver was declared dead and escalated: send to its replacement instead
--   {-4, replacementId|''}  the receiver was declared dead and no replacement is coming (escalation failed)

-- The checks of the sender and of the keys' types. Returns nil and the inbox's type when the send may go on, or the
-- reply to return: {'fenced', currentEpoch}, or an error reply when the receiver's keys hold another type.
local function check_send()
  local fenced = fence(KEYS[4], ARGV[7])
  if fenced then
    return fenced
  end
  local inbox_type = redis.call('TYPE', KEYS[2])['ok']
  local view_type = redis.call('TYPE', KEYS[3])['ok']
  if (inbox_type ~= 'none' and inbox_type ~= 'stream') or (view_type ~= 'none' and view_type ~= 'string') then
    return redis.error_reply('WRONGTYPE inbox or signal view of the receiver holds another type')
  end
  return nil, inbox_type
end

-- Is the receiver still the instance its escalation record (K8) declared dead? Only then does nobody read its inbox
-- any more: the send is refused with {-3, replacement} or {-4, replacement or ''}. A receiver restarted under the same
-- ID has a newer epoch than the record's fencing token and is delivered to as usual. One GET in the normal case
-- (no record). An unreadable record does not stop delivery: the signal waits in the inbox, which cleanup keeps while
-- the escalation is not final.
local function check_receiver()
  local raw = redis.call('GET', KEYS[5])
  if not raw then
    return nil
  end
  local ok, record = pcall(cjson.decode, raw)
  if not ok or type(record) ~= 'table' then
    return nil
  end
  local epoch = tonumber(redis.call('GET', KEYS[6]))
  if not epoch or tonumber(record['fencingToken']) ~= epoch then
    return nil
  end
  local replacement = record['newCoordinatorId']
  if type(replacement) ~= 'string' then
    replacement = ''
  end
  if record['status'] == 'failed' or replacement == '' then
    return {-4, replacement}
  end
  return {-3, replacement}
end

-- The inbox cap: a receiver that stops consuming must not grow Redis without bound. Consumed entries leave the
-- stream, so its length is the number of signals still pending. Returns nil, or {-2, pending}.
local function check_room(inbox_type)
  if inbox_type == 'stream' then
    local pending = redis.call('XLEN', KEYS[2])
    if pending >= tonumber(ARGV[8]) then
      return {-2, pending}
    end
  end
  return nil
end

-- Appends the signal to the receiver's durable inbox, shows it in the K2 view and announces it on the receiver's
-- channel. Returns the stream entry ID. inbox_type: what check_send read (no write came between).
local function append_signal(inbox_type)
  return append_entry(KEYS[2], KEYS[3], ARGV[6], ARGV[5], ARGV[1], ARGV[2], ARGV[4], inbox_type)
end

-- One send: the checks, then the idempotency record, and only then the signal. Returns {1, streamEntryId} when
-- delivered, {0, ''} for a duplicate messageId (checked before the receiver's escalation: a signal delivered before its
-- receiver died is handed over, not sent again), or one of the refusals above.
local function deliver_signal()
  local refused, inbox_type = check_send()
  if refused then
    return refused
  end
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return {0, ''}
  end
  refused = check_receiver() or check_room(inbox_type)
  if refused then
    return refused
  end
  redis.call('SET', KEYS[1], '1', 'EX', ARGV[3])
  return {1, append_signal(inbox_type)}
end

