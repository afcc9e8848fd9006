using System.Globalization;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Wakeups;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Acks;

/// <summary>
/// Blocks until peers have ACKed a signal (SPEC §2.5, D3). The wait sleeps on its wake-up: an ACK script publishes on
/// this coordinator's channel, the waiter then reads every still-missing ACK with one MGET. An idle wait sends no
/// command; lost wake-ups are caught by the process-wide batched fallback check. A malformed, forged, copied or
/// wrongly bound ACK counts as not received, is logged and counted, and never ends the wait. A wait that times out
/// counts <c>signals_failed_total{reason="ack_timeout"}</c> once per receiver that did not ACK.
/// </summary>
public sealed class AckWaiter
{
    /// <summary>Longest wait accepted (well inside what a timer can represent).</summary>
    public static readonly TimeSpan MaxTimeout = TimeSpan.FromDays(7);

    private readonly Coordinator _coordinator;
    private readonly ILogger _logger;

    internal AckWaiter(Coordinator coordinator, ILogger logger)
    {
        _coordinator = coordinator;
        _logger = logger;
    }

    private RedisContext Redis => _coordinator.Redis;

    private SigningKeys Signing => _coordinator.SigningKeys;

    private CoordinationMetrics Telemetry => _coordinator.Metrics;

    /// <summary>
    /// Waits until every coordinator in <paramref name="coordinatorIds"/> has a valid ACK of <paramref name="signalId"/>,
    /// or the timeout passes (<c>BLOCKING_TIMEOUT_MS</c> when null), or the wait is cancelled or force-unblocked.
    /// </summary>
    /// <exception cref="InvalidIdException">An ID is invalid; nothing was written.</exception>
    public Task<AckWaitResult> WaitForAcksAsync(
        IEnumerable<string> coordinatorIds,
        string signalId,
        TimeSpan? timeout = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(coordinatorIds);
        Ids.RequireSignalId(signalId, "signalId");
        var targets = new List<Target>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var id in coordinatorIds)
        {
            Ids.RequireName(id, "coordinatorIds");
            if (seen.Add(id))
            {
                targets.Add(new Target(id, signalId)); // duplicates would never be satisfied (W3)
            }
        }

        return WaitAsync(targets, signalId, timeout, countFailures: true, cancellationToken);
    }

    /// <summary>
    /// One attempt of <see cref="SignalRetrier"/>: like the first overload for one receiver, but a timeout is not counted
    /// in <c>signals_failed_total</c>; the retrier counts the signal once, when every attempt is exhausted.
    /// </summary>
    internal Task<AckWaitResult> WaitForRetryAttemptAsync(string receiverId, string signalId, TimeSpan timeout, CancellationToken cancellationToken)
    {
        Ids.RequireName(receiverId, "receiverId");
        Ids.RequireSignalId(signalId, "signalId");
        return WaitAsync([new Target(receiverId, signalId)], signalId, timeout, countFailures: false, cancellationToken);
    }

    /// <summary>
    /// One wait for several receivers that each ACK their own signal (a signal's ID is its message ID, which names its
    /// receiver): ends when every coordinator (key) has a valid ACK of its signal ID (value), or as the overload above.
    /// One <c>Waiting for ACKs</c> line and one K7 wait name all of them; the result's <see cref="AckWaitResult.SignalId"/>
    /// is the first target's signal ID.
    /// </summary>
    /// <exception cref="InvalidIdException">An ID is invalid; nothing was written.</exception>
    /// <exception cref="ArgumentException">No target was given.</exception>
    public Task<AckWaitResult> WaitForAcksAsync(
        IEnumerable<KeyValuePair<string, string>> signalIdsByCoordinator,
        TimeSpan? timeout = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(signalIdsByCoordinator);
        var targets = new List<Target>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (id, signalId) in signalIdsByCoordinator)
        {
            Ids.RequireName(id, "coordinatorIds");
            Ids.RequireSignalId(signalId, "signalId");
            if (seen.Add(id))
            {
                targets.Add(new Target(id, signalId));
            }
        }

        if (targets.Count == 0)
        {
            throw new ArgumentException("at least one coordinator and signal ID is required", nameof(signalIdsByCoordinator));
        }

        var label = string.Join(',', targets.Select(t => t.SignalId).Distinct(StringComparer.Ordinal));
        return WaitAsync(targets, label, timeout, countFailures: true, cancellationToken);
    }

    private async Task<AckWaitResult> WaitAsync(
        List<Target> targets, string label, TimeSpan? timeout, bool countFailures, CancellationToken cancellationToken)
    {
        var limit = timeout ?? Redis.Options.BlockingTimeout;
        if (limit <= TimeSpan.Zero || limit > MaxTimeout)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), limit, "timeout must be more than 0 and at most 7 days");
        }

        var signalId = targets.Count > 0 ? targets[0].SignalId : label;
        var targetIds = targets.Select(t => t.CoordinatorId).ToList();
        var self = _coordinator.Id;
        var swarm = _coordinator.SwarmId;
        var phase = _coordinator.Phase ?? "none";
        var time = Redis.Time;
        var started = time.GetTimestamp();
        var acks = new Dictionary<string, SignalAck>(StringComparer.Ordinal);
        var rejected = new Dictionary<string, string>(StringComparer.Ordinal);
        var status = AckWaitStatus.Error;

        _logger.LogInformation("Waiting for ACKs signalId={SignalId} coordinators={Coordinators} timeout={TimeoutMs}",
            label, string.Join(',', targetIds), (long)limit.TotalMilliseconds);
        var observer = _coordinator.WaitObserver;
        var info = observer is null ? null : new AckWaitInfo(_coordinator, label, targetIds, limit);
        Notify(observer, info, null);

        using var wait = new PendingWait(self, signalId, targets.Select(t => t.SignalId).ToList());
        var activityToken = _coordinator.Activity.BeginWait(signalId, targetIds, (long)limit.TotalMilliseconds);
        _coordinator.Mailbox.Add(wait);
        Telemetry.WaitStarted(self, swarm, phase, started);
        using var deadline = new CancellationTokenSource(limit, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, cancellationToken, _coordinator.SupersededToken);
        var unblockKey = Keys.Unblock(self);
        try
        {
            var startedAtRedis = await _coordinator.Activity.TryRecordAsync(_logger).ConfigureAwait(false);
            if (startedAtRedis == 0)
            {
                startedAtRedis = time.GetUtcNow().ToUnixTimeMilliseconds();
            }

            var missing = targets;
            wait.MissingKeys = missing.Select(t => Keys.Ack(t.CoordinatorId, t.SignalId)).ToArray();
            while (true)
            {
                if (missing.Count == 0)
                {
                    status = AckWaitStatus.Completed;
                    break;
                }

                if (wait.Forced)
                {
                    status = AckWaitStatus.Forced;
                    break;
                }

                var before = missing.Count;
                try
                {
                    // One round trip: every missing ACK plus this coordinator's force-unblock marker.
                    (missing, var unblockedAt) = await ReadMissingAsync(
                        missing, [.. wait.MissingKeys, unblockKey], acks, rejected).ConfigureAwait(false);
                    if (unblockedAt >= startedAtRedis && missing.Count > 0)
                    {
                        wait.Force(); // the pub/sub wake-up was missed, the marker was not
                        continue;
                    }
                }
                catch (Exception e) when (e is RedisException or TimeoutException)
                {
                    // Redis trouble does not end the wait: keep waiting for a wake-up or the fallback until the deadline.
                    _logger.LogWarning("Redis error while reading ACKs signalId={SignalId}: {Error}", label, e.Message);
                }

                if (missing.Count == 0)
                {
                    continue;
                }

                if (missing.Count != before)
                {
                    // Keys are rebuilt only when someone ACKed, not on every wake-up.
                    wait.MissingKeys = missing.Select(t => Keys.Ack(t.CoordinatorId, t.SignalId)).ToArray();
                    _coordinator.Activity.UpdateWait(activityToken, missing.Select(t => t.CoordinatorId).ToList());
                    await _coordinator.Activity.TryRecordAsync(_logger).ConfigureAwait(false);
                }

                if (!await wait.Wake.WaitAsync(linked.Token).ConfigureAwait(false))
                {
                    status = cancellationToken.IsCancellationRequested || _coordinator.IsSuperseded ? AckWaitStatus.Cancelled
                        : wait.Forced ? AckWaitStatus.Forced
                        : AckWaitStatus.Timeout;
                    break;
                }
            }
        }
        finally
        {
            _coordinator.Mailbox.Remove(wait);
            _coordinator.Activity.EndWait(activityToken);
            Telemetry.WaitEnded(self, swarm, phase, started);
        }

        var duration = time.GetElapsedTime(started);
        var missingIds = targetIds.Where(t => !acks.ContainsKey(t)).ToList();
        var result = new AckWaitResult(signalId, status, acks, missingIds, duration);
        Telemetry.BlockingDuration.WithLabels(swarm, self, result.StatusLabel).Observe(duration.TotalSeconds);
        switch (status)
        {
            case AckWaitStatus.Timeout:
                Telemetry.CountTimeout(self, "blocking");
                if (countFailures)
                {
                    CountUnacknowledged(targets, acks);
                }

                _logger.LogWarning(
                    "ACK wait timeout signalId={SignalId} received={Received} total={Total} missing={Missing} duration={DurationMs}",
                    label, acks.Count, targets.Count, string.Join(',', missingIds), (long)duration.TotalMilliseconds);
                break;
            case AckWaitStatus.Forced:
                _logger.LogWarning("Force unblock received signalId={SignalId} received={Received}/{Total} missing={Missing}",
                    label, acks.Count, targets.Count, string.Join(',', missingIds));
                break;
        }

        _logger.LogInformation(
            "ACK wait complete signalId={SignalId} received={Received} total={Total} duration={DurationMs} status={Status}",
            label, acks.Count, targets.Count, (long)duration.TotalMilliseconds, result.StatusLabel);
        Notify(observer, info, result);
        // The end of the wait reaches K7 without the caller waiting for it (one round trip less on the release path,
        // issue 6 row a). It is issued now, on this coordinator's connection, so it still lands before anything the
        // caller does next; TryRecordAsync never throws for Redis trouble.
        _ = _coordinator.Activity.TryRecordAsync(_logger);
        return result;
    }

    /// <summary>
    /// <c>signals_failed_total{reason="ack_timeout"}</c> once per awaited receiver that did not ACK, labelled with this
    /// (the sending) coordinator and the type named in that receiver's signal ID (<c>unknown</c> when the ID is not a
    /// message ID), so the label values stay a fixed set.
    /// </summary>
    private void CountUnacknowledged(List<Target> targets, Dictionary<string, SignalAck> acks)
    {
        foreach (var target in targets)
        {
            if (!acks.ContainsKey(target.CoordinatorId))
            {
                Telemetry.SignalsFailed.WithLabels(_coordinator.Id, SignalTypes.OfMessageId(target.SignalId), "ack_timeout").Inc();
            }
        }
    }

    /// <summary>Tells the observer, if any, that the wait started (no result) or ended; its failure never changes the wait.</summary>
    private void Notify(IWaitObserver? observer, AckWaitInfo? info, AckWaitResult? result)
    {
        if (observer is null || info is null)
        {
            return;
        }

        try
        {
            if (result is null)
            {
                observer.OnWaitStarted(info);
            }
            else
            {
                observer.OnWaitEnded(info, result);
            }
        }
        catch (Exception e)
        {
            _logger.LogWarning("Wait observer failed coordinator={CoordinatorId}: {Error}", _coordinator.Id, e.Message);
        }
    }

    /// <summary>
    /// Reads the missing ACKs (all keys but the last) and the force-unblock marker (the last key); returns who is still
    /// missing and the marker's time (ms, 0 when absent).
    /// </summary>
    private async Task<(List<Target> Missing, long UnblockedAt)> ReadMissingAsync(
        List<Target> missing, RedisKey[] keys, Dictionary<string, SignalAck> acks, Dictionary<string, string> rejected)
    {
        var values = await Redis.Database.StringGetAsync(keys).ConfigureAwait(false);
        var unblockedAt = long.TryParse((string?)values[^1], NumberStyles.None, CultureInfo.InvariantCulture, out var marker) ? marker : 0;
        var still = new List<Target>(missing.Count);
        for (var i = 0; i < missing.Count; i++)
        {
            var target = missing[i];
            var (id, signalId) = target;
            var raw = (string?)values[i];
            if (raw is null)
            {
                still.Add(target);
                continue;
            }

            var rejection = AckVerifier.Verify(Signing, raw, id, signalId, out var ack);
            if (rejection == AckRejection.None)
            {
                acks[id] = ack!;
                continue;
            }

            still.Add(target);
            // Log and count each bad value once, not on every wake-up.
            if (!rejected.TryGetValue(id, out var previous) || !string.Equals(previous, raw, StringComparison.Ordinal))
            {
                rejected[id] = raw;
                Telemetry.AckVerificationFailures.WithLabels(_coordinator.Id, AckVerifier.Label(rejection)).Inc();
                _logger.LogError(
                    "ACK signature verification failed in waitForAcks coordinatorId={CoordinatorId} signalId={SignalId} key={Key} reason={Reason}",
                    id, signalId, (string)keys[i]!, AckVerifier.Label(rejection));
            }
        }

        return (still, unblockedAt);
    }

    /// <summary>One awaited coordinator and the signal ID it must ACK.</summary>
    private readonly record struct Target(string CoordinatorId, string SignalId);
}
