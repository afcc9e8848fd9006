-- Shared by every script that records progress (activity, send_signal, ack, wait_begin): RedisScripts prepends it, so
-- the K7 write exists once. A script that records progress in the same step as its own write saves the coordinator a
-- round trip per event (benchmark row c).
-- Writes the activity record K7 with its time fields set to `now` (Redis clock, D5) and keeps the coordinator's
-- earliest wait deadline in the deadlines index (the stuck-wait check reads only that).
-- json: K7 without its time fields; fields: comma-separated names of the fields that get `now`;
-- known: earliest known wait deadline (Redis ms, 0 = none; -1 = none, and the writer knows the index holds no deadline
-- of its own, so the ZREM is skipped: a command less on every ACK of a coordinator that is not waiting);
-- starting: timeout (ms) of a wait starting now (0 = none).
local function record_activity(activity_key, deadlines_key, json, ttl, fields, id, known, starting, now)
  redis.call('SET', activity_key, stamp(json, fields, now), 'EX', ttl)
  local deadline = tonumber(known)
  local indexed = deadline >= 0
  if not indexed then
    deadline = 0
  end
  local timeout = tonumber(starting)
  if timeout > 0 and (deadline == 0 or now + timeout < deadline) then
    deadline = now + timeout
  end
  if deadline > 0 then
    redis.call('ZADD', deadlines_key, deadline, id)
  elseif indexed then
    redis.call('ZREM', deadlines_key, id)
  end
end

