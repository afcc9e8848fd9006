-- Prepended to every script by RedisScripts, so what most scripts do is written once: read the Redis clock, stamp a
-- JSON object with it, and check the writer's epoch fence. Unused functions cost nothing.

-- The Redis server's clock in integer milliseconds (SPEC D5: liveness and activity times never come from a client's
-- clock, so a coordinator whose clock is wrong cannot look dead).
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A JSON object with its time fields set to `now`. The client serialises the object without them and names them
-- (comma-separated); they go first, so nothing inside the client's JSON is ever parsed or rewritten here.
local function stamp(json, fields, now)
  local head = ''
  for name in string.gmatch(fields, '[^,]+') do
    head = head .. '"' .. name .. '":' .. string.format('%d', now) .. ','
  end
  if json == '{}' then
    return '{' .. string.sub(head, 1, -2) .. '}'
  end
  return '{' .. head .. string.sub(json, 2)
end

-- The epoch fence (SPEC D6): a writer whose epoch is no longer its ID's current one (a newer instance started, or it
-- was declared dead) writes nothing. Returns nil when the writer may go on, else the reply every fenced script gives,
-- {'fenced', currentEpoch}. A missing epoch key means Redis lost its data (a restart without persistence), which is
-- not a newer instance: the writer's epoch is put back, with the week-long expiry every epoch key has.
local function fence(epoch_key, writer_epoch)
  local current = redis.call('GET', epoch_key)
  if not current then
    redis.call('SET', epoch_key, writer_epoch, 'EX', 604800)
    return nil
  end
  if current ~= writer_epoch then
    return {'fenced', current}
  end
  return nil
end
