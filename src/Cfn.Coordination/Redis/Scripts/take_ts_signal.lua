-- Before a dead receiver's inbox is handed over (SignalHandover, CFN_TS_COMPAT): a TS signal left in its K2 joins the
-- inbox (lib_inbox.lua take_foreign), so it is handed over with the rest instead of staying behind.
-- KEYS[1] blocking:inbox:{id}   KEYS[2] blocking:signal:{id}   ARGV[1] consumer group   ARGV[2] signal TTL (s)
-- Returns the new entry's ID, or '' when K2 held no TS signal.
return take_foreign(KEYS[1], KEYS[2], ARGV[1], ARGV[2]) or ''
