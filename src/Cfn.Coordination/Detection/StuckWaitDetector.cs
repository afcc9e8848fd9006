using System.Globalization;
using Cfn.Coordination.Background;
using Cfn.Coordination.Activity;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Detection;

/// <summary>A live coordinator still blocking past its wait's timeout.</summary>
/// <param name="CoordinatorId">The coordinator.</param>
/// <param name="SignalId">The signal it waits on.</param>
/// <param name="WaitingFor">The coordinators it waits for.</param>
/// <param name="BlockedForMs">How long it has been blocking.</param>
/// <param name="TimeoutMs">Its wait's timeout.</param>
internal sealed record StuckWait(string CoordinatorId, string? SignalId, string? WaitingFor, long BlockedForMs, long TimeoutMs);

/// <summary>
/// Reports stuck waits (SPEC §2.10): a coordinator whose heartbeat is fresh but that is still blocking
/// <see cref="RecoveryOptions.StuckWaitGrace"/> after its wait should have timed out (a coordinator ends its own
/// timed-out waits and counts them itself, so anything past the grace is hung). Found through the deadlines index
/// (O(log N + overdue)), never by scanning. Each wait is reported once: <c>timeout_events_total{reason="blocking"}</c>,
/// the event, and the log lines <c>Coordinator timeout detected</c> / <c>Coordinator timeout event</c>; a handled
/// marker keeps the next check from counting it again.
/// </summary>
internal sealed class StuckWaitDetector(RedisContext redis, RecoveryOptions options, CoordinationMetrics metrics, RecoveryMetrics recoveryMetrics)
{
    private readonly ILogger _logger = redis.LoggerFactory.CreateLogger<StuckWaitDetector>();

    /// <summary>Raised once per stuck wait. Handlers must not throw (they are isolated).</summary>
    public event Action<StuckWait>? StuckWaitDetected;

    /// <summary>One check; returns the waits reported for the first time.</summary>
    public async Task<IReadOnlyList<StuckWait>> CheckAsync()
    {
        var database = redis.Database;
        var now = await RedisTime.NowMsAsync(database).ConfigureAwait(false);
        var overdue = await database.SortedSetRangeByScoreAsync(Keys.Deadlines, double.NegativeInfinity,
            now - (long)options.StuckWaitGrace.TotalMilliseconds, Exclude.None, Order.Ascending, 0, 1000).ConfigureAwait(false);
        var found = new List<StuckWait>();
        foreach (var member in overdue)
        {
            var id = (string)member!;
            try
            {
                await CheckOneAsync(database, id, now, found).ConfigureAwait(false);
            }
            catch (Exception e) when (LoopHealth.IsRecordFault(e))
            {
                // One coordinator's bad state (a value or ID that throws, a wrong-typed key) must not stop the others' checks.
                redis.Loops.RecordFailed(LoopNames.StuckWaits, _logger, (Identity.Ids.IsValidName(id) ? Keys.Activity(id) : Keys.Deadlines).ToString(), e);
            }
        }

        return found;
    }

    private async Task CheckOneAsync(IDatabase database, string id, long now, List<StuckWait> found)
    {
        if (!Identity.Ids.IsValidName(id))
        {
            await database.SortedSetRemoveAsync(Keys.Deadlines, id).ConfigureAwait(false);
            return;
        }

        // A dead coordinator is the heartbeat monitor's case (reason "heartbeat"), not a stuck wait.
        var lastBeat = await database.SortedSetScoreAsync(Keys.Registry, id).ConfigureAwait(false);
        if (lastBeat is null || now - (long)lastBeat.Value > options.HeartbeatStaleThreshold.TotalMilliseconds)
        {
            return;
        }

        string? raw;
        try
        {
            raw = (string?)await database.StringGetAsync(Keys.Activity(id)).ConfigureAwait(false);
        }
        catch (RedisServerException e)
        {
            recoveryMetrics.MalformedValues.WithLabels("activity").Inc();
            _logger.LogWarning("Malformed activity record skipped coordinator={CoordinatorId}: {Error}", id, e.Message);
            return;
        }

        if (raw is null)
        {
            return;
        }

        if (!Json.TryDeserialize<ActivityRecord>(raw, out var activity, out var error))
        {
            recoveryMetrics.MalformedValues.WithLabels("activity").Inc();
            _logger.LogWarning("Malformed activity record skipped coordinator={CoordinatorId}: {Error}", id, error);
            return;
        }

        if (activity!.Status != "blocking")
        {
            return;
        }

        var marker = string.Create(CultureInfo.InvariantCulture, $"{activity.WaitingForSignal}|{activity.BlockingSince}");
        if (!await MarkReportedAsync(id, marker).ConfigureAwait(false))
        {
            return; // already reported: one count per wait
        }

        var stuck = new StuckWait(id, activity.WaitingForSignal, activity.WaitingFor, now - (activity.BlockingSince ?? now),
            activity.TimeoutMs ?? 0);
        found.Add(stuck);
        metrics.CountTimeout(id, "blocking");
        _logger.LogWarning(
            "Coordinator timeout detected coordinator={CoordinatorId} signalId={SignalId} waitingFor={WaitingFor} blockedForMs={BlockedFor} timeoutMs={TimeoutMs}",
            id, stuck.SignalId, stuck.WaitingFor, stuck.BlockedForMs, stuck.TimeoutMs);
        _logger.LogError(
            "Coordinator timeout event coordinator={CoordinatorId} reason=\"Coordinator blocking for {Seconds}s past its {TimeoutSeconds}s timeout\"",
            id, stuck.BlockedForMs / 1000, stuck.TimeoutMs / 1000);
        try
        {
            StuckWaitDetected?.Invoke(stuck);
        }
#pragma warning disable CA1031 // a subscriber's failure must never stop the handler
        catch (Exception e)
#pragma warning restore CA1031
        {
            _logger.LogError(e, "StuckWaitDetected handler failed coordinator={CoordinatorId}", id);
        }
    }

    /// <summary>Records the handled marker; false when this wait was already reported (by any handler).</summary>
    private async Task<bool> MarkReportedAsync(string id, string marker)
    {
        var database = redis.Database;
        var previous = (string?)await database.HashGetAsync(Keys.StuckReported, id).ConfigureAwait(false);
        if (previous == marker)
        {
            return false;
        }

        var swapped = (long)await database.ScriptEvaluateAsync(RedisScripts.HashCompareAndSet, [Keys.StuckReported],
            [id, previous ?? string.Empty, marker]).ConfigureAwait(false);
        return swapped == 1;
    }
}
