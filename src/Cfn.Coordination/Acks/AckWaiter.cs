using System.Globalization;
using System.Runtime.ExceptionServices;
using System.Text.Json;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Recovery;
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
/// <para>
/// A peer that dies does not hold the wait to its timeout (D18). When it was escalated, its unconsumed signals went to
/// its replacement under an ID naming the replacement, and the replacement's ACK of that ID (verified like any ACK)
/// counts for the dead peer; chains of replacements are followed. When nothing will come in its place (auto-escalation
/// off, the replacement failed to start), the wait ends at once with <see cref="AckWaitStatus.PeerDead"/>. The death
/// is learnt from the C1 notice or, when that was lost, from the peer's K8 record read by the fallback check
/// (<see cref="WakeHub"/>); a peer that merely is not in the registry (a TS coordinator) is never judged dead.
/// </para>
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
                targets.Add(new Target(id, signalId)); // a duplicate target would wait for a second ACK that never comes
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
                    [.. SignalSender.SendKeys(send), _coordinator.Activity.OwnKeys.Activity, Keys.Deadlines, awaited[0].Key, unblockKey],
                    [.. _coordinator.Signals.SendArguments(send), .. write.TrailingArguments(self)]).ConfigureAwait(false))!;
            }
            catch (Exception e) when (RedisErrors.IsTransient(e))
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
            _coordinator.Activity.Written(now, write);
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

        if (_logger.IsEnabled(LogLevel.Information))
        {
            _logger.WaitingForAcks(label, string.Join(',', targetIds), (long)limit.TotalMilliseconds);
        }
        var observer = _coordinator.WaitObserver;
        var info = observer is null ? null : new AckWaitInfo(_coordinator, label, targetIds, limit);
        Notify(observer, info, null);

        using var wait = new PendingWait(self, signalId, targets.Select(t => t.SignalId).ToList());
        var activityToken = _coordinator.Activity.BeginWait(signalId, targetIds, (long)limit.TotalMilliseconds);
        _coordinator.Mailbox.Add(wait);
        Telemetry.WaitStarted(self, swarm, phase, started);
        // One token ends the sleep: the deadline's, cancelled also by the caller and by supersession (two callback
        // registrations cost less memory than a linked source over three tokens; 10,000 waits add up: benchmark row f).
        using var deadline = new CancellationTokenSource(limit, time);
        using var onCancel = cancellationToken.UnsafeRegister(CancelSource, deadline);
        using var onSuperseded = _coordinator.SupersededToken.UnsafeRegister(CancelSource, deadline);
        var unblockKey = _coordinator.Activity.OwnKeys.Unblock;

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
            Redis.Wakeups.WaitStarted(wait);
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
            var fatesApplied = 0;
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

                if (wait.FatesVersion != fatesApplied)
                {
                    fatesApplied = wait.FatesVersion;
                    if (ApplyFates(wait, missing, label))
                    {
                        // Read once more: the replacement may have ACKed before this wait learnt of the death, and a
                        // peer declared dead may have ACKed just before dying.
                        wait.Missing = Awaited(missing);
                        _coordinator.Activity.UpdateWait(activityToken, Acting(missing));
                        readRedis = true;
                        offered = null;
                        continue;
                    }
                }

                if (missing.Exists(t => t.DeadReason is not null))
                {
                    status = AckWaitStatus.PeerDead;
                    break;
                }

                if (missing.Count != before)
                {
                    // Keys are rebuilt only when someone ACKed, not on every wake-up.
                    wait.Missing = Awaited(missing);
                    _coordinator.Activity.UpdateWait(activityToken, Acting(missing));
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
        var deadPeers = status == AckWaitStatus.PeerDead
            ? targets.Where(t => t.DeadReason is not null && !acks.ContainsKey(t.CoordinatorId)).ToList()
            : [];
        var handedOver = targets.Where(t => t.AckedBy is not null && acks.ContainsKey(t.CoordinatorId))
            .ToDictionary(t => t.CoordinatorId, t => t.AckedBy!, StringComparer.Ordinal);
        var result = new AckWaitResult(signalId, status, acks, missingIds, duration)
        {
            DeadPeers = [.. deadPeers.Select(t => t.CoordinatorId)],
            HandedOver = handedOver,
        };
        Telemetry.BlockingDuration.WithLabels(swarm, self, result.StatusLabel).Observe(duration.TotalSeconds);
        ShortenAcks(targets, acks);
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
            case AckWaitStatus.PeerDead:
                _logger.LogWarning(
                    "ACK wait peer dead signalId={SignalId} deadPeers={DeadPeers} received={Received} total={Total} missing={Missing} duration={DurationMs} reason=\"{Reason}\"",
                    label, string.Join(',', result.DeadPeers), acks.Count, targets.Count, string.Join(',', missingIds),
                    (long)duration.TotalMilliseconds, string.Join("; ", deadPeers.Select(t => $"{t.CoordinatorId}: {t.DeadReason}")));
                break;
        }

        _logger.AckWaitComplete(label, acks.Count, targets.Count, (long)duration.TotalMilliseconds, result.StatusLabel);
        Notify(observer, info, result);
        failure?.Throw();
        // The end of the wait reaches K7 without the caller waiting for it (one round trip less on the release path,
        // benchmark row a). It is issued now, on this coordinator's connection, so it still lands before anything the
        // caller does next (an operator or the deadlock check never sees an ended wait as blocking for long).
        _ = _coordinator.Activity.TryRecordAsync(_logger);
        return result;
    }

    /// <summary>
    /// The ACKs this wait read from their keys have served it: their TTL drops to
    /// <see cref="CoordinationOptions.AckRetentionSeconds"/> (SPEC D23), never raised (<c>PEXPIRE … LT</c>), without a
    /// reply awaited. Those are the ones a TS peer may have written with its own hour; an ACK that came with its wake-up
    /// was written by cfn's <c>ack.lua</c>, which already gives a registered sender's ACK that retention (no command then).
    /// </summary>
    private void ShortenAcks(List<Target> targets, Dictionary<string, SignalAck> acks)
    {
        var retentionMs = _coordinator.Redis.Options.AckRetentionSeconds * 1000L;
        if (retentionMs >= _coordinator.Redis.Options.AckTtlSeconds * 1000L)
        {
            return;
        }

        foreach (var target in targets)
        {
            if (!target.ReadFromRedis || !acks.ContainsKey(target.CoordinatorId))
            {
                continue;
            }

            var link = target.AckedBy is { } by && target.IndexOf(by) is >= 0 and var at ? target.LinkAt(at) : target.LinkAt(0);
            _ = _coordinator.Redis.Database.ExecuteAsync("PEXPIRE", [Keys.Ack(link.AckerId, link.SignalId), retentionMs, "LT"], CommandFlags.FireAndForget);
        }
    }

    /// <summary>
    /// Applies what is known about awaited peers that died (<see cref="PendingWait.Fates"/>) to the missing targets:
    /// a target whose peer (or the replacement it already follows) was escalated now also accepts the replacement's ACK
    /// of the handed-over signal, whose ID names the replacement (<see cref="SignalHandover.HandedOverId"/>), and that ID
    /// wakes this wait; a target whose peer died with nothing coming is marked dead. Returns true when anything changed.
    /// Applying the same fates again changes nothing.
    /// </summary>
    private bool ApplyFates(PendingWait wait, List<Target> missing, string label)
    {
        var changed = false;
        foreach (var fate in wait.Fates)
        {
            foreach (var target in missing)
            {
                var at = target.IndexOf(fate.PeerId);
                var last = target.LinkCount - 1;
                // Only the peer acting now, or the one before it when the fate names a different (or failed) replacement.
                if (target.DeadReason is not null || at < 0 || at < last - 1)
                {
                    continue;
                }

                var by = target.CoordinatorId == fate.PeerId ? "" : $"its replacement {fate.PeerId} ";
                if (fate.Kind == PeerFateKind.Dead)
                {
                    if (at == last || target.LinkAt(last).AckerId == fate.ReplacementId)
                    {
                        target.DeadReason = by + fate.Reason;
                        changed = true;
                    }
                }
                else if (fate.ReplacementId is { } replacement && target.IndexOf(replacement) < 0)
                {
                    var signalId = SignalHandover.HandedOverId(target.LinkAt(at).SignalId, fate.PeerId, replacement);
                    target.Follow(new Link(replacement, signalId));
                    _coordinator.Mailbox.AddSignal(wait, signalId);
                    changed = true;
                    _logger.LogInformation(
                        "ACK wait follows hand-over signalId={SignalId} coordinator={CoordinatorId} dead={DeadId} replacement={NewId} handedOverSignalId={HandedOverSignalId} reason=\"{Reason}\"",
                        label, target.CoordinatorId, fate.PeerId, replacement, signalId, fate.Reason);
                }
            }
        }

        return changed;
    }

    /// <summary>Who each missing target waits on now: itself, or the last replacement it follows (the K7 wait-for list).</summary>
    private static List<string> Acting(List<Target> missing) =>
        missing.Select(t => t.LinkAt(t.LinkCount - 1).AckerId).Distinct(StringComparer.Ordinal).ToList();

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
        catch (Exception e) when (RedisErrors.IsTransient(e))
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
        keys[0] = _coordinator.Activity.OwnKeys.Activity;
        keys[1] = _coordinator.Activity.OwnKeys.Epoch;
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
            if (RedisScripts.IsFenced(reply, out var currentEpoch))
            {
                _coordinator.MarkSuperseded("activity", currentEpoch);
                return (Redis.Time.GetUtcNow().ToUnixTimeMilliseconds(), null);
            }

            var now = (long)reply[0];

            _coordinator.Activity.Written(now, write);
            return (now, [.. reply.Skip(1).Select(r => (string?)r)]);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
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
        var next = 0;
        foreach (var target in missing)
        {
            var accepted = false;
            for (var link = 0; link < target.LinkCount; link++)
            {
                var raw = values[next++];
                accepted = accepted || (raw is not null && Accept(target, target.LinkAt(link), raw, acks, rejected));
            }

            target.ReadFromRedis |= accepted;
            if (!accepted)
            {
                still.Add(target);
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
            // Usually one target per acker; a replacement can also be awaited for itself, so every match is tried.
            var accepted = false;
            (Target Target, Link Link)? tried = null;
            for (var index = 0; index < still.Count && !accepted; index++)
            {
                var link = still[index].IndexOf(ack.AckerId);
                if (link < 0)
                {
                    continue; // not awaited (any more), or not this wait's signal
                }

                tried ??= (still[index], still[index].LinkAt(link));
                if (Accept(still[index], still[index].LinkAt(link), ack.Json, acks, rejected, quiet: true))
                {
                    still = ReferenceEquals(still, missing) ? [.. missing] : still;
                    still.RemoveAt(index);
                    accepted = true;
                }
            }

            if (tried is { } first && !accepted)
            {
                Accept(first.Target, first.Link, ack.Json, acks, rejected); // logs and counts the rejection once
                readRedis = true;
            }
        }

        return (still, readRedis);
    }

    /// <summary>
    /// Verifies one ACK value for <paramref name="target"/>; on success records it in <paramref name="acks"/>. A bad
    /// value is logged and counted once (not on every wake-up) and never ends the wait.
    /// </summary>
    private bool Accept(
        Target target, Link link, string raw, Dictionary<string, SignalAck> acks, Dictionary<string, string> rejected, bool quiet = false)
    {
        var (id, signalId) = link;
        var rejection = AckVerifier.Verify(Signing, raw, id, signalId, out var ack);
        if (rejection == AckRejection.None)
        {
            acks[target.CoordinatorId] = ack!;
            target.AckedBy = id == target.CoordinatorId ? null : id;
            return true;
        }

        if (quiet)
        {
            return false; // the caller may find the ACK good for another target, and logs a rejection itself
        }

        var rejectedKey = id + " " + signalId;
        if (!rejected.TryGetValue(rejectedKey, out var previous) || !string.Equals(previous, raw, StringComparison.Ordinal))
        {
            rejected[rejectedKey] = raw;
            Telemetry.AckVerificationFailures.WithLabels(_coordinator.Id, AckVerifier.Label(rejection)).Inc();
            _logger.LogError(
                "ACK signature verification failed in waitForAcks coordinatorId={CoordinatorId} signalId={SignalId} key={Key} reason={Reason}",
                id, signalId, (string)Keys.Ack(id, signalId)!, AckVerifier.Label(rejection));
        }

        return false;
    }

    private static void CancelSource(object? source) => ((CancellationTokenSource)source!).Cancel();

    /// <summary>Every ACK key that counts for the missing targets, target by target and link by link (the order <see cref="Apply"/> reads).</summary>
    private static AwaitedAck[] Awaited(List<Target> missing)
    {
        var awaited = new List<AwaitedAck>(missing.Count);
        foreach (var target in missing)
        {
            for (var i = 0; i < target.LinkCount; i++)
            {
                var (ackerId, signalId) = target.LinkAt(i);
                awaited.Add(new AwaitedAck(ackerId, Keys.Ack(ackerId, signalId)));
            }
        }

        return [.. awaited];
    }

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

    /// <summary>One ACK that counts for a target: who must write it, and for which signal ID.</summary>
    private readonly record struct Link(string AckerId, string SignalId);

    /// <summary>
    /// One awaited coordinator and the signal ID it must ACK. When it died and its signals were handed over, the
    /// replacement's ACK of the handed-over copy counts too (and so on down a chain of replacements, D18).
    /// </summary>
    private sealed class Target(string coordinatorId, string signalId)
    {
        private List<Link>? _followed;

        public string CoordinatorId { get; } = coordinatorId;

        public string SignalId { get; } = signalId;

        /// <summary>The ACKs that count: the coordinator's own first, then each replacement's.</summary>
        public int LinkCount => 1 + (_followed?.Count ?? 0);

        /// <summary>Set when it died and nothing will ACK in its place: why.</summary>
        public string? DeadReason { get; set; }

        /// <summary>The replacement whose ACK counted, when one did.</summary>
        public string? AckedBy { get; set; }

        /// <summary>Its ACK was read from its key, not carried by a wake-up: it may have been written with a TS peer's TTL.</summary>
        public bool ReadFromRedis { get; set; }

        public Link LinkAt(int index) => index == 0 ? new Link(CoordinatorId, SignalId) : _followed![index - 1];

        public int IndexOf(string ackerId)
        {
            for (var i = 0; i < LinkCount; i++)
            {
                if (LinkAt(i).AckerId == ackerId)
                {
                    return i;
                }
            }

            return -1;
        }

        public void Follow(Link replacement) => (_followed ??= []).Add(replacement);
    }
}
