-- Queues one work item on a swarm's queue (list) and wakes the swarm's waiting coordinators, in one step.
-- KEYS[1] swarm:{swarmId}:queue
-- ARGV[1] item JSON   ARGV[2] max length   ARGV[3] wake-up channel   ARGV[4] 'back' (new work) or 'front' (an item given back)
-- Returns the queue length after the push, or -1 when the queue is full (nothing written). An item given back goes to
-- the front and is never refused: it was in the queue before, so the bound is exceeded by at most one per coordinator.
local length = redis.call('LLEN', KEYS[1])
if ARGV[4] == 'front' then
  length = redis.call('LPUSH', KEYS[1], ARGV[1])
else
  if length >= tonumber(ARGV[2]) then
    return -1
  end
  length = redis.call('RPUSH', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', ARGV[3], 'work')
return length
