using Cfn.Coordination.Redis;
using Cfn.Coordination.Security;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Recovery;

/// <summary>How an escalation ended.</summary>
public enum EscalationOutcome
{
    /// <summary>This call escalated: replacement requested, work and signals handed over, state cleaned.</summary>
    Escalated,

    /// <summary>Another handler already escalated this incident (the K8 lock was taken).</summary>
    AlreadyEscalated,

    /// <summary>Something failed; the K8 record says why.</summary>
    Failed,
}

/// <summary>The result of <see cref="EscalationService.EscalateAsync"/>.</summary>
public sealed record EscalationResult(EscalationOutcome Outcome, string DeadCoordinatorId, string? NewCoordinatorId,
    WorkTransferResult? Work, int SignalsHandedOver, CleanupResult? Cleanup);

/// <summary>
/// Escalates a dead coordinator (SPEC §2.13): the K8 record taken with <c>SET NX</c> is the lock (one escalation per
/// incident, whoever calls), a spawn request K9 for a new ID, the notice on <c>swarm:{swarmId}:coordinator:dead</c>,
/// every unfinished work item and every unconsumed signal handed to the replacement, then the dead coordinator's keys
/// cleaned. Logs the TS lines up to <c>Dead coordinator escalation complete</c> (L7, L16).
/// </summary>
public sealed class EscalationService
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
        _logger = redis.LoggerFactory.CreateLogger("Cfn.Coordination.Recovery.Escalation");
        _work = new WorkTransfer(redis, cleanup, metrics, _logger);
        _signals = new SignalHandover(redis, keys, metrics, _logger);
        _spawns = new SpawnRequests(redis.Database, redis.Time, options.EscalationTtlSeconds);
    }

    /// <summary>Spawn requests, for whoever fulfils them.</summary>
    public SpawnRequests Spawns => _spawns;

    /// <summary>
    /// Takes the K8 record as the lock. A record left by an earlier incident of the same ID (a lower fencing token) does
    /// not block this one: it is replaced by compare-and-set, so still only one caller wins.
    /// </summary>
    private async Task<bool> TakeLockAsync(RedisKey key, EscalationRecord record, TimeSpan ttl)
    {
        var database = _redis.Database;
        if (await database.StringSetAsync(key, Json.Serialize(record), ttl, When.NotExists).ConfigureAwait(false))
        {
            return true;
        }

        var raw = (string?)await database.StringGetAsync(key).ConfigureAwait(false);
        var earlier = Json.TryDeserialize<EscalationRecord>(raw, out var existing, out _) ? existing!.FencingToken : 0;
        if (raw is null || earlier >= record.FencingToken)
        {
            return false;
        }

        var swapped = (long)await database.ScriptEvaluateAsync(RedisScripts.CompareAndSet, [key], [raw, Json.Serialize(record)])
            .ConfigureAwait(false);
        if (swapped == 1)
        {
            await database.KeyExpireAsync(key, ttl).ConfigureAwait(false);
        }

        return swapped == 1;
    }

    /// <summary>
    /// Escalates the death of <paramref name="deadId"/>, whose instance was fenced at <paramref name="fenceEpoch"/>.
    /// </summary>
    public async Task<EscalationResult> EscalateAsync(string deadId, string swarmId, long fenceEpoch, long lastHeartbeatMs, string detectedBy)
    {
        var database = _redis.Database;
        _logger.LogWarning("Escalating dead coordinator coordinator={DeadId} swarm={SwarmId}", deadId, swarmId);
        var now = await RedisTime.NowMsAsync(database).ConfigureAwait(false);
        var newId = SpawnRequests.NewCoordinatorId(now);
        var record = new EscalationRecord
        {
            DeadCoordinatorId = deadId,
            SwarmId = swarmId,
            Timestamp = now,
            Status = EscalationStatus.Escalated,
            NewCoordinatorId = newId,
            LastHeartbeat = lastHeartbeatMs,
            DetectedBy = detectedBy,
            FencingToken = fenceEpoch,
        };
        var key = Keys.Escalation(deadId);
        var ttl = TimeSpan.FromSeconds(_options.EscalationTtlSeconds);
        if (!await TakeLockAsync(key, record, ttl).ConfigureAwait(false))
        {
            _metrics.Escalations.WithLabels("already_escalated").Inc();
            _logger.LogInformation("Escalation already in progress or done coordinator={DeadId}; nothing to do", deadId);
            return new EscalationResult(EscalationOutcome.AlreadyEscalated, deadId, null, null, 0, null);
        }

        _logger.LogInformation("Escalation record created coordinator={DeadId} key={Key}", deadId, (string?)key);
        try
        {
            await _spawns.CreateAsync(new SpawnRequest
            {
                NewCoordinatorId = newId,
                ReplacesCoordinatorId = deadId,
                SwarmId = swarmId,
                Timestamp = now,
                Status = SpawnStatus.Pending,
                Priority = "high",
                Reason = "replacement",
                RequestedBy = detectedBy,
                UpdatedAt = now,
            }).ConfigureAwait(false);
            _logger.LogInformation("Spawn request created for new coordinator newCoordinatorId={NewId} replaces={DeadId} swarm={SwarmId}",
                newId, deadId, swarmId);

            var listeners = await DeathNotices.PublishAsync(database, new DeathNotice(deadId, swarmId, now, DeathNotice.SpawnReplacement, newId))
                .ConfigureAwait(false);
            _logger.LogInformation("Notified parent coordinator channel=swarm:{SwarmId}:coordinator:dead subscribers={Subscribers}", swarmId, listeners);

            var work = await _work.TransferAllAsync(swarmId, deadId, newId, fenceEpoch).ConfigureAwait(false);
            var signals = work.Aborted ? 0 : await _signals.MoveAllAsync(deadId, newId).ConfigureAwait(false);
            var cleanup = work.Aborted ? null : await _cleanup.CleanupAsync(deadId, force: true).ConfigureAwait(false);

            // Compare-and-set: the swarm manager may already have settled the replacement (replaced | failed), and a
            // later incident of the same ID (higher fence) owns the record now; neither is overwritten.
            await EscalationRecords.TryUpdateAsync(database, deadId, current =>
                current.NewCoordinatorId == newId && current.FencingToken == fenceEpoch
                    ? current with
                    {
                        Status = EscalationStatus.IsFinal(current.Status) ? current.Status : EscalationStatus.ReplacementRequested,
                        UpdatedAt = EscalationStatus.IsFinal(current.Status) ? current.UpdatedAt : _redis.Time.GetUtcNow().ToUnixTimeMilliseconds(),
                        WorkItemsTransferred = work.Transferred,
                        SignalsHandedOver = signals,
                    }
                    : null).ConfigureAwait(false);
            _metrics.Escalations.WithLabels("escalated").Inc();
            _logger.LogInformation(
                "Dead coordinator escalation complete deadCoordinator={DeadId} newCoordinator={NewId} swarm={SwarmId} workItemsTransferred={Work} signalsHandedOver={Signals}",
                deadId, newId, swarmId, work.Transferred, signals);
            return new EscalationResult(EscalationOutcome.Escalated, deadId, newId, work, signals, cleanup);
        }
        catch (Exception e) when (e is RedisException or TimeoutException)
        {
            _metrics.Escalations.WithLabels("failed").Inc();
            _logger.LogError("Failed to escalate dead coordinator coordinator={DeadId} swarm={SwarmId}: {Error}", deadId, swarmId, e.Message);
            try
            {
                await database.StringSetAsync(key, Json.Serialize(record with { Status = EscalationStatus.Failed, Error = e.Message }), ttl, When.Exists)
                    .ConfigureAwait(false);
            }
            catch (Exception inner) when (inner is RedisException or TimeoutException)
            {
                _logger.LogWarning("Could not record the failed escalation coordinator={DeadId}: {Error}", deadId, inner.Message);
            }

            return new EscalationResult(EscalationOutcome.Failed, deadId, newId, null, 0, null);
        }
    }
}
