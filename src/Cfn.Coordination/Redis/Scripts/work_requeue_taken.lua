-- Puts a taker's unrecorded items back at the front of their swarm's queue (oldest first in front), in one step, and
-- wakes the swarm's coordinators.
-- KEYS[1] swarm:{swarmId}:taken:{coordinatorId}   KEYS[2] swarm:{swarmId}:queue   ARGV[1] wake-up channel
-- Returns how many items moved.
local moved = 0
while true do
  local item = redis.call('RPOPLPUSH', KEYS[1], KEYS[2])
  if not item then
    break
  end
  moved = moved + 1
end
if moved > 0 then
  redis.call('PUBLISH', ARGV[1], 'work')
end
return moved
