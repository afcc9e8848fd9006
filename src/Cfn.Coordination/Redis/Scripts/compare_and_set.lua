-- Replace a JSON record only if it is still exactly the one the caller read (spawn-request status moves, a new
-- incident's escalation record), keeping its TTL. The caller builds the new JSON.
-- KEYS[1] the record
-- ARGV[1] expected stored JSON   ARGV[2] new JSON
-- Returns 1 when swapped, 0 when the record changed meanwhile or is gone.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
