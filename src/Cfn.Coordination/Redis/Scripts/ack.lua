-- Write an ACK once (SPEC §2.3, D13) and wake the waiter in the same round trip.
-- KEYS[1] blocking:ack:{ackingCoordinatorId}:{signalId}   KEYS[2] coordinator:epoch:{ackingCoordinatorId}
-- ARGV[1] ACK JSON   ARGV[2] TTL (s)   ARGV[3] the sender's channel ('' for none)
-- ARGV[4] wake-up message (`ack {signalId} {ackerId}`; the stored ACK JSON is appended, so the waiter need not read it)
-- ARGV[5] the ACKer's epoch
-- Optional (signals from the inbox): KEYS[3] blocking:heartbeat:{sender}   KEYS[4] blocking:coordinators   ARGV[6] sender ID
-- ('' for no check). A sender with neither a heartbeat key nor a registry entry is gone (stopped, or dead and cleaned
-- up): no one waits for this ACK, and storing it would only recreate a blocking:*{sender}* key after the runbook's
-- cleanup (#85). A validator sender (a verdict) has no K1: its registry entry, written with its own heartbeat key
-- validator:heartbeat:{id}, shows it is there; K1 is checked for TS coordinators, which do not write the registry.
-- Optional, the ACKer's progress record (lib_activity.lua), written whether or not the ACK is stored:
-- KEYS[5] coordinator:activity:{ackerId}   KEYS[6] coordinator:deadlines   ARGV[7..12] K7 JSON, TTL, time fields,
-- ACKer ID, known deadline, starting timeout.
-- ARGV[13] (with the sender check) the TTL (s) of an ACK for a sender in the registry: a cfn participant, whose wait
-- reads the ACK within moments (it comes with the wake-up), so it is kept only ACK_RETENTION_SECONDS (D23); a sender
-- outside the registry (a TS coordinator, D13) may poll for it, so it keeps ARGV[2].
-- Returns {1 if written now else 0, the stored ACK JSON, Redis time in ms, the TTL given (s)}, {2, ARGV[1], time} when not stored because
-- the sender is gone, or {'fenced', currentEpoch} when the ACKer was superseded.
local fenced = fence(KEYS[2], ARGV[5])
if fenced then
  return fenced
end
local now = now_ms()
if KEYS[5] then
  record_activity(KEYS[5], KEYS[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], now)
end
local ttl = ARGV[2]
if ARGV[6] and ARGV[6] ~= '' then
  local registered = redis.call('ZSCORE', KEYS[4], ARGV[6])
  if not registered and redis.call('EXISTS', KEYS[3]) == 0 then
    return {2, ARGV[1], now}
  end
  if registered and ARGV[13] and tonumber(ARGV[13]) < tonumber(ttl) then
    ttl = ARGV[13]
  end
end
local written = 1
local stored = ARGV[1]
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ttl) then
  written = 0
  stored = redis.call('GET', KEYS[1])
end
-- A repeated ACK wakes again: the first wake-up may have been lost with a dropped connection.
if ARGV[3] ~= '' then
  redis.call('PUBLISH', ARGV[3], ARGV[4] .. ' ' .. stored)
end
return {written, stored, now, tonumber(ttl)}
