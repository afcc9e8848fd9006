-- Send a signal and start waiting for its ACK, in one round trip (the commonest pattern; benchmark row c): deliver it
-- (lib_send.lua), announce the wait (K7 says blocking, the deadline enters the deadlines index, lib_activity.lua), and
-- read the ACK and the force-unblock marker as wait_begin.lua does. A duplicate send still starts the wait.
-- KEYS[1..6], ARGV[1..8] as deliver_signal; KEYS[7] coordinator:activity:{senderId}   KEYS[8] coordinator:deadlines
-- KEYS[9] blocking:ack:{receiverId}:{messageId}   KEYS[10] blocking:unblock:{senderId}
-- ARGV[9..14] K7 JSON, TTL, time fields, sender ID, known deadline, starting timeout.
-- Returns {1 or 0 (duplicate), streamEntryId or '', Redis time in ms, the ACK or false, the marker or false}, or a
-- refusal of lib_send.lua ({'fenced', epoch} or {-2..-4, …}; nothing written).
local sent = deliver_signal()
if sent.err or sent[1] == 'fenced' or sent[1] < 0 then
  return sent
end
local now = now_ms()
record_activity(KEYS[7], KEYS[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14], now)
local read = redis.call('MGET', KEYS[9], KEYS[10])
return {sent[1], sent[2], now, read[1], read[2]}
