-- Judge one coordinator (SPEC §2.9 C# dead-detection contract, D5, D6). Atomic, so any number of monitors can run:
-- warnings are spaced by the monitor interval whoever counts them, and exactly one caller gets 'dead'.
-- KEYS[1] blocking:coordinators   KEYS[2] coordinator:health   KEYS[4] coordinator:epoch:{id}
-- KEYS[3] the member's heartbeat key: blocking:heartbeat:{id} (K1), or validator:heartbeat:{id} for a validator (the
-- registry holds both kinds; the caller picks by coordinator:swarms). The registry score is written with either key
-- and taken first, so the heartbeat key only adds writers that skip the registry (TS coordinators, hand-written K1).
-- ARGV[1] id   ARGV[2] stale threshold (ms)   ARGV[3] warnings until dead   ARGV[4] spacing between warnings (ms)
-- ARGV[5] not-before (Redis ms): staleness is counted from no earlier than this (the monitor lost Redis until then)
-- ARGV[6] escalation lease (ms): how long after a death its escalation may run before another monitor resumes it
-- ARGV[7] '1' for a TS coordinator (CFN_TS_COMPAT, D13): KEYS[1] is then coordinator:ts-coordinators, whose score is the
-- Redis ms when the monitor last saw its K1 change. Its K1 is never read for a time: its lastHeartbeat comes from the
-- TS process's own clock (and a stray "timestamp" in it could be just as skewed), so skew cannot cause or hide a death.
-- Returns {verdict, warnings, ms since the last heartbeat, fencing epoch (dead and dead_already), Redis ms when this coordinator
-- next needs looking at (0 = never), 1 when its heartbeat key holds no readable heartbeat}; verdict is one of gone | fresh | recovered | pending | warning | critical | dead |
-- dead_escalating | dead_already.
local now = now_ms()
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
  redis.call('HDEL', KEYS[2], ARGV[1])
  return {'gone', 0, 0, 0, 0, 0}
end
-- Re-read the heartbeat itself (a writer that does not update the registry still counts).
local last = tonumber(score)
local malformed = 0
local hb_type = redis.call('TYPE', KEYS[3])['ok']
if hb_type == 'string' then
  local hb = redis.call('GET', KEYS[3])
  local ts = tonumber(string.match(hb, '"timestamp":(%d+)'))
  if ts and ARGV[7] ~= '1' then
    if ts > last then
      last = ts
    end
  elseif not ts and not (string.match(hb, '^%s*{') and string.match(hb, '"lastHeartbeat":%-?%d')) then
    -- A TS heartbeat (an object with a numeric lastHeartbeat, no timestamp) is a heartbeat, just not one whose time is trusted.
    malformed = 1
  end
elseif hb_type ~= 'none' then
  malformed = 1 -- not a heartbeat at all: judged by the registry alone
end
local age = now - last
local since = math.max(last, tonumber(ARGV[5]))
local stale = now - since
local spacing = tonumber(ARGV[4])
local fresh_until = since + tonumber(ARGV[2]) + 1
local warnings, lastWarn, state = 0, 0, 'healthy'
local health = redis.call('HGET', KEYS[2], ARGV[1])
if health then
  local w, l, s = string.match(health, '^(%d+)|(%d+)|(%a+)$')
  if w then
    warnings, lastWarn, state = tonumber(w), tonumber(l), s
  end
end
if state == 'dead' and age > tonumber(ARGV[2]) then
  -- Still registered after its death, and no heartbeat since: its escalation is running, or has not finished (its
  -- handler died, or Redis failed mid-way). Judged before the outage grace below: a Redis outage must not undo a death
  -- whose hand-over is half done. Within one lease of the death it is left to whoever confirmed it; after that the
  -- caller resumes it (D17). The current epoch is the fence the death set.
  local epoch = tonumber(redis.call('GET', KEYS[4]) or '0') or 0
  if now - lastWarn < tonumber(ARGV[6]) then
    return {'dead_escalating', warnings, age, epoch, lastWarn + tonumber(ARGV[6]), malformed}
  end
  return {'dead_already', warnings, age, epoch, 0, malformed}
end
if stale <= tonumber(ARGV[2]) then
  if warnings > 0 or state ~= 'healthy' then
    redis.call('HDEL', KEYS[2], ARGV[1])
    return {'recovered', warnings, age, 0, fresh_until, malformed}
  end
  return {'fresh', 0, age, 0, fresh_until, malformed}
end
if warnings > 0 and now - lastWarn < spacing then
  return {'pending', warnings, age, 0, lastWarn + spacing, malformed}
end
warnings = warnings + 1
if warnings >= tonumber(ARGV[3]) then
  -- Fence the instance declared dead: from now on nothing it writes lands (D6).
  local epoch = redis.call('INCR', KEYS[4])
  redis.call('EXPIRE', KEYS[4], 604800)
  redis.call('HSET', KEYS[2], ARGV[1], warnings .. '|' .. now .. '|dead')
  return {'dead', warnings, age, epoch, 0, malformed}
end
redis.call('HSET', KEYS[2], ARGV[1], warnings .. '|' .. now .. '|warning')
if warnings == 1 then
  return {'warning', warnings, age, 0, now + spacing, malformed}
end
return {'critical', warnings, age, 0, now + spacing, malformed}
