-- Delete one coordinator's keys (SPEC §2.12, D14): an explicit key list, enumerated by exact prefixes and segment
-- checks on the client, deleted in one atomic step with the count per category taken from Redis's own DEL replies.
-- Unless forced, a coordinator whose heartbeat is fresh is refused and nothing is deleted.
-- KEYS[1] blocking:coordinators   KEYS[2] coordinator:health   KEYS[3] coordinator:deadlines   KEYS[4] coordinator:swarms
-- KEYS[5] coordinator:stuck   KEYS[6] blocking:heartbeat:{id}   KEYS[7] validator:registry   KEYS[8] coordinator:agents
-- KEYS[9] coordinator:ts-coordinators   KEYS[10] coordinator:ts-heartbeats (the TS watch, CFN_TS_COMPAT)
-- KEYS[11..] the keys to delete
-- ARGV[1] id   ARGV[2] '1' to force   ARGV[3] stale threshold (ms)   ARGV[4..] the category of each of KEYS[11..]
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
  for i = 11, #KEYS do
    if ARGV[i - 7] == 'heartbeat' then
      newer(KEYS[i])
    end
  end
  if last > 0 and now - last <= tonumber(ARGV[3]) then
    return {'fresh', now - last}
  end
end
local counts = {}
local order = {}
for i = 11, #KEYS do
  local category = ARGV[i - 7]
  if counts[category] == nil then
    counts[category] = 0
    order[#order + 1] = category
  end
  counts[category] = counts[category] + redis.call('DEL', KEYS[i])
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
for _, category in ipairs(order) do
  reply[#reply + 1] = category
  reply[#reply + 1] = counts[category]
end
return reply
