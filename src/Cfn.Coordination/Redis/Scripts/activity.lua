-- Record progress (SPEC K7, D5): the activity record with lastActivity (and blockingSince when a wait starts) from
-- the Redis clock, and the coordinator's wait deadline in the deadlines index (lib_activity.lua).
-- KEYS[1] coordinator:activity:{id}   KEYS[2] coordinator:epoch:{id}   KEYS[3] coordinator:deadlines
-- ARGV[1] K7 JSON without its time fields   ARGV[2] TTL (s)   ARGV[3] comma-separated names of the fields that get the Redis time
-- ARGV[4] the writer's epoch   ARGV[5] coordinator id
-- ARGV[6] earliest known wait deadline (Redis ms, 0 = none, -1 = none and none indexed: lib_activity.lua)   ARGV[7] timeout (ms) of a wait starting now (0 = none)
-- Returns the time written in ms, or {'fenced', currentEpoch} when the writer was superseded.
local fenced = fence(KEYS[2], ARGV[4])
if fenced then
  return fenced
end
local now = now_ms()
record_activity(KEYS[1], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[5], ARGV[6], ARGV[7], now)
return now
