namespace Cfn.Coordination.Recovery;

/// <summary>
/// Which coordinators a key belongs to, by exact segments, never by substring (SPEC §2.12; the TS cleanup matched substrings): cleaning
/// <c>coordinator-1</c> must leave <c>coordinator-10</c> alone. Categories are those of the cleanup result.
/// </summary>
internal static class KeyOwnership
{
    /// <summary>Cleanup categories.</summary>
    public const string Heartbeat = "heartbeat";

    /// <inheritdoc cref="Heartbeat"/>
    public const string Acks = "acks";

    /// <inheritdoc cref="Heartbeat"/>
    public const string Signals = "signals";

    /// <inheritdoc cref="Heartbeat"/>
    public const string Idempotency = "idempotency";

    /// <inheritdoc cref="Heartbeat"/>
    public const string Activity = "activity";

    /// <inheritdoc cref="Heartbeat"/>
    public const string Other = "other";

    /// <summary>Every category, in report order.</summary>
    public static readonly IReadOnlyList<string> Categories = [Heartbeat, Acks, Signals, Idempotency, Activity, Other];

    /// <summary>The coordinators <paramref name="key"/> belongs to, each with the key's category.</summary>
    public static IEnumerable<(string CoordinatorId, string Category)> Owners(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        var parts = key.Split(':');
        if (parts.Length >= 3 && parts[0] == "coordinator" && parts[1] == "activity" && parts.Length == 3)
        {
            yield return (parts[2], Activity);
            yield break;
        }

        if (parts.Length == 3 && parts[0] == "validator" && parts[1] == "heartbeat")
        {
            yield return (parts[2], Heartbeat); // a validator's heartbeat
            yield break;
        }

        if (parts.Length == 4 && parts[0] == "swarm" && parts[2] == "blocking")
        {
            yield return (parts[3], Other); // K11 blocking state
            yield break;
        }

        if (parts.Length < 3 || parts[0] != "blocking")
        {
            yield break;
        }

        switch (parts[1])
        {
            case "coordinators":
            case "cleanup":
                yield break;
            case "heartbeat" when parts.Length == 3:
                yield return (parts[2], Heartbeat);
                yield break;
            case "signal" or "inbox" when parts.Length == 3:
                yield return (parts[2], Signals);
                yield break;
            case "ack" when parts.Length >= 4:
                // blocking:ack:{acker}:{signalId}: the acker's own ACK, or an ACK of a signal sent by or to the coordinator.
                foreach (var id in Distinct(parts[2], parts[3], parts.Length > 4 ? parts[4] : null))
                {
                    yield return (id, Acks);
                }

                yield break;
            case "idempotency" when parts.Length >= 4:
                foreach (var id in Distinct(parts[2], parts[3], null))
                {
                    yield return (id, Idempotency);
                }

                yield break;
            case "retry" when parts.Length == 4 && parts[2] == "failed-by":
                // blocking:retry:failed-by:{senderId}: the sender's index of its K6 records.
                yield return (parts[3], Other);
                yield break;
            case "retry" when parts.Length >= 4 && parts[2] == "failed":
                // blocking:retry:failed:{signalId}: the signal's sender and receiver segments.
                foreach (var id in Distinct(parts[3], parts.Length > 4 ? parts[4] : null, null))
                {
                    yield return (id, Other);
                }

                yield break;
            case "retry" when parts.Length >= 4:
                // blocking:retry:{signalId}:{attempt}
                foreach (var id in Distinct(parts[2], parts[3], null))
                {
                    yield return (id, Other);
                }

                yield break;
            default:
                // blocking:unblock:{id}, blocking:warning:{id} (K14) and any other per-coordinator family.
                foreach (var id in parts.Skip(2).Distinct(StringComparer.Ordinal))
                {
                    yield return (id, Other);
                }

                yield break;
        }
    }

    /// <summary>The category of <paramref name="key"/> for <paramref name="coordinatorId"/>, or null when it is not theirs.</summary>
    public static string? CategoryFor(string key, string coordinatorId) =>
        Owners(key).Where(o => string.Equals(o.CoordinatorId, coordinatorId, StringComparison.Ordinal))
            .Select(o => o.Category)
            .FirstOrDefault();

    private static IEnumerable<string> Distinct(string? a, string? b, string? c)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var id in new[] { a, b, c })
        {
            if (!string.IsNullOrEmpty(id) && seen.Add(id))
            {
                yield return id;
            }
        }
    }
}
