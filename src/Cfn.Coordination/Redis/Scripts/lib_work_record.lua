-- The record of what became of a work ID (swarm:{swarm}:work:{workId}, a hash), written by the script of the very
-- transition it describes, so it never shows a state that did not happen. Prepended by RedisScripts to the work scripts.

-- Appends one event to the record's history and sets its status and owner. An event holds only validated IDs
-- ([A-Za-z0-9_-]), fixed words and a number, so its JSON needs no escaping, and the history is kept as JSON text: the
-- oldest event is dropped past 32, so an item bounced between coordinators cannot grow its record without bound.
-- status '' keeps the status; owner '' removes the owner (the item is in nobody's hands); ttl_ms 0 keeps the TTL.
local function work_note(key, status, event, owner, from, reason, now, ttl_ms)
  local entry = '{"event":"' .. event .. '"'
  if owner ~= '' then
    entry = entry .. ',"owner":"' .. owner .. '"'
  end
  if from ~= '' then
    entry = entry .. ',"from":"' .. from .. '"'
  end
  if reason ~= '' then
    entry = entry .. ',"reason":"' .. reason .. '"'
  end
  entry = entry .. ',"at":' .. string.format('%d', now) .. '}'
  local history = redis.call('HGET', key, 'history')
  local count = tonumber(redis.call('HGET', key, 'events') or '0') or 0
  if not history then
    history = '[' .. entry .. ']'
    count = 0
  else
    if count >= 32 then
      local cut = string.find(history, '},{', 1, true)
      if cut then
        history = '[' .. string.sub(history, cut + 2)
        count = count - 1
      end
    end
    history = string.sub(history, 1, -2) .. ',' .. entry .. ']'
  end
  redis.call('HSET', key, 'history', history, 'events', count + 1, 'updatedAt', string.format('%d', now))
  if status ~= '' then
    redis.call('HSET', key, 'status', status)
    if owner ~= '' then
      redis.call('HSET', key, 'owner', owner)
    else
      redis.call('HDEL', key, 'owner')
    end
  end
  if ttl_ms > 0 then
    redis.call('PEXPIRE', key, ttl_ms)
  end
end

-- True when the record says the item is finished (completed or failed).
local function work_finished(key)
  local status = redis.call('HGET', key, 'status')
  return status == 'completed' or status == 'failed'
end
