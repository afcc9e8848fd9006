-- Put TS coordinators under watch (CFN_TS_COMPAT, SPEC D13): they never write the registry, so the monitor would never
-- judge them. An ID in the registry is a cfn participant and is left alone (the registry's meaning is "a cfn
-- coordinator that publishes its ACK wake-ups"). HSETNX keeps what the monitor already saw of a watched ID.
-- KEYS[1] blocking:coordinators   KEYS[2] coordinator:ts-heartbeats   KEYS[3] coordinator:swarms
-- ARGV pairs: id, swarm ('' when unknown)
-- Returns how many IDs were new to the watch.
local added = 0
for i = 1, #ARGV, 2 do
  if not redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    added = added + redis.call('HSETNX', KEYS[2], ARGV[i], '')
    if ARGV[i + 1] ~= '' then
      redis.call('HSETNX', KEYS[3], ARGV[i], ARGV[i + 1])
    end
  end
end
return added
