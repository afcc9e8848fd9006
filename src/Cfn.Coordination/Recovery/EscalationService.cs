using Cfn.Coordination.Identity;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Recovery;

/// <summary>How an escalation ended.</summary>
internal enum EscalationOutcome
{
    /// <summary>This call escalated: replacement requested, work and signals handed over, state cleaned.</summary>
    Escalated,

    /// <summary>Another handler already escalated this incident (the K8 lock was taken).</summary>
    AlreadyEscalated,

    /// <summary>A step failed (Redis trouble): the lease is given up, so this or another handler resumes it on a later pass (D17).</summary>
    Failed,

    /// <summary>The dead coordinator's ID was restarted under a new epoch before its work moved: nothing to hand over.</summary>
    Superseded,
}

/// <summary>The result of <see cref="EscalationService.EscalateAsync"/>.</summary>
internal sealed record EscalationResult(EscalationOutcome Outcome, string DeadCoordinatorId, string? NewCoordinatorId,
    WorkTransferResult? Work, int SignalsHandedOver, CleanupResult? Cleanup);

/// <summary>
/// Escalates a dead coordinator (SPEC §2.13, D17): the K8 record taken with <c>SET NX</c> is the lock (one escalation per
/// incident, whoever calls); then, as numbered steps recorded in K8 (<see cref="EscalationSteps"/>), every unfinished work
/// item and every unconsumed signal handed to the replacement's new ID, the replacement's spawn request K9 (after the
/// hand-over, so the replacement finds its work when it starts), the notice on <c>swarm:{swarmId}:coordinator:dead</c>,
/// and the dead coordinator's keys cleaned. The handler running it holds a lease in K8, renewed at each step; when it dies
/// (or Redis fails mid-step) the lease runs out and the next handler that sees the dead coordinator resumes after the last
/// recorded step. Each step is idempotent. Logs the TS lines up to <c>Dead coordinator escalation complete</c>, as the runbook quotes them.
/// </summary>
internal sealed class EscalationService
{
    private readonly RedisContext _redis;
    private readonly RecoveryOptions _options;
    private readonly RecoveryMetrics _metrics;
    private readonly CoordinatorCleanup _cleanup;
    private readonly WorkTransfer _work;
    private readonly SignalHandover _signals;
    private readonly SpawnRequests _spawns;
    private readonly ILogger _logger;

    /// <summary>Creates the service.</summary>
    public EscalationService(RedisContext redis, SigningKeys keys, RecoveryOptions options, RecoveryMetrics metrics, CoordinatorCleanup cleanup)
    {
        ArgumentNullException.ThrowIfNull(redis);
        _redis = redis;
        _options = options;
        _metrics = metrics;
        _cleanup = cleanup;
        _logger = redis.LoggerFactory.CreateLogger<EscalationService>();
        _work = new WorkTransfer(redis, metrics, _logger);
        _signals = new SignalHandover(redis, keys, metrics, _logger);
        _spawns = new SpawnRequests(redis.Database, redis.Time, options.EscalationTtlSeconds);
    }

    /// <summary>Spawn requests, for whoever fulfils them.</summary>
    public SpawnRequests Spawns => _spawns;

    /// <summary>
    /// Resumes every escalation that started more than one lease ago and still has steps left, when its handler is gone
    /// (its lease ran out): found in <see cref="Keys.Escalating"/>, so it works even when the dead ID has been restarted
    /// meanwhile (the resumed escalation then gives back what it had moved). Returns how many were taken over.
    /// </summary>
    public async Task<int> ResumeStalledAsync(string handlerId)
    {
        var database = _redis.Database;
        var now = await RedisTime.NowMsAsync(database).ConfigureAwait(false);
        var stalled = await database.SortedSetRangeByScoreAsync(Keys.Escalating, double.NegativeInfinity,
            now - _options.EscalationLease.TotalMilliseconds, Exclude.None, Order.Ascending, 0, 100).ConfigureAwait(false);
        var resumed = 0;
        foreach (var member in stalled)
        {
            var deadId = (string?)member;
            var raw = Ids.IsValidName(deadId) ? (string?)await database.StringGetAsync(Keys.Escalation(deadId!)).ConfigureAwait(false) : null;
            if (raw is null || !Json.TryDeserialize<EscalationRecord>(raw, out var record, out _) || record!.Step == EscalationSteps.Cleaned)
            {
                await database.SortedSetRemoveAsync(Keys.Escalating, member).ConfigureAwait(false); // done, expired or unreadable
                continue;
            }

            if (record.LeaseUntil > now)
            {
                continue; // its handler is alive and renewing
            }

            var result = await EscalateAsync(record.DeadCoordinatorId, record.SwarmId, record.FencingToken, record.LastHeartbeat, handlerId, resume: true)
                .ConfigureAwait(false);
            if (result.Outcome != EscalationOutcome.AlreadyEscalated)
            {
                resumed++;
            }
        }

        return resumed;
    }

    /// <summary>Work hand-over and requeue (the swarm manager requeues a failed replacement's work with it).</summary>
    public WorkTransfer Work => _work;

    /// <summary>
    /// Escalates the death of <paramref name="deadId"/>, whose instance was fenced at <paramref name="fenceEpoch"/>, or
    /// resumes its escalation when another handler started it and its lease has run out (D17). <paramref name="handlerId"/>
    /// names the caller (recorded as <c>detectedBy</c> of a new record and as the lease owner).
    /// </summary>
    /// <param name="deadId">The dead coordinator.</param>
    /// <param name="swarmId">Its swarm.</param>
    /// <param name="fenceEpoch">The epoch its death set.</param>
    /// <param name="lastHeartbeatMs">Its last heartbeat (Redis ms).</param>
    /// <param name="handlerId">The caller.</param>
    /// <param name="resume">
    /// True when called for a death confirmed earlier (to resume a stalled escalation): finding it running under a live
    /// lease is then the normal case and is neither logged nor counted.
    /// </param>
    public async Task<EscalationResult> EscalateAsync(string deadId, string swarmId, long fenceEpoch, long lastHeartbeatMs, string handlerId,
        bool resume = false)
    {
        var database = _redis.Database;
        var key = Keys.Escalation(deadId);
        var now = await RedisTime.NowMsAsync(database).ConfigureAwait(false);
        var lease = (long)_options.EscalationLease.TotalMilliseconds;
        var fresh = new EscalationRecord
        {
            DeadCoordinatorId = deadId,
            SwarmId = swarmId,
            Timestamp = now,
            Status = EscalationStatus.Escalated,
            NewCoordinatorId = SpawnRequests.NewCoordinatorId(now),
            LastHeartbeat = lastHeartbeatMs,
            DetectedBy = handlerId,
            FencingToken = fenceEpoch,
            Step = EscalationSteps.Locked,
            LeaseOwner = handlerId,
            LeaseUntil = now + lease,
        };
        var ttl = TimeSpan.FromSeconds(_options.EscalationTtlSeconds);
        var (record, raw, previousOwner) = await TakeAsync(key, fresh, ttl, now, handlerId).ConfigureAwait(false);
        if (record is null)
        {
            if (!resume)
            {
                _metrics.Escalations.WithLabels("already_escalated").Inc();
                _logger.LogInformation("Escalation already in progress or done coordinator={DeadId}; nothing to do", deadId);
            }

            return new EscalationResult(EscalationOutcome.AlreadyEscalated, deadId, null, null, 0, null);
        }

        // The lock (K8) decides which handler hands the work over: a replica must have it.
        await _redis.Replication.ConfirmAsync("escalation_lock").ConfigureAwait(false);
        if (ReferenceEquals(record, fresh))
        {
            await database.SortedSetAddAsync(Keys.Escalating, deadId, now).ConfigureAwait(false);
            _logger.LogWarning("Escalating dead coordinator coordinator={DeadId} swarm={SwarmId}", deadId, swarmId);
            _logger.LogInformation("Escalation record created coordinator={DeadId} key={Key}", deadId, (string?)key);
        }
        else
        {
            _metrics.Escalations.WithLabels("resumed").Inc();
            _logger.LogWarning("Resuming escalation coordinator={DeadId} step={Step} newCoordinator={NewId} previousHandler={Previous} handler={HandlerId}",
                deadId, record.Step, record.NewCoordinatorId, previousOwner ?? "none", handlerId);
        }

        return await RunStepsAsync(key, record, raw!, handlerId).ConfigureAwait(false);
    }

    /// <summary>
    /// Takes the escalation of this incident: a new K8 record with <c>SET NX</c>; or the record of an earlier incident of
    /// the same ID (a lower fencing token), replaced by compare-and-set; or this incident's record when it is not final and
    /// its lease has run out (its handler died or gave up), leased to <paramref name="handlerId"/>. Returns the record now
    /// held and its stored JSON, or nulls when another handler holds it or it is done.
    /// </summary>
    private async Task<(EscalationRecord? Record, string? Raw, string? PreviousOwner)> TakeAsync(
        RedisKey key, EscalationRecord fresh, TimeSpan ttl, long now, string handlerId)
    {
        var database = _redis.Database;
        var json = Json.Serialize(fresh);
        if (await database.StringSetAsync(key, json, ttl, When.NotExists).ConfigureAwait(false))
        {
            return (fresh, json, null);
        }

        var raw = (string?)await database.StringGetAsync(key).ConfigureAwait(false);
        if (raw is null)
        {
            return (null, null, null); // expired in between: the next pass starts afresh
        }

        if (!Json.TryDeserialize<EscalationRecord>(raw, out var existing, out var error) || !Ids.IsValidName(existing!.NewCoordinatorId))
        {
            _metrics.MalformedValues.WithLabels("escalation").Inc();
            _logger.LogWarning("Malformed escalation record replaced coordinator={DeadId}: {Error}", fresh.DeadCoordinatorId, error ?? "invalid newCoordinatorId");
            return await SwapAsync(key, raw, fresh, ttl).ConfigureAwait(false) ? (fresh, json, null) : (null, null, null);
        }

        if (existing.FencingToken < fresh.FencingToken)
        {
            // An earlier incident of the same ID (it ran again, then died again): this one is new. If the earlier one
            // stopped half-way before its replacement was requested, what it had moved would be stranded: it goes back first.
            if (existing.Step != EscalationSteps.Cleaned && existing.LeaseUntil <= now &&
                EscalationSteps.Order(existing.Step) < EscalationSteps.Order(EscalationSteps.SpawnRequested))
            {
                _logger.LogWarning("Earlier escalation of coordinator={DeadId} stopped at step={Step}: giving back what it moved to {NewId}",
                    existing.DeadCoordinatorId, existing.Step, existing.NewCoordinatorId);
                await _work.RequeueAllAsync(existing.SwarmId, existing.NewCoordinatorId, "escalation_superseded").ConfigureAwait(false);
                await _signals.MoveAllAsync(existing.NewCoordinatorId, existing.DeadCoordinatorId).ConfigureAwait(false);
            }
            else if (existing.Step != EscalationSteps.Cleaned && existing.LeaseUntil > now)
            {
                return (null, null, null); // the earlier one is still running: the next pass takes this incident
            }

            return await SwapAsync(key, raw, fresh, ttl).ConfigureAwait(false) ? (fresh, json, null) : (null, null, null);
        }

        // The swarm manager may have settled the status already (the replacement runs); what matters here is whether the
        // escalation's own steps are done, and whether the handler running them is still within its lease.
        if (existing.FencingToken > fresh.FencingToken || existing.Step == EscalationSteps.Cleaned || existing.LeaseUntil > now)
        {
            return (null, null, null);
        }

        var taken = existing with { LeaseOwner = handlerId, LeaseUntil = now + (long)_options.EscalationLease.TotalMilliseconds };
        return await SwapAsync(key, raw, taken, ttl: null).ConfigureAwait(false)
            ? (taken, Json.Serialize(taken), existing.LeaseOwner)
            : (null, null, null);
    }

    private async Task<bool> SwapAsync(RedisKey key, string expected, EscalationRecord next, TimeSpan? ttl)
    {
        var swapped = (long)await _redis.Database.ScriptEvaluateAsync(RedisScripts.CompareAndSet, [key], [expected, Json.Serialize(next)])
            .ConfigureAwait(false);
        if (swapped == 1 && ttl is { } expiry)
        {
            await _redis.Database.KeyExpireAsync(key, expiry).ConfigureAwait(false);
        }

        return swapped == 1;
    }

    /// <summary>Runs every step after <paramref name="record"/>'s, recording each (and renewing the lease) in K8.</summary>
    private async Task<EscalationResult> RunStepsAsync(RedisKey key, EscalationRecord record, string raw, string handlerId)
    {
        var deadId = record.DeadCoordinatorId;
        var newId = record.NewCoordinatorId;
        var swarmId = record.SwarmId;
        WorkTransferResult? work = null;
        CleanupResult? cleanup = null;
        var signals = 0;
        try
        {
            for (var step = EscalationSteps.Next(record.Step); step is not null; step = EscalationSteps.Next(step))
            {
                // The escalation acts on the dead instance, not on the ID: once the ID runs again under a newer epoch
                // (a pod restarted under its name), nothing of the new instance may be moved or cleaned.
                var epoch = (long?)await _redis.Database.StringGetAsync(Keys.Epoch(deadId)).ConfigureAwait(false);
                if (epoch is { } current && current != record.FencingToken)
                {
                    return await StopForRestartAsync(key, record, raw, step, current, work, signals).ConfigureAwait(false);
                }

                switch (step)
                {
                    case EscalationSteps.WorkTransferred:
                        work = await _work.TransferAllAsync(swarmId, deadId, newId, record.FencingToken).ConfigureAwait(false);
                        if (work.Aborted)
                        {
                            // The ID runs again under a newer epoch: its new instance keeps its work and inbox; no replacement.
                            await EscalationRecords.TryUpdateAsync(_redis.Database, deadId, current => current.FencingToken == record.FencingToken
                                ? current with
                                {
                                    Status = EscalationStatus.Failed,
                                    Step = EscalationSteps.Cleaned, // nothing left to do: the running instance keeps its state
                                    Error = "coordinator restarted under its ID before the hand-over",
                                    LeaseUntil = 0,
                                }
                                : null).ConfigureAwait(false);
                            await _redis.Database.SortedSetRemoveAsync(Keys.Escalating, deadId).ConfigureAwait(false);
                            _metrics.Escalations.WithLabels("superseded").Inc();
                            return new EscalationResult(EscalationOutcome.Superseded, deadId, null, work, 0, null);
                        }

                        record = record with { WorkItemsTransferred = record.WorkItemsTransferred + work.Transferred };
                        await _redis.Replication.ConfirmAsync("work_transfer").ConfigureAwait(false);
                        break;
                    case EscalationSteps.SignalsHandedOver:
                        signals = await _signals.MoveAllAsync(deadId, newId).ConfigureAwait(false);
                        record = record with { SignalsHandedOver = record.SignalsHandedOver + signals };
                        break;
                    case EscalationSteps.SpawnRequested:
                        var requestedAt = await RedisTime.NowMsAsync(_redis.Database).ConfigureAwait(false);
                        await _spawns.EnsureAsync(new SpawnRequest
                        {
                            NewCoordinatorId = newId,
                            ReplacesCoordinatorId = deadId,
                            SwarmId = swarmId,
                            Timestamp = record.Timestamp,
                            Status = SpawnStatus.Pending,
                            Priority = "high",
                            Reason = "replacement",
                            RequestedBy = handlerId,
                            UpdatedAt = requestedAt, // the spawn timeout counts from here, not from the death
                        }).ConfigureAwait(false);
                        _logger.LogInformation("Spawn request created for new coordinator newCoordinatorId={NewId} replaces={DeadId} swarm={SwarmId}",
                            newId, deadId, swarmId);
                        break;
                    case EscalationSteps.Notified:
                        var listeners = await DeathNotices.PublishAsync(_redis.Database,
                            new DeathNotice(deadId, swarmId, record.Timestamp, DeathNotice.SpawnReplacement, newId)).ConfigureAwait(false);
                        _logger.LogInformation("Notified parent coordinator channel=swarm:{SwarmId}:coordinator:dead subscribers={Subscribers}", swarmId, listeners);
                        break;
                    case EscalationSteps.Cleaned:
                        cleanup = await _cleanup.CleanupAsync(deadId, force: true).ConfigureAwait(false);
                        break;
                }

                var (recorded, recordedRaw) = await RecordStepAsync(key, record, raw, step).ConfigureAwait(false);
                if (recorded is null)
                {
                    _logger.LogWarning("Escalation lease lost coordinator={DeadId} step={Step} handler={HandlerId}; another handler carries on", deadId, step, handlerId);
                    return new EscalationResult(EscalationOutcome.AlreadyEscalated, deadId, newId, work, signals, cleanup);
                }

                (record, raw) = (recorded, recordedRaw);
                _logger.LogInformation("Escalation step coordinator={DeadId} step={Step} handler={HandlerId}", deadId, step, handlerId);
                if (_options.EscalationStepDelay > TimeSpan.Zero && step != EscalationSteps.Cleaned)
                {
                    await Task.Delay(_options.EscalationStepDelay, _redis.Time).ConfigureAwait(false); // fault injection only
                }
            }

            await _redis.Database.SortedSetRemoveAsync(Keys.Escalating, deadId).ConfigureAwait(false);
            _metrics.Escalations.WithLabels("escalated").Inc();
            _logger.LogInformation(
                "Dead coordinator escalation complete deadCoordinator={DeadId} newCoordinator={NewId} swarm={SwarmId} workItemsTransferred={Work} signalsHandedOver={Signals}",
                deadId, newId, swarmId, record.WorkItemsTransferred, record.SignalsHandedOver);
            return new EscalationResult(EscalationOutcome.Escalated, deadId, newId, work, signals, cleanup);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            _metrics.Escalations.WithLabels("failed").Inc();
            _logger.LogError("Failed to escalate dead coordinator coordinator={DeadId} swarm={SwarmId} step={Step}: {Error}; it is resumed on a later pass",
                deadId, swarmId, record.Step, RedisErrors.FirstClause(e));
            try
            {
                // Give the lease up so that the next pass (of any handler) resumes at once instead of after the lease.
                await SwapAsync(key, raw, record with { LeaseUntil = 0, Error = e.Message }, ttl: null).ConfigureAwait(false);
            }
            catch (Exception inner) when (RedisErrors.IsTransient(inner))
            {
                _logger.LogWarning("Could not release the escalation lease coordinator={DeadId}: {Error}", deadId, inner.Message);
            }

            return new EscalationResult(EscalationOutcome.Failed, deadId, newId, work, signals, cleanup);
        }
    }

    /// <summary>
    /// The dead coordinator's ID was restarted (epoch <paramref name="current"/>) while its escalation ran. Before the
    /// replacement was requested, what was already moved goes back (its work to the front of the queue, its signals to the
    /// restarted ID's inbox) and the record ends <c>failed</c>; after, the replacement comes and keeps what it was given,
    /// and only the cleanup, which would hit the running instance, is left out.
    /// </summary>
    private async Task<EscalationResult> StopForRestartAsync(RedisKey key, EscalationRecord record, string raw, string step, long current,
        WorkTransferResult? work, int signals)
    {
        var deadId = record.DeadCoordinatorId;
        var newId = record.NewCoordinatorId;
        var replacementRequested = EscalationSteps.Order(step) > EscalationSteps.Order(EscalationSteps.SpawnRequested);
        _logger.LogWarning(
            "Escalation stopped: coordinator={DeadId} was restarted under its ID (epoch {Epoch}, death fenced {Fence}) before step={Step}; {What}",
            deadId, current, record.FencingToken, step,
            replacementRequested ? "the replacement keeps what it was given; the running instance is not cleaned" : "what was moved goes back");
        if (!replacementRequested)
        {
            await _work.RequeueAllAsync(record.SwarmId, newId, "owner_restarted").ConfigureAwait(false);
            await _signals.MoveAllAsync(newId, deadId).ConfigureAwait(false);
        }

        await SwapAsync(key, raw, record with
        {
            Step = EscalationSteps.Cleaned,
            LeaseUntil = 0,
            Status = replacementRequested ? record.Status : EscalationStatus.Failed,
            Error = replacementRequested ? record.Error : "coordinator restarted under its ID before its replacement was requested",
            UpdatedAt = await RedisTime.NowMsAsync(_redis.Database).ConfigureAwait(false),
        }, ttl: null).ConfigureAwait(false);
        await _redis.Database.SortedSetRemoveAsync(Keys.Escalating, deadId).ConfigureAwait(false);
        _metrics.Escalations.WithLabels("superseded").Inc();
        return new EscalationResult(EscalationOutcome.Superseded, deadId, replacementRequested ? newId : null, work, signals, null);
    }

    /// <summary>
    /// Records <paramref name="step"/> as done and renews the lease, by compare-and-set against the record this handler
    /// wrote last: if it changed, another handler took the escalation over (this one's lease ran out) and this one stops.
    /// The swarm manager may settle the record meanwhile (replaced | failed); that is kept, and the steps go on.
    /// </summary>
    private async Task<(EscalationRecord? Record, string Raw)> RecordStepAsync(RedisKey key, EscalationRecord record, string raw, string step)
    {
        var now = await RedisTime.NowMsAsync(_redis.Database).ConfigureAwait(false);
        var done = step == EscalationSteps.Cleaned;
        var next = record with
        {
            Step = step,
            LeaseUntil = done ? 0 : now + (long)_options.EscalationLease.TotalMilliseconds,
            Status = done && record.Status == EscalationStatus.Escalated ? EscalationStatus.ReplacementRequested : record.Status,
            UpdatedAt = now,
            Error = null,
        };
        if (await SwapAsync(key, raw, next, ttl: null).ConfigureAwait(false))
        {
            return (next, Json.Serialize(next));
        }

        // Settled by the swarm manager in between (only its status and error changed): carry on from its copy.
        var current = (string?)await _redis.Database.StringGetAsync(key).ConfigureAwait(false);
        if (Json.TryDeserialize<EscalationRecord>(current, out var settled, out _) && settled!.NewCoordinatorId == record.NewCoordinatorId &&
            settled.FencingToken == record.FencingToken && settled.LeaseOwner == record.LeaseOwner && EscalationStatus.IsFinal(settled.Status))
        {
            var merged = next with { Status = settled.Status, Error = settled.Error };
            if (await SwapAsync(key, current!, merged, ttl: null).ConfigureAwait(false))
            {
                return (merged, Json.Serialize(merged));
            }
        }

        return (null, raw);
    }
}
