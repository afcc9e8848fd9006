-- One attempt of a sender-side retry (SPEC §2.7, D4), with the checks and the append of lib_send.lua. The signal keeps its messageId on every attempt, so the
-- idempotency record of send_signal.lua would make every re-send a silent duplicate. This script instead looks at
-- what became of the first delivery and does what is needed for the receiver to ACK:
--   * the receiver already ACKed                      -> nothing to do                        {4, ''}
--   * still waiting in the receiver's inbox           -> wake the receiver again              {3, entryId}
--   * never delivered (no idempotency record)         -> deliver it                           {1, entryId}
--   * gone from the inbox without an ACK (the inbox was cleaned, trimmed or lost with Redis)
--                                                     -> deliver it again, same messageId     {2, entryId}
-- A delivery (1 or 2) is refused like any send when the receiver was escalated or its inbox is full (lib_send.lua).
-- The receiver's ACK is idempotent by messageId (SET NX), so a re-delivery that races a late ACK is harmless.
-- KEYS[1..6] as deliver_signal   KEYS[7] blocking:ack:{receiverId}:{messageId}
-- ARGV[1..8] as deliver_signal   ARGV[9] inbox entry of an earlier attempt, or ''
-- ARGV[10] most inbox entries searched for the messageId when ARGV[9] is ''
-- Returns {code, entryId}, or a refusal of lib_send.lua ({'fenced', epoch} or {-2..-4, …}; nothing is written).
local refused, inbox_type = check_send()
if refused then
  return refused
end
if redis.call('EXISTS', KEYS[7]) == 1 then
  return {4, ''}
end
local delivered = redis.call('EXISTS', KEYS[1]) == 1
local found = nil
if delivered and inbox_type == 'stream' then
  if ARGV[9] ~= '' then
    if #redis.call('XRANGE', KEYS[2], ARGV[9], ARGV[9]) > 0 then
      found = ARGV[9]
    end
  else
    local entries = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', tonumber(ARGV[10]))
    for _, entry in ipairs(entries) do
      local fields = entry[2]
      for i = 1, #fields, 2 do
        if fields[i] == 'messageId' and fields[i + 1] == ARGV[5] then
          found = entry[1]
        end
      end
      if found then
        break
      end
    end
  end
end
if found then
  redis.call('PUBLISH', ARGV[4], 'signal ' .. ARGV[5])
  return {3, found}
end
refused = check_receiver() or check_room(inbox_type)
if refused then
  return refused
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[3])
if delivered then
  return {2, append_signal(inbox_type)}
end
return {1, append_signal(inbox_type)}
