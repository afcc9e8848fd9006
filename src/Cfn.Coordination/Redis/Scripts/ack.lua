-- Write an ACK once (SPEC §2.3, D13) and wake the waiter in the same round trip.
-- KEYS[1] blocking:ack:{ackingCoordinatorId}:{signalId}
-- ARGV[1] ACK JSON   ARGV[2] TTL (s)   ARGV[3] the sender's channel ('' for none)   ARGV[4] wake-up message
-- Returns {1 if written now else 0, the stored ACK JSON, Redis time in ms}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local written = 1
local stored = ARGV[1]
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  written = 0
  stored = redis.call('GET', KEYS[1])
end
-- A repeated ACK wakes again: the first wake-up may have been lost with a dropped connection.
if ARGV[3] ~= '' then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return {written, stored, now}
