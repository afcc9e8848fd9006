-- Fenced compare-and-set of one work item (SPEC K10, D6). Every create, claim, progress, complete and release goes
-- through here: the caller's epoch must still be its coordinator's current epoch (a restarted or superseded instance
-- is fenced), and the stored item must be exactly the one the caller last saw (owner, epoch and status included).
-- KEYS[1] the item's current key   KEYS[2] the key it is written to (differs only for a claim)
-- KEYS[3] coordinator:epoch:{callerId}
-- ARGV[1] expected stored JSON ('' = the item must not exist yet)   ARGV[2] new JSON without its time fields
-- ARGV[3] the caller's epoch   ARGV[4] TTL (s) of a new item   ARGV[5] comma-separated names of the fields that get the Redis time
-- Returns {'ok', newJson} | {'fenced', currentEpoch} | {'exists', storedJson} | {'not_found', ''} | {'conflict', storedJson}
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  -- Redis lost its data (restart without persistence): that is not a newer instance.
  redis.call('SET', KEYS[3], ARGV[3])
elseif epoch ~= ARGV[3] then
  return {'fenced', epoch}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- The time fields go first in the object; nothing inside the JSON is rewritten.
local head = ''
for name in string.gmatch(ARGV[5], '[^,]+') do
  head = head .. '"' .. name .. '":' .. string.format('%d', now) .. ','
end
local json = ARGV[2] == '{}' and ('{' .. string.sub(head, 1, -2) .. '}') or ('{' .. head .. string.sub(ARGV[2], 2))
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if current then
    return {'exists', current}
  end
  redis.call('SET', KEYS[1], json, 'EX', ARGV[4])
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
-- The remaining TTL is kept, never reset (W40e).
if ttl > 0 then
  redis.call('SET', KEYS[2], json, 'PX', ttl)
else
  redis.call('SET', KEYS[2], json)
end
return {'ok', json}
