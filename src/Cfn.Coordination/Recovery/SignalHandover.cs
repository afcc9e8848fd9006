using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Cfn.Coordination.Signals;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Recovery;

/// <summary>
/// Hands a dead coordinator's unconsumed signals to its replacement instead of dropping them (SPEC §2.13; the TS cleanup deleted them with the inbox): each
/// is re-addressed (its message ID names the replacement; <c>handedOverFrom</c> keeps the original), re-signed and
/// moved in one script (<c>move_signal.lua</c>).
/// </summary>
internal sealed class SignalHandover(RedisContext redis, SigningKeys keys, RecoveryMetrics metrics, ILogger logger)
{
    private const int PageSize = 100;

    /// <summary>Moves every entry of <paramref name="deadId"/>'s inbox to <paramref name="newId"/>'s; returns how many moved.</summary>
    public async Task<int> MoveAllAsync(string deadId, string newId)
    {
        ArgumentNullException.ThrowIfNull(redis);
        var database = redis.Database;
        var from = Keys.Inbox(deadId);
        var moved = 0;
        var after = "-";
        var compat = redis.Options.TsCompat;
        if (compat &&
            (string?)await database.ScriptEvaluateAsync(RedisScripts.TakeTsSignal, [from, Keys.Signal(deadId)],
                [Keys.InboxGroup, redis.Options.SignalTtlSeconds]).ConfigureAwait(false) is { Length: > 0 })
        {
            logger.LogInformation("TS signal in {Key} joins the inbox to be handed over from={DeadId}", (string?)Keys.Signal(deadId), deadId);
        }

        while (true)
        {
            var entries = await database.StreamRangeAsync(from, after, "+", PageSize).ConfigureAwait(false);
            if (entries.Length == 0)
            {
                break;
            }

            foreach (var entry in entries)
            {
                after = "(" + entry.Id; // exclusive: continue after this entry whatever happens to it
                var raw = (string?)entry["signal"];
                // A TS signal (CFN_TS_COMPAT) carries no signatures, or only the FAQ one; the copy is signed below.
                var fromTs = compat && string.Equals((string?)entry["origin"], "ts", StringComparison.Ordinal);
                if (!Json.TryDeserialize<Signal>(raw, out var signal, out var error) ||
                    !(fromTs ? SignalSignatures.VerifyFromTs(keys, signal!) : SignalSignatures.Verify(keys, signal!)))
                {
                    // Not a signal anyone could act on (the receiver would refuse it too); it goes with the cleanup.
                    metrics.MalformedValues.WithLabels("signal").Inc();
                    logger.LogWarning("Unusable signal not handed over entry={EntryId} from={DeadId}: {Error}", (string?)entry.Id,
                        deadId, error ?? "invalid signature");
                    continue;
                }

                // A signal whose sender is gone (stopped, or dead and cleaned up) has nobody waiting for it: a receiver
                // would skip it as sender-gone, and moving it would write keys naming that sender again after its cleanup
                // (runbook #85). It goes with this inbox.
                if (await database.SortedSetScoreAsync(Keys.Registry, signal!.SenderId).ConfigureAwait(false) is null &&
                    !await database.KeyExistsAsync(Keys.Heartbeat(signal.SenderId)).ConfigureAwait(false))
                {
                    logger.LogInformation("Signal of a gone sender not handed over messageId={MessageId} sender={SenderId} from={DeadId}",
                        signal.MessageId, signal.SenderId, deadId);
                    continue;
                }

                // The message ID names its receiver: the replacement's copy names the replacement, so nothing the
                // replacement writes (its ACK) matches the runbook's blocking:*{dead}* check; the old ID is kept beside it.
                var readdressed = SignalSignatures.Sign(keys, signal! with
                {
                    ReceiverId = newId,
                    ReceiverEpoch = null,
                    MessageId = HandedOverId(signal.MessageId, deadId, newId),
                    HandedOverFrom = signal.HandedOverFrom ?? signal.MessageId,
                });
                var result = (long)await database.ScriptEvaluateAsync(
                    RedisScripts.MoveSignal,
                    [from, Keys.Inbox(newId), Keys.Signal(newId), Keys.Signal(deadId), Keys.Idempotency(readdressed.MessageId)],
                    [(string?)entry.Id, Json.Serialize(readdressed), readdressed.MessageId, Keys.InboxGroup, redis.Options.SignalTtlSeconds,
                        Keys.Events(newId).ToString(), redis.Options.IdempotencyTtlSeconds]).ConfigureAwait(false);
                moved += (int)result;
            }
        }

        if (moved > 0)
        {
            metrics.SignalsHandedOver.Inc(moved);
            logger.LogInformation("Signals handed over count={Count} from={DeadId} to={NewId}", moved, deadId, newId);
        }

        return moved;
    }

    /// <summary>
    /// The message ID a signal gets when it is handed from <paramref name="deadId"/> to <paramref name="newId"/>: the
    /// receiver segment (the second) replaced, when it names the dead receiver; otherwise unchanged. A waiter computes
    /// the same ID to recognise the replacement's ACK (D18).
    /// </summary>
    internal static string HandedOverId(string messageId, string deadId, string newId)
    {
        var segments = messageId.Split(':');
        if (segments.Length > 1 && segments[1] == deadId)
        {
            segments[1] = newId;
        }

        return string.Join(':', segments);
    }
}
