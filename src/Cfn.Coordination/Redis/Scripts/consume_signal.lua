-- Mark one inbox entry consumed (SPEC §2.2, D4): acknowledge it in the consumer group, remove it from the stream, and
-- keep K2 truthful: deleted when nothing is left, otherwise showing the newest signal still pending.
-- KEYS[1] blocking:inbox:{receiverId}   KEYS[2] blocking:signal:{receiverId}
-- ARGV[1] stream entry id   ARGV[2] consumer group   ARGV[3] signal TTL (s)
-- Returns the number of signals still pending.
redis.call('XACK', KEYS[1], ARGV[2], ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
local left = redis.call('XLEN', KEYS[1])
if left == 0 then
  redis.call('DEL', KEYS[2])
  return 0
end
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local fields = newest[1][2]
for i = 1, #fields, 2 do
  if fields[i] == 'signal' then
    redis.call('SET', KEYS[2], fields[i + 1], 'EX', ARGV[3])
  end
end
return left
