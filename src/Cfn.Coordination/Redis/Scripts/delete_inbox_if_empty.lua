-- Graceful stop (Coordinator.StopAsync): delete the coordinator's inbox and its K2 view only when no signal is pending,
-- in one step. Checked and deleted in two round trips, a signal appended in between would be deleted with the inbox.
-- A signal that arrives after the delete creates a new inbox (lib_send.lua) and waits there for the next instance.
-- A TS signal in K2 (lib_inbox.lua foreign_view: written by a TS coordinator, never taken) is a pending signal too: it
-- stays for the next instance, and only the empty inbox goes.
-- KEYS[1] blocking:inbox:{id}   KEYS[2] blocking:signal:{id}
-- Returns the number of keys deleted, -1 when the inbox still holds signals (nothing deleted), or -2 when K2 holds a
-- TS signal (kept; the empty inbox was deleted).
if redis.call('TYPE', KEYS[1])['ok'] == 'stream' and redis.call('XLEN', KEYS[1]) > 0 then
  return -1
end
if foreign_view(KEYS[1], KEYS[2]) then
  redis.call('DEL', KEYS[1])
  return -2
end
return redis.call('DEL', KEYS[1], KEYS[2])
