-- One attempt of a sender-side retry (SPEC §2.7, D4), with the checks and the append of lib_send.lua. The signal keeps its messageId on every attempt, so the
-- idempotency record of send_signal.lua would make every re-send a silent duplicate. This script instead looks at
-- what became of the first delivery and does what is needed for the receiver to ACK:
--   * the receiver already ACKed                      -> nothing to do                        {4, ''}
--   * never delivered (no idempotency record)         -> deliver it                           {1, entryId}
--   * still waiting in the receiver's inbox           -> wake the receiver again              {3, entryId}
--   * gone from the inbox without an ACK (the inbox was cleaned, trimmed or lost with Redis)
--                                                     -> deliver it again, same messageId     {2, entryId}
-- The receiver's ACK is idempotent by messageId (SET NX), so a re-delivery that races a late ACK is harmless.
-- KEYS[1] blocking:idempotency:{messageId}   KEYS[2] blocking:inbox:{receiverId}   KEYS[3] blocking:signal:{receiverId}
-- KEYS[4] coordinator:epoch:{senderId}       KEYS[5] blocking:ack:{receiverId}:{messageId}
-- ARGV[1] signal JSON   ARGV[2] signal TTL (s)   ARGV[3] idempotency TTL (s)   ARGV[4] receiver channel
-- ARGV[5] messageId     ARGV[6] consumer group   ARGV[7] the sender's epoch     ARGV[8] inbox entry of an earlier attempt, or ''
-- ARGV[9] most inbox entries searched for the messageId when ARGV[8] is ''
-- Returns {code, entryId}, or {-1, currentEpoch} when the sender was superseded (nothing is written).
local refused, inbox_type = check_send()
if refused then
  return refused
end
if redis.call('EXISTS', KEYS[5]) == 1 then
  return {4, ''}
end
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) then
  return {1, append_signal()}
end
local found = nil
if inbox_type == 'stream' then
  if ARGV[8] ~= '' then
    if #redis.call('XRANGE', KEYS[2], ARGV[8], ARGV[8]) > 0 then
      found = ARGV[8]
    end
  else
    local entries = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', tonumber(ARGV[9]))
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
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {2, append_signal()}
