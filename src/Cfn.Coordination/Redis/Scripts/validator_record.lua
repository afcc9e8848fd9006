-- Records one validation duration of a validator on the Redis clock (D5).
-- KEYS[1] validator:durations:{validatorId} (sorted set: member '{durationMs}:{d|t}:{unique}', score = finish time ms)
-- KEYS[2] validator:registry (sorted set: validatorId -> last sign of life, ms): only the validator's own records count,
--         never a timeout that a coordinator records against it, so a dead validator stops being picked.
-- KEYS[3] validator:seen (sorted set: validatorId -> last record of any kind, ms): who the performance report lists
-- ARGV[1] validatorId   ARGV[2] duration ms, '' = registration only, '-' = measure from ARGV[3]
-- ARGV[3] start time ms (Redis clock) when ARGV[2] is '-'   ARGV[4] '1' when the validation timed out
-- ARGV[5] rolling window ms   ARGV[6] most entries kept per validator   ARGV[7] unique member suffix
-- Returns the recorded duration (ms), or -1 for a registration only. Both sets are trimmed to the window and expire
-- one window after their last write, so nothing grows without bound.
local now = now_ms()
local window = tonumber(ARGV[5])
if ARGV[4] ~= '1' then
  redis.call('ZADD', KEYS[2], now, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%d', now - window))
  redis.call('PEXPIRE', KEYS[2], window)
end
redis.call('ZADD', KEYS[3], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. string.format('%d', now - window))
redis.call('PEXPIRE', KEYS[3], window)
if ARGV[2] == '' then
  return -1
end
local duration
if ARGV[2] == '-' then
  duration = now - tonumber(ARGV[3])
else
  duration = tonumber(ARGV[2])
end
if duration < 0 then
  duration = 0
end
local kind = ARGV[4] == '1' and 't' or 'd'
redis.call('ZADD', KEYS[1], now, string.format('%d', duration) .. ':' .. kind .. ':' .. ARGV[7])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%d', now - window))
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[6]) + 1))
redis.call('PEXPIRE', KEYS[1], window)
return duration
