-- Hand one unconsumed signal of a dead coordinator to its replacement (SPEC §2.13, W38): the re-addressed, re-signed
-- signal is appended to the replacement's inbox and the entry leaves the dead inbox in the same step, so it is never
-- lost and never delivered twice. The inbox cap (SIGNAL_INBOX_MAX_LENGTH) does not apply: these signals were accepted
-- once already, and refusing them now would drop them. The new message ID gets its idempotency record, so a sender's
-- retry that is redirected to the replacement (lib_send.lua) is a duplicate of the handed-over copy; when that retry
-- came first, the dead copy is only removed.
-- KEYS[1] blocking:inbox:{dead}   KEYS[2] blocking:inbox:{new}   KEYS[3] blocking:signal:{new}   KEYS[4] blocking:signal:{dead}
-- KEYS[5] blocking:idempotency:{new messageId}
-- ARGV[1] dead entry id   ARGV[2] new signal JSON   ARGV[3] messageId   ARGV[4] consumer group   ARGV[5] signal TTL (s)
-- ARGV[6] the replacement's channel   ARGV[7] idempotency TTL (s)
-- Returns 1 when moved (or already in the replacement's inbox), 0 when the entry was already gone.
if #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1]) == 0 then
  return 0
end
if redis.call('SET', KEYS[5], '1', 'NX', 'EX', ARGV[7]) then
  if redis.call('EXISTS', KEYS[2]) == 0 then
    redis.call('XGROUP', 'CREATE', KEYS[2], ARGV[4], '0', 'MKSTREAM')
  end
  redis.call('XADD', KEYS[2], '*', 'messageId', ARGV[3], 'signal', ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
  redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[5])
  redis.call('PUBLISH', ARGV[6], 'signal ' .. ARGV[3])
end
redis.call('XACK', KEYS[1], ARGV[4], ARGV[1])
redis.call('XDEL', KEYS[1], ARGV[1])
if redis.call('XLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[4])
end
return 1
