-- The receiver asks for its next signals (SPEC §2.2, D4): the entry it was handed last is consumed (lib_inbox.lua)
-- and the next entries are read, in one round trip (it is on every cycle's path: benchmark row c).
-- KEYS[1] blocking:inbox:{receiverId}   KEYS[2] blocking:signal:{receiverId}
-- ARGV[1] the entry to consume   ARGV[2] consumer group   ARGV[3] signal TTL (s)   ARGV[4] consumer name
-- ARGV[5] most entries to read   ARGV[6] where to read from (an entry ID: own pending entries after it, '>': new ones)
-- ARGV[7] '1' with CFN_TS_COMPAT: first take a TS signal found in K2 into the inbox (lib_inbox.lua take_foreign)
-- Returns the entries read, each {id, {field, value, ...}} (fields false for a pending entry deleted since), or
-- {} when there are none or the inbox has no consumer group yet.
-- The consume has already looked at K2: a TS signal it left there is taken without looking again.
local _, foreign = consume_entry(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
if ARGV[7] == '1' and foreign then
  append_foreign(KEYS[1], ARGV[2], ARGV[3], foreign)
end
local ok, reply = pcall(redis.call, 'XREADGROUP', 'GROUP', ARGV[2], ARGV[4], 'COUNT', ARGV[5], 'STREAMS', KEYS[1], ARGV[6])
if not ok or not reply then
  return {}
end
return reply[1][2]
