-- Deliver one signal (lib_send.lua) and, when delivered, record the sender's progress (lib_activity.lua).
-- KEYS[1..6], ARGV[1..8] as deliver_signal; KEYS[7] coordinator:activity:{senderId}   KEYS[8] coordinator:deadlines
-- ARGV[9..14] K7 JSON, TTL, time fields, sender ID, known deadline, starting timeout.
-- Returns {1, streamEntryId, Redis time in ms} when delivered, else what deliver_signal returned.
local sent = deliver_signal()
if sent.err or sent[1] ~= 1 then
  return sent
end
local now = now_ms()
record_activity(KEYS[7], KEYS[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14], now)
return {1, sent[2], now}
