-- A signal that reached its receiver over HTTP (POST /api/signals/receive) enters the receiver's durable inbox like
-- any other (lib_send.lua): duplicate check by messageId, the inbox cap, the K2 view and the wake-up. The receiver's
-- own inbox reader then ACKs it. The fence is the receiving instance's own epoch: a superseded receiver does not
-- accept signals for the inbox its successor now owns.
-- KEYS[1..6], ARGV[1..8] as deliver_signal, with KEYS[4] = KEYS[6] = coordinator:epoch:{receiverId} and ARGV[7] the
-- receiving instance's epoch.
-- Returns what deliver_signal returned.
return deliver_signal()
