-- Release a lock only if the caller still holds it (its token), so a run that outlived its lock never frees the
-- next run's lock.
-- KEYS[1] the lock   ARGV[1] the caller's token
-- Returns 1 when deleted.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
