using System.Globalization;
using System.Text.Json;
using Cfn.Coordination.Activity;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Redis;
using Microsoft.Extensions.Logging;

namespace Cfn.Coordination.Recovery;

/// <summary>The answer of <see cref="CoordinatorTimeoutCheck.CheckAsync"/> (SPEC §3.1 #14).</summary>
/// <param name="CoordinatorId">The coordinator checked.</param>
/// <param name="TimedOut">True when it is timed out now.</param>
/// <param name="Kind"><c>heartbeat</c> (dead: K1 stale or gone), <c>blocking</c> (alive but blocking past its timeout), or null.</param>
/// <param name="Reason">What was found, in words.</param>
/// <param name="DurationMs">
/// Heartbeat age for <c>heartbeat</c>, time spent blocking for <c>blocking</c>, otherwise the time since its last
/// activity (K7), or the heartbeat age when it has no K7.
/// </param>
public sealed record TimeoutCheckResult(string CoordinatorId, bool TimedOut, string? Kind, string Reason, long DurationMs);

/// <summary>
/// The playbook's <c>checkCoordinatorTimeout</c> for one coordinator, on demand (<c>POST /api/timeouts/force-check</c>),
/// with the C# reasons of SPEC §2.10: <c>heartbeat</c> when its heartbeat is stale or gone (judged on the Redis clock,
/// D5), <c>blocking</c> when it is alive but blocking past its wait's timeout (K7). Read-only: counting and reporting
/// stay with the heartbeat monitor and the stuck-wait detector, so one incident is still counted once.
/// </summary>
internal sealed class CoordinatorTimeoutCheck(RedisContext redis, RecoveryOptions options)
{
    private readonly ILogger _logger = redis.LoggerFactory.CreateLogger<CoordinatorTimeoutCheck>();

    /// <summary>Checks <paramref name="coordinatorId"/> now; null when it has neither K1 nor K7 (unknown).</summary>
    /// <exception cref="InvalidIdException">The ID is invalid; nothing was read.</exception>
    public async Task<TimeoutCheckResult?> CheckAsync(string coordinatorId)
    {
        Ids.RequireName(coordinatorId, "coordinatorId");
        var database = redis.Database;
        // A coordinator's K1 or a validator's own heartbeat key, whichever exists (the ID does not say which it is).
        var values = await database.StringGetAsync([Keys.Heartbeat(coordinatorId), Keys.ValidatorHeartbeat(coordinatorId), Keys.Activity(coordinatorId)])
            .ConfigureAwait(false);
        var now = await RedisTime.NowMsAsync(database).ConfigureAwait(false);
        var heartbeatRaw = (string?)values[0] ?? (string?)values[1];
        var activityRaw = (string?)values[2];
        if (heartbeatRaw is null && activityRaw is null)
        {
            return null;
        }

        Json.TryDeserialize<ActivityRecord>(activityRaw, out var activity, out _);
        var registryScore = await database.SortedSetScoreAsync(Keys.Registry, coordinatorId).ConfigureAwait(false);
        var lastBeat = Math.Max(HeartbeatTime(heartbeatRaw), (long)(registryScore ?? 0));
        var stale = (long)options.HeartbeatStaleThreshold.TotalMilliseconds;
        TimeoutCheckResult result;
        if (heartbeatRaw is null || lastBeat == 0 || now - lastBeat > stale)
        {
            var age = lastBeat > 0 ? now - lastBeat : now - (activity?.LastActivity ?? now);
            result = new TimeoutCheckResult(coordinatorId, true, "heartbeat",
                heartbeatRaw is null
                    ? string.Create(CultureInfo.InvariantCulture, $"No heartbeat (heartbeat key missing); last activity {age / 1000}s ago")
                    : string.Create(CultureInfo.InvariantCulture, $"Heartbeat stale for {age / 1000}s (threshold: {stale / 1000}s)"),
                age);
        }
        else if (activity is { Status: "blocking" } && activity.BlockingSince is { } since && activity.TimeoutMs is { } timeoutMs &&
                 now - since > timeoutMs)
        {
            result = new TimeoutCheckResult(coordinatorId, true, "blocking",
                string.Create(CultureInfo.InvariantCulture,
                    $"Coordinator blocking for {(now - since) / 1000}s past its {timeoutMs / 1000}s timeout (waiting for {activity.WaitingFor})"),
                now - since);
        }
        else if (activity is { Status: "blocking", BlockingSince: { } blockingSince })
        {
            result = new TimeoutCheckResult(coordinatorId, false, null,
                string.Create(CultureInfo.InvariantCulture,
                    $"Blocking for {(now - blockingSince) / 1000}s, within its {(activity.TimeoutMs ?? 0) / 1000}s timeout"),
                now - blockingSince);
        }
        else
        {
            var idle = activity is null ? now - lastBeat : now - activity.LastActivity;
            result = new TimeoutCheckResult(coordinatorId, false, null,
                string.Create(CultureInfo.InvariantCulture,
                    $"Heartbeat fresh ({(now - lastBeat) / 1000}s old); {activity?.Status ?? "no activity record"}, last activity {idle / 1000}s ago"),
                idle);
        }

        _logger.LogInformation("Timeout force-check coordinator={CoordinatorId} timedOut={TimedOut} kind={Kind} durationMs={DurationMs}: {Reason}",
            coordinatorId, result.TimedOut, result.Kind ?? "none", result.DurationMs, result.Reason);
        return result;
    }

    /// <summary>
    /// The heartbeat's time from <c>timestamp</c> or the TS <c>lastHeartbeat</c>, read leniently: a TS- or
    /// hand-written K1 lacks fields the C# record requires, and must still be judged by its time. 0 when unreadable.
    /// </summary>
    private static long HeartbeatTime(string? raw)
    {
        if (raw is null)
        {
            return 0;
        }

        try
        {
            using var document = JsonDocument.Parse(raw);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return 0;
            }

            foreach (var name in new[] { "timestamp", "lastHeartbeat" })
            {
                if (root.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var ms))
                {
                    return ms;
                }
            }
        }
        catch (JsonException)
        {
            // malformed: no time
        }

        return 0;
    }
}
