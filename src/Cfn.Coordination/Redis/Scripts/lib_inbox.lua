-- Shared by every script that adds to or takes from an inbox (consume_signal, inbox_next, move_signal and, through
-- lib_send.lua, the four send scripts): RedisScripts prepends it.
-- K2 mirrors the newest inbox entry: append_entry and consume_entry keep it so. A value that is not the newest entry's
-- was written by someone else: a TS coordinator's signal (SPEC K2 as TS writes it, D13), unconsumed. It is never
-- overwritten or deleted here (CFN_TS_COMPAT takes it into the inbox with take_foreign; otherwise it stays until an
-- operator's forced cleanup or its TTL). Returns that value, or nil. pcall: a wrong-typed key holds no signal.
local function foreign_view(inbox, view)
  local raw = redis.pcall('GET', view)
  if type(raw) ~= 'string' then
    return nil
  end
  local newest = redis.pcall('XREVRANGE', inbox, '+', '-', 'COUNT', 1)
  if type(newest) == 'table' and newest[1] then
    local fields = newest[1][2]
    for i = 1, #fields, 2 do
      if fields[i] == 'signal' and fields[i + 1] == raw then
        return nil
      end
    end
  end
  return raw
end

-- Marks one inbox entry consumed (SPEC §2.2, D4): acknowledge it in the consumer group, remove it from the stream, and
-- keep K2 truthful: deleted when nothing is left, otherwise showing the newest signal still pending.
-- Returns the number of signals still pending and, when K2 holds a TS signal (left as it is), that signal.
local function consume_entry(inbox, view, id, group, ttl)
  local foreign = foreign_view(inbox, view)
  redis.call('XACK', inbox, group, id)
  redis.call('XDEL', inbox, id)
  local left = redis.call('XLEN', inbox)
  if foreign then
    return left, foreign -- K2 holds a TS signal nobody has taken yet: it stays
  end
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
-- A TS signal in K2 (foreign_view) is not overwritten: K2 then shows it instead of the newest entry until it is taken.
local function append_entry(inbox, view, group, message_id, json, ttl, channel, inbox_type)
  if inbox_type == nil then
    inbox_type = redis.call('EXISTS', inbox) == 0 and 'none' or 'stream'
  end
  local foreign = foreign_view(inbox, view)
  if inbox_type == 'none' then
    redis.call('XGROUP', 'CREATE', inbox, group, '0', 'MKSTREAM')
  end
  local id = redis.call('XADD', inbox, '*', 'messageId', message_id, 'signal', json)
  redis.call('EXPIRE', inbox, ttl)
  if not foreign then
    redis.call('SET', view, json, 'EX', ttl)
  end
  redis.call('PUBLISH', channel, 'signal ' .. message_id)
  return id
end

-- CFN_TS_COMPAT: a TS signal found in K2 (foreign_view) joins the inbox as its newest entry, marked origin=ts (the
-- receiver then accepts it unsigned), so K2 mirrors the newest entry again: taken exactly once, in this one step.
-- The inbox cap does not apply (K2 holds one signal at a time, and refusing it would lose it). raw: what foreign_view
-- returned in this same script. Returns the entry ID, or nil when the inbox key holds another type (left alone).
local function append_foreign(inbox, group, ttl, raw)
  local inbox_type = redis.call('TYPE', inbox)['ok']
  if inbox_type == 'none' then
    redis.call('XGROUP', 'CREATE', inbox, group, '0', 'MKSTREAM')
  elseif inbox_type ~= 'stream' then
    return nil
  end
  local message_id = string.match(raw, '"messageId"%s*:%s*"([^"]*)"') or ''
  local id = redis.call('XADD', inbox, '*', 'messageId', message_id, 'signal', raw, 'origin', 'ts')
  redis.call('EXPIRE', inbox, ttl)
  return id
end

-- take_foreign: append_foreign of whatever foreign_view finds; nil when K2 holds nothing foreign.
local function take_foreign(inbox, view, group, ttl)
  local raw = foreign_view(inbox, view)
  if not raw then
    return nil
  end
  return append_foreign(inbox, group, ttl, raw)
end
