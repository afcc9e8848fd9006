-- Shared by consume_signal.lua and inbox_next.lua: RedisScripts prepends it.
-- Marks one inbox entry consumed (SPEC §2.2, D4): acknowledge it in the consumer group, remove it from the stream, and
-- keep K2 truthful: deleted when nothing is left, otherwise showing the newest signal still pending.
-- Returns the number of signals still pending.
local function consume_entry(inbox, view, id, group, ttl)
  redis.call('XACK', inbox, group, id)
  redis.call('XDEL', inbox, id)
  local left = redis.call('XLEN', inbox)
  if left == 0 then
    redis.call('DEL', view)
    return 0
  end
  local newest = redis.call('XREVRANGE', inbox, '+', '-', 'COUNT', 1)
  local fields = newest[1][2]
  for i = 1, #fields, 2 do
    if fields[i] == 'signal' then
      redis.call('SET', view, fields[i + 1], 'EX', ttl)
    end
  end
  return left
end

