-- Shared by work_cas.lua and work_requeue.lua: RedisScripts prepends it.
-- Redis time in ms (D5), and a JSON object whose time fields get that time. The client leaves the time fields out of
-- the JSON and names them (Json.SerializeForStamp); they go first in the object, so nothing inside the JSON is rewritten.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

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
