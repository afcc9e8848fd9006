-- Shared by every script that adds to or takes from an inbox (consume_signal, inbox_next, move_signal and, through
-- lib_send.lua, the four send scripts): RedisScripts prepends it.
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


-- Appends one signal to a receiver's durable inbox (creating the stream and its consumer group on first use), shows it
-- in the K2 view and announces it on the receiver's channel. Returns the stream entry ID.
-- inbox_type: the inbox's TYPE when the caller read it already in this script (saves a command per send), else nil.
local function append_entry(inbox, view, group, message_id, json, ttl, channel, inbox_type)
  if inbox_type == nil then
    inbox_type = redis.call('EXISTS', inbox) == 0 and 'none' or 'stream'
  end
  if inbox_type == 'none' then
    redis.call('XGROUP', 'CREATE', inbox, group, '0', 'MKSTREAM')
  end
  local id = redis.call('XADD', inbox, '*', 'messageId', message_id, 'signal', json)
  redis.call('EXPIRE', inbox, ttl)
  redis.call('SET', view, json, 'EX', ttl)
  redis.call('PUBLISH', channel, 'signal ' .. message_id)
  return id
end
