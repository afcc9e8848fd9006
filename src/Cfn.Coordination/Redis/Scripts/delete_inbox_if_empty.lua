-- Graceful stop (Coordinator.StopAsync): delete the coordinator's inbox and its K2 view only when no signal is pending,
-- in one step. Checked and deleted in two round trips, a signal appended in between would be deleted with the inbox.
-- A signal that arrives after the delete creates a new inbox (lib_send.lua) and waits there for the next instance.
-- KEYS[1] blocking:inbox:{id}   KEYS[2] blocking:signal:{id}
-- Returns the number of keys deleted, or -1 when the inbox still holds signals (nothing deleted).
if redis.call('TYPE', KEYS[1])['ok'] == 'stream' and redis.call('XLEN', KEYS[1]) > 0 then
  return -1
end
return redis.call('DEL', KEYS[1], KEYS[2])
