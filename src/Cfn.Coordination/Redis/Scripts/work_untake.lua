-- Puts one taken entry back at the front of its swarm's queue, if it is still in the taker's taken list: a taker that
-- learnt it was superseded before it could record the item gives it back, without touching what a newer instance under
-- the same ID has taken meanwhile (the list is per ID, not per instance).
-- KEYS[1] swarm:{swarmId}:taken:{coordinatorId}   KEYS[2] swarm:{swarmId}:queue   ARGV[1] the entry   ARGV[2] wake-up channel
-- Returns 1 when it went back, 0 when it was no longer in the taken list.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then
  return 0
end
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('PUBLISH', ARGV[2], 'work')
return 1
