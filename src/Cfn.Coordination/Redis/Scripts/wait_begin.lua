-- Start of an ACK wait (SPEC §2.5, K7): announce it (the activity record says blocking, the deadline enters the
-- deadlines index) and read every awaited ACK plus the force-unblock marker, in one round trip.
-- KEYS[1] coordinator:activity:{id}   KEYS[2] coordinator:epoch:{id}   KEYS[3] coordinator:deadlines
-- KEYS[4..] the keys to read (the missing ACKs, then blocking:unblock:{id})
-- ARGV[1..7] as activity.lua
-- Returns {time written in ms, value or false per key to read}, or {'fenced', currentEpoch} when the writer was superseded (nothing read).
local fenced = fence(KEYS[2], ARGV[4])
if fenced then
  return fenced
end
local now = now_ms()
record_activity(KEYS[1], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[5], ARGV[6], ARGV[7], now)
-- MGET instead of a GET per key (each command a script calls costs Redis more than the key it reads), in chunks that
-- stay inside Lua's limit on unpacked values.
local reply = {now}
for first = 4, #KEYS, 500 do
  local values = redis.call('MGET', unpack(KEYS, first, math.min(first + 499, #KEYS)))
  for i = 1, #values do
    reply[#reply + 1] = values[i]
  end
end
return reply
