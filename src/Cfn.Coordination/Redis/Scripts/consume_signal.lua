-- Mark one inbox entry consumed (lib_inbox.lua).
-- KEYS[1] blocking:inbox:{receiverId}   KEYS[2] blocking:signal:{receiverId}
-- ARGV[1] stream entry id   ARGV[2] consumer group   ARGV[3] signal TTL (s)
-- Returns the number of signals still pending.
return (consume_entry(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])) -- the count only
