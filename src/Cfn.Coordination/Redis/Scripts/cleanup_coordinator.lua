-- Delete one coordinator's keys (SPEC §2.12, D14): an explicit key list, enumerated by exact prefixes and segment
-- checks on the client, deleted in one atomic step with the count per category taken from Redis's own DEL replies.
-- Unless forced, a coordinator whose heartbeat is fresh is refused and nothing is deleted.
-- KEYS[1] blocking:coordinators   KEYS[2] coordinator:health   KEYS[3] coordinator:deadlines   KEYS[4] coordinator:swarms
-- KEYS[5] coordinator:stuck   KEYS[6] blocking:heartbeat:{id}   KEYS[7] validator:registry   KEYS[8] coordinator:agents
-- KEYS[9] coordinator:ts-coordinators   KEYS[10] coordinator:ts-heartbeats (the TS watch, CFN_TS_COMPAT)
-- KEYS[11] blocking:inbox:{id}   KEYS[12] blocking:signal:{id} (K2; also among the keys to delete)
-- KEYS[13..] the keys to delete
-- ARGV[1] id   ARGV[2] '1' to force   ARGV[3] stale threshold (ms)
-- ARGV[4] '1' to keep a TS signal in K2 (lib_inbox.lua foreign_view: written by a TS coordinator, never taken; every
-- cleanup but an operator's forced one keeps it, D13). Judged before this batch deletes the inbox, so the caller puts
-- K2 and the inbox in the first batch.
-- ARGV[5..] the category of each of KEYS[13..]
-- The liveness check reads the registry, the TS watch's score (when its K1 was last seen to change: a TS K1 holds no
-- time on the Redis clock), K1 and every key of category 'heartbeat' in the batch (a validator's
-- validator:heartbeat:{id} among them), so any kind's fresh heartbeat refuses the cleanup.
-- Returns {'fresh', ms since the heartbeat} or {'ok', category, count, category, count, ...}.
if ARGV[2] ~= '1' then
  local now = now_ms()
  local last = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]) or '0')
  local seen = tonumber(redis.call('ZSCORE', KEYS[9], ARGV[1]) or '0')
  if seen > last then
    last = seen
  end
  local function newer(key)
    -- A key of another type is no heartbeat (and must not make the cleanup fail).
    if redis.call('TYPE', key)['ok'] == 'string' then
      local ts = tonumber(string.match(redis.call('GET', key), '"timestamp":(%d+)'))
      if ts and ts > last then
        last = ts
      end
    end
  end
  newer(KEYS[6])
  for i = 13, #KEYS do
    if ARGV[i - 8] == 'heartbeat' then
      newer(KEYS[i])
    end
  end
  if last > 0 and now - last <= tonumber(ARGV[3]) then
    return {'fresh', now - last}
  end
end
local counts = {}
local order = {}
local keep_view = ARGV[4] == '1' and foreign_view(KEYS[11], KEYS[12]) ~= nil
for i = 13, #KEYS do
  local category = ARGV[i - 8]
  if counts[category] == nil then
    counts[category] = 0
    order[#order + 1] = category
  end
  if not (keep_view and KEYS[i] == KEYS[12]) then
    counts[category] = counts[category] + redis.call('DEL', KEYS[i])
  end
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('HDEL', KEYS[5], ARGV[1])
-- A dead validator must not be picked for validations any more.
redis.call('ZREM', KEYS[7], ARGV[1])
redis.call('HDEL', KEYS[8], ARGV[1])
-- A dead TS coordinator leaves the watch, as a cfn one leaves the registry (else it is judged dead_already forever).
redis.call('ZREM', KEYS[9], ARGV[1])
redis.call('HDEL', KEYS[10], ARGV[1])
local reply = {'ok'}
if keep_view then
  reply[#reply + 1] = 'ts_signal_kept'
  reply[#reply + 1] = 1
end
for _, category in ipairs(order) do
  reply[#reply + 1] = category
  reply[#reply + 1] = counts[category]
end
return reply
