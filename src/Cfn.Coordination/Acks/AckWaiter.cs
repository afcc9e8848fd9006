using System.Globalization;
using System.Runtime.ExceptionServices;
using System.Text.Json;
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
/// Blocks until peers have ACKed a signal (SPEC §2.5, D3). The wait reads every missing ACK once (one MGET), then
/// sleeps on its wake-up: an ACK script publishes the ACK itself on this coordinator's channel, and the waiter verifies
/// it without another round trip; a wake-up that brings no ACK (the fallback check, a reconnect) reads every
/// still-missing ACK with one MGET. An idle wait sends no command. A malformed, forged, copied or
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

    /// <summary>
    /// Sends a signal to <paramref name="receiverId"/> and waits for its ACK, the two in one round trip to Redis
    /// (<c>send_and_wait.lua</c>): the commonest use of cfn, one round trip cheaper than <see cref="SignalSender.SendAsync"/>
    /// followed by <see cref="WaitForAcksAsync(IEnumerable{string}, string, TimeSpan?, CancellationToken)"/>, with the
    /// same logs, metrics and outcomes. The wait is registered before the signal is written, so no ACK can come first.
    /// </summary>
    /// <exception cref="InvalidIdException">An ID, the type or the payload is invalid; nothing was written.</exception>
    /// <remarks>
    /// A receiver that was declared dead and escalated is replaced by its replacement, as in <see cref="SignalSender.SendAsync"/>:
    /// the wait then awaits the replacement's ACK of the re-addressed signal (<see cref="SignalDeliveryResult.ReceiverId"/>,
    /// <see cref="SignalDeliveryResult.MessageId"/>).
    /// </remarks>
    /// <exception cref="SignalDeliveryException">
    /// Redis failed, the receiver's inbox is full or the receiver is dead with no replacement; the wait ended with status error.
    /// </exception>
    /// <exception cref="CoordinatorSupersededException">This instance was superseded; nothing was written.</exception>
    public async Task<SendAndWaitResult> SendAndWaitAsync(
        string receiverId,
        string type,
        int iteration,
        JsonElement? payload = null,
        TimeSpan? timeout = null,
        CancellationToken cancellationToken = default)
    {
        var send = _coordinator.Signals.Prepare(receiverId, type, iteration, payload, null, null);
        SignalDeliveryResult? delivery = null;
        var wait = await WaitAsync([new Target(receiverId, send.MessageId)], send.MessageId, timeout, countFailures: true, cancellationToken,
            async (awaited, unblockKey, retarget) =>
            {
                (delivery, var begun) = await SendAndBeginAsync(send, awaited, unblockKey, retarget).ConfigureAwait(false);
                return begun;
            }).ConfigureAwait(false);
        return new SendAndWaitResult(delivery!, wait);
    }

    /// <summary>
    /// Runs <c>send_and_wait.lua</c>. When the receiver was escalated, nothing was written: the wait is moved to the
    /// replacement (<paramref name="retarget"/>, before the re-addressed signal is written) and the send goes again.
    /// </summary>
    private async Task<(SignalDeliveryResult Delivery, (long StartedAt, string?[]? Values) Begun)> SendAndBeginAsync(
        PreparedSend send, AwaitedAck[] awaited, RedisKey unblockKey, Func<Target, AwaitedAck[]> retarget)
    {
        var self = _coordinator.Id;
        while (true)
        {
            var write = _coordinator.Activity.Prepare();
            RedisResult[] reply;
            try
            {
                reply = (RedisResult[])(await Redis.Database.ScriptEvaluateAsync(
                    RedisScripts.SendAndWait,
                    [.. SignalSender.SendKeys(send), Keys.Activity(self), Keys.Deadlines, awaited[0].Key, unblockKey],
                    [.. _coordinator.Signals.SendArguments(send), .. write.TrailingArguments(self)]).ConfigureAwait(false))!;
            }
            catch (Exception e) when (e is RedisException or TimeoutException)
            {
                throw _coordinator.Signals.Failed(send, e);
            }

            if (await _coordinator.Signals.RedirectAsync(send, reply).ConfigureAwait(false) is { } redirected)
            {
                send = redirected;
                awaited = retarget(new Target(send.ReceiverId, send.MessageId));
                continue;
            }

            var delivery = _coordinator.Signals.Complete(send, reply); // throws when superseded
            var now = (long)reply[2];
            _coordinator.Activity.Written(now);
            return (delivery, (now, [(string?)reply[3], (string?)reply[4]]));
        }
    }

    private async Task<AckWaitResult> WaitAsync(
        List<Target> targets, string label, TimeSpan? timeout, bool countFailures, CancellationToken cancellationToken,
        Func<AwaitedAck[], RedisKey, Func<Target, AwaitedAck[]>, Task<(long StartedAt, string?[]? Values)>>? begin = null)
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
        ExceptionDispatchInfo? failure = null;

        _logger.LogInformation("Waiting for ACKs signalId={SignalId} coordinators={Coordinators} timeout={TimeoutMs}",
            label, string.Join(',', targetIds), (long)limit.TotalMilliseconds);
        var observer = _coordinator.WaitObserver;
        var info = observer is null ? null : new AckWaitInfo(_coordinator, label, targetIds, limit);
        Notify(observer, info, null);

        using var wait = new PendingWait(self, signalId, targets.Select(t => t.SignalId).ToList());
        var activityToken = _coordinator.Activity.BeginWait(signalId, targetIds, (long)limit.TotalMilliseconds);
        _coordinator.Mailbox.Add(wait);
        Telemetry.WaitStarted(self, swarm, phase, started);
        // One token ends the sleep: the deadline's, cancelled also by the caller and by supersession (two callback
        // registrations cost less memory than a linked source over three tokens; 10,000 waits add up, issue 6 row f).
        using var deadline = new CancellationTokenSource(limit, time);
        using var onCancel = cancellationToken.UnsafeRegister(CancelSource, deadline);
        using var onSuperseded = _coordinator.SupersededToken.UnsafeRegister(CancelSource, deadline);
        var unblockKey = Keys.Unblock(self);

        // SendAndWaitAsync's signal went to the receiver's replacement: this (single-target) wait now awaits it.
        AwaitedAck[] Retarget(Target target)
        {
            targets[0] = target;
            targetIds[0] = target.CoordinatorId;
            signalId = label = target.SignalId;
            _coordinator.Mailbox.Retarget(wait, target.SignalId);
            _coordinator.Activity.RetargetWait(activityToken, target.SignalId, [target.CoordinatorId]);
            wait.Missing = Awaited(targets);
            return wait.Missing;
        }

        try
        {
            var missing = targets;
            wait.Missing = Awaited(missing);
            // One round trip announces the wait (K7, deadlines index) and reads every awaited ACK and the marker.
            long startedAtRedis;
            string?[]? firstRead;
            try
            {
                (startedAtRedis, firstRead) = begin is null
                    ? await TryBeginAsync(wait.Missing, unblockKey).ConfigureAwait(false)
                    : await begin(wait.Missing, unblockKey, Retarget).ConfigureAwait(false);
            }
            catch (Exception e) when (e is SignalDeliveryException or CoordinatorSupersededException)
            {
                // The send of SendAndWaitAsync failed: the wait ends (status error) and the caller gets the exception.
                failure = ExceptionDispatchInfo.Capture(e);
                (startedAtRedis, firstRead) = (0, null);
            }

            var readRedis = firstRead is null; // and later, any wake-up that brought no ACK with it reads Redis
            OfferedAck? offered = null;
            while (failure is null)
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
                if (firstRead is not null)
                {
                    (missing, var unblockedAt) = Apply(missing, firstRead, acks, rejected);
                    firstRead = null;
                    if (unblockedAt >= startedAtRedis && missing.Count > 0)
                    {
                        wait.Force(); // a force-unblock that came while the wait was being announced
                        continue;
                    }
                }
                else if (!readRedis)
                {
                    (missing, readRedis) = AcceptOffered(missing, offered, acks, rejected);
                }

                if (readRedis)
                {
                    (missing, var unblocked) = await TryReadMissingAsync(missing, wait.Missing, unblockKey, startedAtRedis, label, acks, rejected)
                        .ConfigureAwait(false);
                    if (unblocked)
                    {
                        wait.Force(); // the pub/sub wake-up was missed, the marker was not
                        continue;
                    }
                }

                if (missing.Count == 0)
                {
                    continue;
                }

                if (missing.Count != before)
                {
                    // Keys are rebuilt only when someone ACKed, not on every wake-up.
                    wait.Missing = Awaited(missing);
                    _coordinator.Activity.UpdateWait(activityToken, missing.Select(t => t.CoordinatorId).ToList());
                    await _coordinator.Activity.TryRecordAsync(_logger).ConfigureAwait(false);
                }

                if (!await wait.Wake.WaitAsync(deadline.Token).ConfigureAwait(false))
                {
                    status = cancellationToken.IsCancellationRequested || _coordinator.IsSuperseded ? AckWaitStatus.Cancelled
                        : wait.Forced ? AckWaitStatus.Forced
                        : AckWaitStatus.Timeout;
                    break;
                }

                offered = wait.TakeOffered();
                readRedis = offered is null;
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
        failure?.Throw();
        // The end of the wait reaches K7 without the caller waiting for it (one round trip less on the release path,
        // issue 6 row a). It is issued now, on this coordinator's connection, so it still lands before anything the
        // caller does next (an operator or the deadlock check never sees an ended wait as blocking for long).
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
    /// One round trip: every missing ACK plus this coordinator's force-unblock marker. Returns who is still missing and
    /// whether a force-unblock newer than the wait was found. Redis trouble does not end the wait (it is logged; the
    /// wait goes on sleeping until a wake-up, the fallback or its deadline).
    /// </summary>
    private async Task<(List<Target> Missing, bool Unblocked)> TryReadMissingAsync(
        List<Target> missing, AwaitedAck[] awaited, RedisKey unblockKey, long startedAtRedis, string label,
        Dictionary<string, SignalAck> acks, Dictionary<string, string> rejected)
    {
        try
        {
            var (still, unblockedAt) = await ReadMissingAsync(missing, ReadKeys(awaited, unblockKey), acks, rejected).ConfigureAwait(false);
            return (still, unblockedAt >= startedAtRedis && still.Count > 0);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            _logger.LogWarning("Redis error while reading ACKs signalId={SignalId}: {Error}", label, e.Message);
            return (missing, false);
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
        return Apply(missing, [.. values.Select(v => (string?)v)], acks, rejected);
    }

    /// <summary>
    /// Announces the wait and reads what it awaits (<c>wait_begin.lua</c>). Returns the Redis time the wait started
    /// and the values of every missing ACK then the force-unblock marker; on Redis trouble (logged) or when this
    /// instance was superseded, the local time and null (the wait then reads, or ends, in its loop).
    /// </summary>
    private async Task<(long StartedAt, string?[]? Values)> TryBeginAsync(AwaitedAck[] awaited, RedisKey unblockKey)
    {
        var self = _coordinator.Id;
        var write = _coordinator.Activity.Prepare();
        var keys = new RedisKey[3 + awaited.Length + 1];
        keys[0] = Keys.Activity(self);
        keys[1] = Keys.Epoch(self);
        keys[2] = Keys.Deadlines;
        for (var i = 0; i < awaited.Length; i++)
        {
            keys[3 + i] = awaited[i].Key;
        }

        keys[^1] = unblockKey;
        try
        {
            var reply = (RedisResult[])(await Redis.Database.ScriptEvaluateAsync(RedisScripts.WaitBegin, keys, write.Arguments(_coordinator.Epoch, self))
                .ConfigureAwait(false))!;
            var now = (long)reply[0];
            if (now < 0)
            {
                _coordinator.MarkSuperseded("activity");
                return (Redis.Time.GetUtcNow().ToUnixTimeMilliseconds(), null);
            }

            _coordinator.Activity.Written(now);
            return (now, [.. reply.Skip(1).Select(r => (string?)r)]);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            _logger.LogWarning("Redis error while recording activity coordinator={CoordinatorId}: {Error}", self, e.Message);
            return (Redis.Time.GetUtcNow().ToUnixTimeMilliseconds(), null);
        }
    }

    /// <summary>
    /// Applies values read for the missing ACKs (all but the last) and the force-unblock marker (the last); returns
    /// who is still missing and the marker's time (ms, 0 when absent).
    /// </summary>
    private (List<Target> Missing, long UnblockedAt) Apply(
        List<Target> missing, string?[] values, Dictionary<string, SignalAck> acks, Dictionary<string, string> rejected)
    {
        var unblockedAt = long.TryParse(values[^1], NumberStyles.None, CultureInfo.InvariantCulture, out var marker) ? marker : 0;
        var still = new List<Target>(missing.Count);
        for (var i = 0; i < missing.Count; i++)
        {
            var raw = values[i];
            if (raw is null || !Accept(missing[i], raw, acks, rejected))
            {
                still.Add(missing[i]);
            }
        }

        return (still, unblockedAt);
    }

    /// <summary>
    /// Applies the ACKs that came with their wake-ups (no Redis read). Returns who is still missing, and whether Redis
    /// must be read after all: an offered ACK failed verification, so the stored one is looked at too.
    /// </summary>
    private (List<Target> Missing, bool ReadRedis) AcceptOffered(
        List<Target> missing, OfferedAck? offered, Dictionary<string, SignalAck> acks, Dictionary<string, string> rejected)
    {
        var still = missing;
        var readRedis = false;
        for (var ack = offered; ack is not null; ack = ack.Next)
        {
            var index = still.FindIndex(t => string.Equals(t.CoordinatorId, ack.AckerId, StringComparison.Ordinal));
            if (index < 0)
            {
                continue; // not awaited (any more), or not this wait's signal
            }

            if (Accept(still[index], ack.Json, acks, rejected))
            {
                still = ReferenceEquals(still, missing) ? [.. missing] : still;
                still.RemoveAt(index);
            }
            else
            {
                readRedis = true;
            }
        }

        return (still, readRedis);
    }

    /// <summary>
    /// Verifies one ACK value for <paramref name="target"/>; on success records it in <paramref name="acks"/>. A bad
    /// value is logged and counted once (not on every wake-up) and never ends the wait.
    /// </summary>
    private bool Accept(Target target, string raw, Dictionary<string, SignalAck> acks, Dictionary<string, string> rejected)
    {
        var (id, signalId) = target;
        var rejection = AckVerifier.Verify(Signing, raw, id, signalId, out var ack);
        if (rejection == AckRejection.None)
        {
            acks[id] = ack!;
            return true;
        }

        if (!rejected.TryGetValue(id, out var previous) || !string.Equals(previous, raw, StringComparison.Ordinal))
        {
            rejected[id] = raw;
            Telemetry.AckVerificationFailures.WithLabels(_coordinator.Id, AckVerifier.Label(rejection)).Inc();
            _logger.LogError(
                "ACK signature verification failed in waitForAcks coordinatorId={CoordinatorId} signalId={SignalId} key={Key} reason={Reason}",
                id, signalId, (string)Keys.Ack(id, signalId)!, AckVerifier.Label(rejection));
        }

        return false;
    }

    private static void CancelSource(object? source) => ((CancellationTokenSource)source!).Cancel();

    private static AwaitedAck[] Awaited(List<Target> missing) =>
        missing.Select(t => new AwaitedAck(t.CoordinatorId, Keys.Ack(t.CoordinatorId, t.SignalId))).ToArray();

    /// <summary>The missing ACKs' keys, then the force-unblock marker (the layout <see cref="ReadMissingAsync"/> reads).</summary>
    private static RedisKey[] ReadKeys(AwaitedAck[] missing, RedisKey unblockKey)
    {
        var keys = new RedisKey[missing.Length + 1];
        for (var i = 0; i < missing.Length; i++)
        {
            keys[i] = missing[i].Key;
        }

        keys[^1] = unblockKey;
        return keys;
    }

    /// <summary>One awaited coordinator and the signal ID it must ACK.</summary>
    private readonly record struct Target(string CoordinatorId, string SignalId);
}
