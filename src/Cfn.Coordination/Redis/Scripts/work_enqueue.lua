-- Queues one work item on a swarm's queue (list) and wakes the swarm's waiting coordinators, in one step.
-- KEYS[1] swarm:{swarmId}:queue   KEYS[2] swarm:{swarmId}:work:{workId}, the work ID's record (lib_work_record.lua)
-- ARGV[1] item JSON   ARGV[2] max length   ARGV[3] wake-up channel   ARGV[4] 'back' (new work) or 'front' (an item given back)
-- ARGV[5] the record's TTL (ms) while unfinished   ARGV[6] for 'front': the coordinator that gave it back ('' none)
-- Returns the queue length after the push, or -1 when the queue is full (nothing written). An item given back goes to
-- the front and is never refused: it was in the queue before, so the bound is exceeded by at most one per coordinator.
local length = redis.call('LLEN', KEYS[1])
local now = now_ms()
if ARGV[4] == 'front' then
  length = redis.call('LPUSH', KEYS[1], ARGV[1])
  -- Only an item its owner released is back in the queue now; an entry that was never recorded kept its status.
  if redis.call('HGET', KEYS[2], 'status') == 'released' then
    work_note(KEYS[2], 'queued', 'requeued', '', ARGV[6], '', now, tonumber(ARGV[5]))
  end
else
  if length >= tonumber(ARGV[2]) then
    return -1
  end
  length = redis.call('RPUSH', KEYS[1], ARGV[1])
  if redis.call('EXISTS', KEYS[2]) == 0 then
    work_note(KEYS[2], 'queued', 'queued', '', '', '', now, tonumber(ARGV[5]))
    redis.call('HSET', KEYS[2], 'enqueuedAt', string.format('%d', now))
  elseif work_finished(KEYS[2]) then
    -- The same ID again after it finished: queued again, but the result stands until a coordinator really takes it.
    work_note(KEYS[2], '', 'queued', '', '', '', now, 0)
  else
    work_note(KEYS[2], '', 'queued', '', '', '', now, tonumber(ARGV[5]))
  end
end
redis.call('PUBLISH', ARGV[3], 'work')
return length
