-- Fenced compare-and-set of one work item (SPEC K10, D6). Every create, claim, progress, complete and release goes
-- through here: the caller's epoch must still be its coordinator's current epoch (a restarted or superseded instance
-- is fenced), and the stored item must be exactly the one the caller last saw (owner, epoch and status included).
-- KEYS[1] the item's current key   KEYS[2] the key it is written to (differs only for a claim)
-- KEYS[3] coordinator:epoch:{callerId}   KEYS[4] coordinator:owned:{swarm}:{owner of KEYS[1]}
-- KEYS[5] coordinator:owned:{swarm}:{owner of KEYS[2]}   KEYS[6] coordinator:work-owner:{swarm}:{workId}
-- ARGV[1] expected stored JSON ('' = the item must not exist yet)   ARGV[2] new JSON without its time fields
-- ARGV[3] the caller's epoch   ARGV[4] TTL (s) of a new item   ARGV[5] comma-separated names of the fields that get the Redis time
-- ARGV[6] 'keep' when the written item is still unfinished work of its owner (in progress, transferred), else 'drop'
-- ARGV[7] the work ID (member of the owner indexes)   ARGV[8] the owner of KEYS[2]
-- KEYS[7] swarm:{swarm}:work:{workId}, the work ID's record (lib_work_record.lua), written in this same step so it
-- shows only transitions that happened   ARGV[9] its new status ('' = leave the record alone: a progress write)
-- ARGV[10] the event   ARGV[11] the previous owner named by the event ('' none)   ARGV[12] the record's TTL (ms)
-- ARGV[13] result JSON of a finished item ('' none)   ARGV[14] its verdicts JSON ('' none)
-- ARGV[15] the channel told when the item is finished
-- ARGV[16] for a completed item, how long (ms) its K10 stays (FINISHED_WORK_RETENTION_SECONDS; 0 = keep its TTL)
-- Returns {'ok', newJson} | {'fenced', currentEpoch} | {'exists', storedJson} | {'not_found', ''} | {'conflict', storedJson}
-- | {'owned_elsewhere', ownerId} (a create of a work ID whose record is under another coordinator's key)
local fenced = fence(KEYS[3], ARGV[3])
if fenced then
  return fenced
end
local now = now_ms()
local json = stamp(ARGV[2], ARGV[5], now)
-- The work ID's record follows the item: who has it now, and once finished, its result and verdicts.
local function note()
  if ARGV[9] == '' then
    return
  end
  work_note(KEYS[7], ARGV[9], ARGV[10], ARGV[8], ARGV[11], '', now, tonumber(ARGV[12]))
  if ARGV[9] == 'completed' or ARGV[9] == 'failed' then
    redis.call('HSET', KEYS[7], 'finishedAt', string.format('%d', now))
    if ARGV[13] ~= '' then
      redis.call('HSET', KEYS[7], 'result', ARGV[13])
    end
    if ARGV[14] ~= '' then
      redis.call('HSET', KEYS[7], 'verdicts', ARGV[14])
    end
    redis.call('PUBLISH', ARGV[15], ARGV[9])
  end
end
-- The owner index lists exactly the unfinished items of an owner, so adoption and hand-over never scan the keyspace.
local function index(ttl_ms)
  redis.call('SET', KEYS[6], ARGV[8], 'PX', ttl_ms)
  if KEYS[4] ~= KEYS[5] then
    redis.call('SREM', KEYS[4], ARGV[7])
  end
  if ARGV[6] == 'keep' then
    redis.call('SADD', KEYS[5], ARGV[7])
    local current_ttl = redis.call('PTTL', KEYS[5])
    if ttl_ms > current_ttl then
      redis.call('PEXPIRE', KEYS[5], ttl_ms)
    end
  else
    redis.call('SREM', KEYS[5], ARGV[7])
  end
end
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if current then
    return {'exists', current}
  end
  local owner = redis.call('GET', KEYS[6])
  if owner and owner ~= ARGV[8] then
    return {'owned_elsewhere', owner}
  end
  redis.call('SET', KEYS[1], json, 'EX', ARGV[4])
  index(tonumber(ARGV[4]) * 1000)
  note()
  return {'ok', json}
end
if not current then
  return {'not_found', ''}
end
if current ~= ARGV[1] then
  return {'conflict', current}
end
local ttl = redis.call('PTTL', KEYS[1])
if KEYS[2] ~= KEYS[1] then
  local taken = redis.call('GET', KEYS[2])
  if taken then
    return {'exists', taken}
  end
  redis.call('DEL', KEYS[1])
end
-- The remaining TTL is kept, never reset (W40e), except that a completed item's is cut to the finished-work retention:
-- its result and verdicts live on in the work record (KEYS[7]), so the rest is dropped soon (D23). The work-owner
-- marker lives as long as the record (a resubmission of the ID is recognised while the result can be read).
local item_ttl = ttl
local finished_ms = tonumber(ARGV[16])
if finished_ms > 0 and (item_ttl <= 0 or item_ttl > finished_ms) then
  item_ttl = finished_ms
end
if item_ttl > 0 then
  redis.call('SET', KEYS[2], json, 'PX', item_ttl)
else
  redis.call('SET', KEYS[2], json)
end
local marker_ttl = ttl > 0 and ttl or tonumber(ARGV[4]) * 1000
if finished_ms > 0 and tonumber(ARGV[12]) > 0 then
  marker_ttl = tonumber(ARGV[12])
end
index(marker_ttl)
note()
return {'ok', json}
