using Cfn.Coordination.Identity;
using Cfn.Coordination.Redis;
using StackExchange.Redis;

namespace Cfn.Coordination.Recovery;

/// <summary>K8 escalation statuses (SPEC K8): <c>escalated → replacement_requested → replaced | failed</c>.</summary>
internal static class EscalationStatus
{
    /// <summary>The record (and lock) was taken; the hand-over is running.</summary>
    public const string Escalated = "escalated";

    /// <summary>The replacement's spawn request exists and the work and signals were handed over.</summary>
    public const string ReplacementRequested = "replacement_requested";

    /// <summary>The replacement runs (its spawn request is <c>ready</c>).</summary>
    public const string Replaced = "replaced";

    /// <summary>The escalation, or the replacement's start, failed.</summary>
    public const string Failed = "failed";

    /// <summary>True for <see cref="Replaced"/> and <see cref="Failed"/>, which nothing moves on from.</summary>
    public static bool IsFinal(string? status) => status is Replaced or Failed;
}

/// <summary>
/// The steps of an escalation (D17), in order; each is idempotent, so a handler that takes over an escalation whose lease
/// expired repeats at most the step that was running.
/// </summary>
internal static class EscalationSteps
{
    /// <summary>The K8 record (the lock) was taken.</summary>
    public const string Locked = "locked";

    /// <summary>The dead coordinator's unfinished work items were moved to the replacement's ID.</summary>
    public const string WorkTransferred = "work_transferred";

    /// <summary>Its unconsumed signals were moved to the replacement's inbox.</summary>
    public const string SignalsHandedOver = "signals_handed_over";

    /// <summary>The replacement's spawn request K9 exists (after the hand-over, so the replacement finds its work at start).</summary>
    public const string SpawnRequested = "spawn_requested";

    /// <summary>The C1 notice was published.</summary>
    public const string Notified = "notified";

    /// <summary>The dead coordinator's keys were removed: the escalation's own part is done.</summary>
    public const string Cleaned = "cleaned";

    /// <summary>Every step, in order.</summary>
    public static readonly IReadOnlyList<string> All = [Locked, WorkTransferred, SignalsHandedOver, SpawnRequested, Notified, Cleaned];

    /// <summary>The position of <paramref name="step"/> in <see cref="All"/> (-1 when null or unknown).</summary>
    public static int Order(string? step) => step is null ? -1 : All.ToList().IndexOf(step);

    /// <summary>The step after <paramref name="step"/> (null after the last; an unknown step starts again from the first).</summary>
    public static string? Next(string? step)
    {
        var index = Order(step);
        return index + 1 < All.Count ? All[index + 1] : null;
    }
}

/// <summary>Changes to a stored K8 record by compare-and-set, so concurrent writers never lose each other's update.</summary>
internal static class EscalationRecords
{
    private const int Attempts = 5;

    /// <summary>
    /// Applies <paramref name="change"/> to the K8 record of <paramref name="deadCoordinatorId"/> and stores the result only
    /// if the record is still the one read (<c>compare_and_set.lua</c>, the key keeps its TTL); re-reads and retries when
    /// another writer got there first. Returns the stored record, or null when there is no readable record,
    /// <paramref name="change"/> returned null (nothing to do), or the record kept changing.
    /// </summary>
    public static async Task<EscalationRecord?> TryUpdateAsync(
        IDatabase database, string deadCoordinatorId, Func<EscalationRecord, EscalationRecord?> change)
    {
        var key = Keys.Escalation(Ids.RequireName(deadCoordinatorId, "deadCoordinatorId"));
        for (var attempt = 0; attempt < Attempts; attempt++)
        {
            var raw = (string?)await database.StringGetAsync(key).ConfigureAwait(false);
            if (!Json.TryDeserialize<EscalationRecord>(raw, out var current, out _) || change(current!) is not { } next)
            {
                return null;
            }

            var swapped = (long)await database.ScriptEvaluateAsync(RedisScripts.CompareAndSet, [key], [raw, Json.Serialize(next)])
                .ConfigureAwait(false);
            if (swapped == 1)
            {
                return next;
            }
        }

        return null;
    }
}
