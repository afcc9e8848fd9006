using System.Globalization;
using Cfn.Coordination.Background;
using Cfn.Coordination.Metrics;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Cfn.Coordination.Detection;

/// <summary>
/// Finds dead coordinators and validators (SPEC §2.9 C# dead-detection contract, D5, D6). Each pass asks the registry
/// (both kinds; the swarm hash says which heartbeat key a member writes) for the members whose last heartbeat is older
/// than the stale threshold (O(log N + stale), including those whose heartbeat key already expired) and judges each in one atomic script on the Redis clock: consecutive warnings spaced by the monitor
/// interval, kept in Redis so any number of monitors agree, and exactly one of them confirms a death, fencing the dead
/// instance in the same step. A heartbeat that comes back clears the warnings. The monitor then sleeps until the next
/// coordinator can become due (at most the monitor interval), so detection lands close to the configured time.
/// While Redis is unreachable or its breaker is open nothing is judged, and afterwards staleness is counted from the
/// moment Redis came back: an outage is not a mass death.
/// With <see cref="CoordinationOptions.TsCompat"/> on, TS coordinators (which never write the registry) are judged too,
/// by the same script against the TS watch, which scores when each one's K1 was seen to change (<see cref="TsCoordinators"/>).
/// </summary>
internal sealed class HeartbeatMonitor : IAsyncDisposable
{
    private const int CandidateBatch = 1000;
    private static readonly IReadOnlySet<string> EmptyIds = new HashSet<string>(StringComparer.Ordinal);
    private static readonly TimeSpan MinimumSleep = TimeSpan.FromMilliseconds(5);

    private readonly RedisContext _redis;
    private readonly RecoveryOptions _options;
    private readonly CoordinationMetrics _metrics;
    private readonly RecoveryMetrics _recoveryMetrics;
    private readonly EscalationService? _escalation;
    private readonly Func<bool> _redisCircuitOpen;
    private readonly ILogger _logger;
    private readonly BackgroundLoop _loop;
    private readonly HashSet<string> _malformedSeen = new(StringComparer.Ordinal);
    private int _disposed;
    private volatile bool _redisLost;
    private long _notBeforeMs;

    /// <summary>Creates a monitor; <paramref name="escalation"/> runs on confirmed deaths when auto-escalation is on.</summary>
    public HeartbeatMonitor(
        RedisContext redis,
        RecoveryOptions options,
        CoordinationMetrics metrics,
        RecoveryMetrics recoveryMetrics,
        EscalationService? escalation,
        string monitorId,
        Func<bool>? redisCircuitOpen = null)
    {
        ArgumentNullException.ThrowIfNull(redis);
        _redis = redis;
        _options = options;
        _metrics = metrics;
        _recoveryMetrics = recoveryMetrics;
        _escalation = escalation;
        MonitorId = monitorId;
        _redisCircuitOpen = redisCircuitOpen ?? (() => false);
        _logger = redis.LoggerFactory.CreateLogger<HeartbeatMonitor>();
        redis.Multiplexer.ConnectionFailed += OnConnectionFailed;
        redis.PrimaryChanged += OnPrimaryChanged;
        _loop = new BackgroundLoop(redis.Loops, LoopNames.HeartbeatMonitor, null, options.MonitorInterval, ScheduledPassAsync, _logger, redis.Time)
        {
            Schedule = LoopSchedule.AfterPass,
            PassAtStart = true,
        };
    }

    /// <summary>This monitor's name (recorded as <c>detectedBy</c>).</summary>
    public string MonitorId { get; }

    /// <summary>Raised for each death this monitor confirmed, after its escalation. Handlers must not throw (they are isolated).</summary>
    public event Action<CoordinatorDeath>? CoordinatorDied;

    /// <summary>Starts the loop, unless <see cref="RecoveryOptions.EnableHeartbeatMonitoring"/> is off (logged at WARN).</summary>
    public void Start()
    {
        if (!_options.EnableHeartbeatMonitoring)
        {
            _logger.LogWarning(
                "Heartbeat monitoring DISABLED (ENABLE_HEARTBEAT_MONITORING=false): dead coordinators will not be detected, escalated or cleaned up by this handler");
            return;
        }

        _logger.LogInformation(
            "Heartbeat monitoring started monitor={MonitorId} staleThresholdMs={Threshold} monitorIntervalMs={Interval} maxWarnings={MaxWarnings} deathAfterMs={DeathAfter}",
            MonitorId, (long)_options.HeartbeatStaleThreshold.TotalMilliseconds, (long)_options.MonitorInterval.TotalMilliseconds,
            _options.MaxWarnings, (long)_options.DeathAfter.TotalMilliseconds);
        _loop.Start();
    }

    /// <summary>True while the loop runs.</summary>
    public bool IsRunning => _loop.IsRunning;

    /// <summary>One pass: judge every due coordinator, handle deaths, and say when the next one can become due.</summary>
    public async Task<MonitorPass> RunOnceAsync()
    {
        if (_redisCircuitOpen() || !_redis.RedisBreaker.TryAcquire(out var lease))
        {
            _redisLost = true;
            _recoveryMetrics.MonitorPasses.WithLabels("redis_unavailable").Inc();
            return new MonitorPass(0, 0, [], 0, RedisAvailable: false, 0);
        }

        using var trial = lease;
        try
        {
            var pass = await PassAsync().ConfigureAwait(false);
            trial.RecordSuccess();
            return pass;
        }
        catch (RedisServerException e)
        {
            // Redis answered: it is reachable. An error reply is a bug or bad data, not an outage.
            trial.RecordSuccess();
            _recoveryMetrics.MonitorPasses.WithLabels("error").Inc();
            _logger.LogError("Heartbeat monitor pass failed on an error reply: {Error}", e.Message);
            return new MonitorPass(0, 0, [], 0, RedisAvailable: true, 0);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            trial.RecordFailure(e);
            _redisLost = true;
            _recoveryMetrics.MonitorPasses.WithLabels("redis_unavailable").Inc();
            _logger.LogWarning("Redis error in heartbeat monitor pass; no coordinator is judged until Redis is back: {Error}", e.Message);
            return new MonitorPass(0, 0, [], 0, RedisAvailable: false, 0);
        }
    }

    private async Task<MonitorPass> PassAsync()
    {
        var database = _redis.Database;
        var now = await RedisTime.NowMsAsync(database).ConfigureAwait(false);
        if (_redisLost)
        {
            // Heartbeats could not be written while Redis was away: count staleness from now.
            _redisLost = false;
            _notBeforeMs = now;
            _logger.LogWarning("Redis reachable again (or a new primary); heartbeat staleness is counted from {NotBefore}", now);
        }

        var threshold = (long)_options.HeartbeatStaleThreshold.TotalMilliseconds;
        var tsCompat = _redis.Options.TsCompat;
        IReadOnlySet<string> tsWatched = EmptyIds;
        if (tsCompat)
        {
            // TS coordinators (D13): their K1 changes are scored on the Redis clock first, so they are judged like the rest.
            tsWatched = (await TsCoordinators.RefreshAsync(database).ConfigureAwait(false)).Watched;
        }

        var candidates = await database.SortedSetRangeByScoreAsync(Keys.Registry, double.NegativeInfinity, now - threshold,
            Exclude.None, Order.Ascending, 0, CandidateBatch).ConfigureAwait(false);
        var tsCandidates = !tsCompat ? [] : await database.SortedSetRangeByScoreAsync(Keys.TsCoordinators, double.NegativeInfinity, now - threshold,
            Exclude.None, Order.Ascending, 0, CandidateBatch).ConfigureAwait(false);
        var warned = await database.HashKeysAsync(Keys.Health).ConfigureAwait(false);
        // Each ID is judged against the set that scores it: the registry, or the TS watch (a warned TS ID too, so that
        // its heartbeat coming back is seen as a recovery). The refresh let go of every watched ID the registry holds.
        var isTs = new Dictionary<string, bool>(StringComparer.Ordinal);
        foreach (var id in candidates.Select(v => (string)v!))
        {
            isTs.TryAdd(id, false);
        }

        foreach (var id in tsCandidates.Select(v => (string)v!))
        {
            isTs.TryAdd(id, true);
        }

        foreach (var id in warned.Select(v => (string)v!))
        {
            isTs.TryAdd(id, tsWatched.Contains(id));
        }

        var ids = isTs.Keys.ToList();

        int warnings = 0, recovered = 0;
        var deaths = new List<CoordinatorDeath>();
        long nextDue = 0;
        var judged = new List<(string Id, Task<RedisResult> Reply)>();
        // Validators stay in the registry and heartbeat to validator:heartbeat:{id}; their swarm entry says so. Read for
        // the candidates only (O(stale), one round trip). The verdict does not hinge on it: every cfn heartbeat moves the
        // registry score in the same script as its key, and monitor_check.lua takes the newer of the two, so a key read
        // for the wrong kind (an ID that changed kind since this read) only misses a time the score already holds.
        var swarmOf = ids.Count == 0 ? [] : await database.HashGetAsync(Keys.Swarms, [.. ids.Select(id => (RedisValue)id)]).ConfigureAwait(false);
        var position = 0;
        foreach (var id in ids)
        {
            var swarm = (string?)swarmOf[position++];
            var ts = isTs[id];
            if (!Identity.Ids.IsValidName(id))
            {
                await database.SortedSetRemoveAsync(ts ? Keys.TsCoordinators : Keys.Registry, id).ConfigureAwait(false);
                continue;
            }

            // Sent without waiting for each reply: the checks are independent, so a pass costs one pipelined round trip.
            judged.Add((id, database.ScriptEvaluateAsync(
                RedisScripts.MonitorCheck,
                [ts ? Keys.TsCoordinators : Keys.Registry, Keys.Health, ts ? Keys.Heartbeat(id) : Keys.HeartbeatOf(id, swarm), Keys.Epoch(id)],
                [id, threshold, _options.MaxWarnings, (long)_options.MonitorInterval.TotalMilliseconds, _notBeforeMs,
                    (long)_options.EscalationLease.TotalMilliseconds, ts ? "1" : "0"])));
        }

        foreach (var (id, pending) in judged)
        {
            RedisResult[] reply;
            try
            {
                reply = (RedisResult[])(await pending.ConfigureAwait(false))!;
            }
            catch (RedisServerException e)
            {
                // One coordinator's bad state (e.g. a wrong-typed epoch key) must not stop the others being judged.
                _recoveryMetrics.MalformedValues.WithLabels("heartbeat").Inc();
                _logger.LogWarning("Heartbeat check failed for coordinator={CoordinatorId}, skipped: {Error}", id, e.Message);
                continue;
            }

            if ((long)reply[5] == 1 && _malformedSeen.Add(id))
            {
                _recoveryMetrics.MalformedValues.WithLabels("heartbeat").Inc();
                _logger.LogWarning("Heartbeat key exists but data is malformed coordinator={CoordinatorId}; judged by its {Entry}", id,
                    isTs[id] ? "last heartbeat change seen (TS coordinator)" : "registry entry");
            }

            var verdict = (string)reply[0]!;
            var count = (int)(long)reply[1];
            var ageMs = (long)reply[2];
            var due = (long)reply[4];
            if (due > 0)
            {
                nextDue = nextDue == 0 ? due : Math.Min(nextDue, due);
            }

            switch (verdict)
            {
                case "warning":
                    warnings++;
                    _metrics.CountHeartbeatFailure(id, "stale"); // once per incident: only the first warning counts
                    LogStale(id, ageMs, count);
                    break;
                case "critical":
                    warnings++;
                    LogStale(id, ageMs, count);
                    break;
                case "recovered":
                    recovered++;
                    _logger.LogInformation("Coordinator recovered from warning state coordinator={CoordinatorId} previousWarnings={Warnings} heartbeatAgeMs={AgeMs}",
                        id, count, ageMs);
                    break;
                case "dead":
                    try
                    {
                        deaths.Add(await HandleDeathAsync(id, (long)reply[3], ageMs, count, now, isTs[id]).ConfigureAwait(false));
                    }
                    catch (Exception e) when (LoopHealth.IsRecordFault(e))
                    {
                        // One coordinator's bad state (a value or ID that throws) must not stop the others being handled.
                        _redis.Loops.RecordFailed(LoopNames.HeartbeatMonitor, _logger, Keys.Heartbeat(id).ToString(), e);
                    }

                    break;
                case "dead_already":
                    await ResumeEscalationAsync(id, (long)reply[3], ageMs, now, isTs[id]).ConfigureAwait(false);
                    break;
            }
        }

        // Escalations whose handler died: resumed from their recorded step once their lease ran out (D17).
        if (_options.EnableAutoEscalation && _escalation is not null)
        {
            await _escalation.ResumeStalledAsync(MonitorId).ConfigureAwait(false);
        }

        // The oldest coordinator that is still fresh becomes due when its heartbeat crosses the threshold.
        // Both sets are asked before either reply is awaited: one round trip.
        var oldestReads = (tsCompat ? new[] { Keys.Registry, Keys.TsCoordinators } : [Keys.Registry])
            .Select(scored => database.SortedSetRangeByScoreWithScoresAsync(scored, now - threshold, double.PositiveInfinity,
                Exclude.Start, Order.Ascending, 0, 1))
            .ToList();
        foreach (var read in oldestReads)
        {
            var oldestFresh = await read.ConfigureAwait(false);
            if (oldestFresh.Length == 1)
            {
                var due = (long)Math.Max(oldestFresh[0].Score, _notBeforeMs) + threshold + 1;
                nextDue = nextDue == 0 ? due : Math.Min(nextDue, due);
            }
        }

        _recoveryMetrics.MonitorPasses.WithLabels("ok").Inc();
        return new MonitorPass(ids.Count, warnings, deaths, recovered, RedisAvailable: true, nextDue);
    }

    private void LogStale(string id, long ageMs, int warnings) =>
        _logger.LogWarning(
            "Stale heartbeat detected coordinator={CoordinatorId} staleFor={StaleSeconds}s warnings={Warnings}/{MaxWarnings} threshold={ThresholdSeconds}s",
            id, (ageMs / 1000.0).ToString("0.0", CultureInfo.InvariantCulture), warnings, _options.MaxWarnings,
            _options.HeartbeatStaleThreshold.TotalSeconds);

    private async Task<CoordinatorDeath> HandleDeathAsync(string id, long fenceEpoch, long ageMs, int warnings, long now, bool ts)
    {
        var database = _redis.Database;
        // The verdict took the dead instance's fencing epoch: a replica must have it before anything is handed over.
        await _redis.Replication.ConfirmAsync("death_epoch").ConfigureAwait(false);
        var swarm = await SwarmOfAsync(id, ts).ConfigureAwait(false);

        var reason = string.Create(CultureInfo.InvariantCulture, $"{warnings} consecutive warnings - heartbeat stale for {ageMs / 1000}s");
        _logger.LogError("Marking coordinator as DEAD coordinator={CoordinatorId} swarm={SwarmId} reason=\"{Reason}\" fencedAtEpoch={Epoch} monitor={MonitorId}",
            id, swarm, reason, fenceEpoch, MonitorId);
        _metrics.CountTimeout(id, "heartbeat");
        _recoveryMetrics.DeadCoordinators.WithLabels(swarm).Inc();

        EscalationResult? escalation = null;
        var agentKind = (string?)await database.HashGetAsync(Keys.Agents, id).ConfigureAwait(false);
        if (agentKind is not null)
        {
            _recoveryMetrics.Escalations.WithLabels("agent").Inc();
            _logger.LogWarning(
                "Dead agent is not replaced agent={CoordinatorId} kind={Kind} swarm={SwarmId}: no host can start the user's program, so waits on it end peer_dead and its work goes back to the queue",
                id, agentKind, swarm);
            await GiveUpAsync(id, swarm, fenceEpoch, DeathNotice.AgentNotRespawnable).ConfigureAwait(false);
        }
        else if (_options.EnableAutoEscalation && _escalation is not null)
        {
            escalation = await _escalation.EscalateAsync(id, swarm, fenceEpoch, now - ageMs, MonitorId).ConfigureAwait(false);
        }
        else
        {
            _recoveryMetrics.Escalations.WithLabels("disabled").Inc();
            _logger.LogWarning(
                "Auto escalation disabled (ENABLE_AUTO_ESCALATION=false): dead coordinator={CoordinatorId} is not replaced; its work goes back to the queue, its signals stay until an operator acts",
                id);
            await GiveUpAsync(id, swarm, fenceEpoch, DeathNotice.AutoEscalationDisabled).ConfigureAwait(false);
        }

        var death = new CoordinatorDeath(id, swarm, fenceEpoch, ageMs, warnings, escalation);
        try
        {
            CoordinatorDied?.Invoke(death);
        }
#pragma warning disable CA1031 // a subscriber's failure must never stop the monitor (detection of every other death depends on it)
        catch (Exception e)
#pragma warning restore CA1031
        {
            _logger.LogError(e, "CoordinatorDied handler failed coordinator={CoordinatorId}", id);
        }

        return death;
    }

    /// <summary>
    /// A coordinator confirmed dead earlier is still registered: whoever handled its death died or failed before its
    /// escalation finished (the last step removes the registration). Resume it (D17): a new escalation when no record
    /// was ever written, else the recorded one once its lease has run out (<see cref="EscalationService"/> decides).
    /// </summary>
    private async Task ResumeEscalationAsync(string id, long fenceEpoch, long ageMs, long now, bool ts)
    {
        if (_escalation is null)
        {
            return;
        }

        var swarm = await SwarmOfAsync(id, ts).ConfigureAwait(false);
        var isAgent = await _redis.Database.HashExistsAsync(Keys.Agents, id).ConfigureAwait(false);
        if (isAgent || !_options.EnableAutoEscalation)
        {
            // The death's handler died before it was done; finish that.
            await GiveUpAsync(id, swarm, fenceEpoch, isAgent ? DeathNotice.AgentNotRespawnable : DeathNotice.AutoEscalationDisabled).ConfigureAwait(false);
            return;
        }

        var result = await _escalation.EscalateAsync(id, swarm, fenceEpoch, now - ageMs, MonitorId, resume: true).ConfigureAwait(false);
        if (result.Outcome == EscalationOutcome.Escalated)
        {
            _logger.LogInformation("Resumed escalation finished coordinator={CoordinatorId} newCoordinator={NewId} monitor={MonitorId}",
                id, result.NewCoordinatorId, MonitorId);
        }
    }

    /// <summary>
    /// No replacement will come (auto-escalation off, or the dead one was an agent run outside cfn): the dead instance's
    /// unfinished work goes back to the front of its swarm's queue (D16; it is fenced, so it cannot finish it), then it
    /// leaves the registry and the agent mark. In that order, so a handler dying in between leaves it registered and the
    /// next pass finishes the job. Nothing is done once the ID runs again under a newer epoch: that is a new instance's.
    /// </summary>
    private async Task GiveUpAsync(string id, string swarm, long fenceEpoch, string reason)
    {
        var epoch = (long?)await _redis.Database.StringGetAsync(Keys.Epoch(id)).ConfigureAwait(false);
        if (epoch is { } current && current != fenceEpoch)
        {
            _logger.LogInformation("Dead coordinator={CoordinatorId} runs again (epoch {Epoch}, fenced at {Fence}): nothing of the new instance is touched",
                id, current, fenceEpoch);
            return;
        }

        if (_escalation is not null && Identity.Ids.IsValidName(swarm))
        {
            await _escalation.Work.RequeueAllAsync(swarm, id, "owner_dead_no_replacement").ConfigureAwait(false);
        }

        await _redis.Database.SortedSetRemoveAsync(Keys.Registry, id).ConfigureAwait(false);
        await _redis.Database.HashDeleteAsync(Keys.Health, id).ConfigureAwait(false);
        await _redis.Database.HashDeleteAsync(Keys.Agents, id).ConfigureAwait(false);
        if (_redis.Options.TsCompat)
        {
            // A TS coordinator leaves the TS watch as a cfn one leaves the registry (else it stays dead_already forever).
            await TsCoordinators.ForgetAsync(_redis.Database, id).ConfigureAwait(false);
        }
        if (Identity.Ids.IsValidName(swarm))
        {
            // After the registry removal: a waiter confirms "nobody takes over" by the dead ID's absence there (D18).
            await DeathNotices.PublishAsync(_redis.Database,
                new DeathNotice(id, swarm, _redis.Time.GetUtcNow().ToUnixTimeMilliseconds(), DeathNotice.NoReplacement, Reason: reason))
                .ConfigureAwait(false);
        }
    }

    private async Task<string> SwarmOfAsync(string id, bool ts)
    {
        var swarm = (string?)await _redis.Database.HashGetAsync(Keys.Swarms, id).ConfigureAwait(false);
        if (swarm is null || !Identity.Ids.IsValidName(swarm))
        {
            // A TS K1 names no swarm (only its discovery from traffic may have): not a malformed heartbeat.
            swarm = ts ? "unknown" : await SwarmFromHeartbeatAsync(id).ConfigureAwait(false) ?? "unknown";
        }

        return swarm;
    }

    private async Task<string?> SwarmFromHeartbeatAsync(string id)
    {
        string? raw;
        try
        {
            // The swarm entry is missing, so the kind is unknown: a coordinator's K1 or a validator's own key, whichever exists.
            var values = await _redis.Database.StringGetAsync([Keys.Heartbeat(id), Keys.ValidatorHeartbeat(id)]).ConfigureAwait(false);
            raw = (string?)values[0] ?? (string?)values[1];
        }
        catch (RedisServerException)
        {
            raw = "(not a string)"; // a wrong-typed key is a malformed heartbeat, not a Redis outage
        }

        if (raw is null)
        {
            return null;
        }

        if (!Json.TryDeserialize<Heartbeats.HeartbeatRecord>(raw, out var record, out var error) || !Identity.Ids.IsValidName(record!.SwarmId))
        {
            if (_malformedSeen.Add(id))
            {
                _recoveryMetrics.MalformedValues.WithLabels("heartbeat").Inc();
                _logger.LogWarning("Heartbeat key exists but data is malformed coordinator={CoordinatorId}: {Error}", id, error ?? "bad swarmId");
            }

            return null;
        }

        return record.SwarmId;
    }

    /// <summary>One pass of the loop; the next one comes when a coordinator can next become due (at most one interval).</summary>
    private async Task ScheduledPassAsync(LoopPass loop)
    {
        // Set before the pass so a pass that throws is tried again after the interval.
        loop.NextDelay = _options.MonitorInterval;
        var pass = await RunOnceAsync().ConfigureAwait(false);
        if (!pass.RedisAvailable)
        {
            loop.NextDelay = TimeSpan.FromMilliseconds(Math.Min(1000, _options.MonitorInterval.TotalMilliseconds));
        }
        else if (pass.NextDueMs > 0)
        {
            var untilDue = TimeSpan.FromMilliseconds(pass.NextDueMs - _redis.Time.GetUtcNow().ToUnixTimeMilliseconds());
            loop.NextDelay = untilDue < MinimumSleep ? MinimumSleep : untilDue > _options.MonitorInterval ? _options.MonitorInterval : untilDue;
        }
    }

    private void OnConnectionFailed(object? sender, ConnectionFailedEventArgs e) => _redisLost = true;

    // A promoted replica may lack the last heartbeats written to the old primary, and coordinators were reconnecting:
    // staleness counts afresh, as after an outage, so that no healthy coordinator is declared dead by the failover.
    private void OnPrimaryChanged(string oldPrimary, string newPrimary) => _redisLost = true;

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return; // a second dispose (the timeout handler's and its owner's) is a no-op
        }

        _redis.Multiplexer.ConnectionFailed -= OnConnectionFailed;
        _redis.PrimaryChanged -= OnPrimaryChanged;
        await _loop.DisposeAsync().ConfigureAwait(false);
    }
}
