-- Send a signal and start waiting for its ACK, in one round trip (the commonest pattern; issue 6 row c): deliver it
-- (lib_send.lua), announce the wait (K7 says blocking, the deadline enters the deadlines index, lib_activity.lua), and
-- read the ACK and the force-unblock marker as wait_begin.lua does. A duplicate send still starts the wait.
-- KEYS[1..4], ARGV[1..7] as deliver_signal; KEYS[5] coordinator:activity:{senderId}   KEYS[6] coordinator:deadlines
-- KEYS[7] blocking:ack:{receiverId}:{messageId}   KEYS[8] blocking:unblock:{senderId}
-- ARGV[8..13] K7 JSON, TTL, time fields, sender ID, known deadline, starting timeout.
-- Returns {1 or 0 (duplicate), streamEntryId or '', Redis time in ms, the ACK or false, the marker or false}, or
-- {-1, currentEpoch} when the sender was superseded (nothing written).
local sent = deliver_signal()
if sent.err or sent[1] == -1 then
  return sent
end
local now = redis_now_ms()
record_activity(KEYS[5], KEYS[6], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13], now)
return {sent[1], sent[2], now, redis.call('GET', KEYS[7]), redis.call('GET', KEYS[8])}
