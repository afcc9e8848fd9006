-- Set one hash field only if it still holds what the caller read (e.g. a stuck wait's handled marker, so two
-- handlers never both report the same wait).
-- KEYS[1] the hash
-- ARGV[1] field   ARGV[2] expected value ('' = absent)   ARGV[3] new value
-- Returns 1 when set, 0 when the field changed meanwhile.
local current = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if current ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
