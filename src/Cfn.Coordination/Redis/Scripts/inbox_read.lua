-- A receiver's read of its inbox when a TS coordinator may have written its K2 (SPEC K2, D13): with CFN_TS_COMPAT the
-- TS signal is taken into the inbox first (lib_inbox.lua take_foreign), so this same read hands it out; without, it is
-- only reported (left in K2). Used on the reads that start a receiver and end its idle waits, never per signal.
-- KEYS[1] blocking:inbox:{receiverId}   KEYS[2] blocking:signal:{receiverId}
-- ARGV[1] consumer group   ARGV[2] signal TTL (s)   ARGV[3] consumer name   ARGV[4] most entries to read
-- ARGV[5] where to read from (an entry ID: own pending entries after it, '>': new ones)   ARGV[6] 'take' or 'report'
-- Returns {K2's foreign value ('' when none, or when taken), entries}; entries as inbox_next.lua returns them.
local foreign = ''
if ARGV[6] == 'take' then
  take_foreign(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
else
  foreign = foreign_view(KEYS[1], KEYS[2]) or ''
end
local ok, reply = pcall(redis.call, 'XREADGROUP', 'GROUP', ARGV[1], ARGV[3], 'COUNT', ARGV[4], 'STREAMS', KEYS[1], ARGV[5])
if not ok or not reply then
  return {foreign, {}}
end
return {foreign, reply[1][2]}
