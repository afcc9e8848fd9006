-- Hand one unconsumed signal of a dead coordinator to its replacement (SPEC §2.13; dropping them lost signals): the re-addressed, re-signed
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
  append_entry(KEYS[2], KEYS[3], ARGV[4], ARGV[3], ARGV[2], ARGV[5], ARGV[6])
end
-- Out of the dead inbox as if consumed: its K2 view then shows a signal still there, or goes, never the moved one.
consume_entry(KEYS[1], KEYS[4], ARGV[1], ARGV[4], ARGV[5])
return 1
