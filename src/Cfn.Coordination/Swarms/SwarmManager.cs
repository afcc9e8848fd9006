using Cfn.Coordination.Background;
using Cfn.Coordination.Identity;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Swarms;
using Cfn.Coordination.Wakeups;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

// An entry point of the library: public at the namespace root (SPEC D22), its machinery stays in Swarms.
namespace Cfn.Coordination;

/// <summary>
/// The swarm manager (SPEC §0.2, §3.1 #1–#3, D7, K9). Each pass — woken by <see cref="Keys.SwarmManagerChannel"/>
/// (a new spawn request, a resume, a scale) or every <see cref="SwarmManagerOptions.Interval"/> — it:
/// <list type="number">
/// <item>moves <c>spawning</c> requests to <c>ready</c> when the registry shows the new coordinator's heartbeat
/// (counting <c>coordinator_spawns_total</c> once), or to <c>failed</c> after <see cref="SwarmManagerOptions.SpawnTimeout"/>,
/// and moves the K8 escalation record of the coordinator a replacement replaces to <c>replaced</c> or <c>failed</c>
/// (also for a request its host failed);</item>
/// <item>if it holds the reconcile lease, brings each swarm with a target toward it: spawn requests with reason
/// <c>scale</c> when live + in-flight is short (replacement requests count, so nothing is spawned twice), and when over,
/// cancels surplus pending requests (never replacements, which carry handed-over work) and stops surplus live
/// coordinators gracefully (spawned ones first, newest first) through their hosts;</item>
/// <item>unless spawning is paused, claims pending requests (compare-and-set <c>pending → spawning</c>, so with
/// several managers each request is started once) and sends each to the live host with the most room.</item>
/// </list>
/// </summary>
public sealed class SwarmManager : IAsyncDisposable
{
    private static readonly TimeSpan CommandTtl = TimeSpan.FromHours(1);
    private static readonly string[] Reasons = ["replacement", "scale", "initial"];

    private readonly RedisContext _redis;
    private readonly SwarmManagerOptions _options;
    private readonly SwarmMetrics _metrics;
    private readonly ILogger _logger;
    private readonly long _staleMs;
    private readonly long _windowMs;
    private readonly SemaphoreSlim _passLock = new(1, 1);
    private readonly HashSet<string> _malformedSeen = new(StringComparer.Ordinal);
    private readonly Action<RedisChannel, RedisValue> _onWake;
    private readonly Dictionary<string, long> _final = new(StringComparer.Ordinal);
    private readonly HashSet<string> _noRoomLogged = new(StringComparer.Ordinal);
    private readonly HashSet<string> _unstoppableLogged = new(StringComparer.Ordinal);
    private readonly HashSet<string> _spawnSeries = new(StringComparer.Ordinal);

    // Rollout damping: the target each swarm had at this manager's last pass, and since when a swarm has been short of it
    // without its target having risen (a coordinator left: a pod restarting, a graceful stop).
    private readonly Dictionary<string, int> _lastTargets = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _shortSince = new(StringComparer.Ordinal);
    private readonly WorkTransfer _work;
    private readonly BackgroundLoop _loop;
    private bool _subscribed;
    private bool _holdsLease;
    private int _disposed;

    /// <summary>
    /// Creates a manager. <paramref name="recovery"/> gives the stale threshold (a coordinator is live while its heartbeat is
    /// newer) and the death window: with auto-escalation on, a coordinator that went stale is still counted toward its
    /// swarm's target until the timeout handler had time to declare it dead and request its replacement.
    /// </summary>
    public SwarmManager(
        RedisContext redis,
        SwarmManagerOptions options,
        RecoveryOptions recovery,
        SwarmMetrics metrics,
        string managerId,
        int? expectedCoordinators = null,
        RecoveryMetrics? recoveryMetrics = null)
    {
        ArgumentNullException.ThrowIfNull(redis);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(recovery);
        ArgumentNullException.ThrowIfNull(metrics);
        options.Validate();
        _redis = redis;
        _options = options;
        _metrics = metrics;
        ManagerId = Ids.RequireName(managerId, "managerId");
        _logger = redis.LoggerFactory.CreateLogger<SwarmManager>();
        _staleMs = (long)recovery.HeartbeatStaleThreshold.TotalMilliseconds;
        _windowMs = recovery.EnableHeartbeatMonitoring && recovery.EnableAutoEscalation
            ? (long)(recovery.DeathAfter + (2 * recovery.MonitorInterval)).TotalMilliseconds
            : _staleMs;
        Spawning = new SpawningControl(redis);
        Spawns = new SpawnRequests(redis.Database, redis.Time, options.SpawnTtlSeconds);
        Status = new SwarmStatusReader(redis.Database, recovery.HeartbeatStaleThreshold, expectedCoordinators, options.SpawnTtlSeconds, redis.Time);
        _onWake = (_, _) => _loop!.Wake();
        _work = new WorkTransfer(redis, recoveryMetrics ?? new RecoveryMetrics(Prometheus.Metrics.NewCustomRegistry()), _logger);
        _loop = new BackgroundLoop(redis.Loops, LoopNames.SwarmManager, null, options.Interval, _ => LoopPassAsync(), _logger, redis.Time)
        {
            // A pass on every wake-up (a spawn request, a scale), and at least every interval.
            Schedule = LoopSchedule.AfterPass,
            PassAtStart = true,
        };
    }

    /// <summary>This manager's name (logs, <c>requestedBy</c>, the lease).</summary>
    public string ManagerId { get; }

    /// <summary>The spawning pause.</summary>
    internal SpawningControl Spawning { get; }

    /// <summary>The K9 spawn requests.</summary>
    internal SpawnRequests Spawns { get; }

    /// <summary>The status report.</summary>
    internal SwarmStatusReader Status { get; }

    /// <summary>Every swarm's size, spawn requests and the spawning pause, as <c>GET /api/swarms/status</c> shows them.</summary>
    public Task<SwarmStatusReport> ReadStatusAsync() => Status.ReadAsync();

    /// <summary>Pauses the spawning of coordinators (replacements included) for every swarm; returns when it was paused (Unix ms).</summary>
    public Task<long> PauseSpawningAsync() => Spawning.PauseAsync();

    /// <summary>Resumes spawning; true when it was paused.</summary>
    public Task<bool> ResumeSpawningAsync() => Spawning.ResumeAsync();

    /// <summary>Starts the loop (it subscribes to <see cref="Keys.SwarmManagerChannel"/> first).</summary>
    public void Start()
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) == 1, this);
        _loop.Start();
    }

    /// <summary>
    /// Sets <paramref name="swarmId"/>'s target size (SPEC §3.1 #3, TS semantics). A target below 1 or none is refused;
    /// a swarm nobody names (no live coordinator, target or spawn request) is not found; a scale-up (above the current
    /// target, or the live count when there is none) is refused while spawning is paused. Nothing is written unless scaled.
    /// </summary>
    /// <exception cref="InvalidIdException"><paramref name="swarmId"/> is invalid.</exception>
    public async Task<ScaleResult> ScaleAsync(string swarmId, int? targetSize)
    {
        Ids.RequireName(swarmId, "swarmId");
        if (targetSize is not { } size || size < 1)
        {
            return new ScaleResult(ScaleOutcome.InvalidTargetSize, swarmId, null, null, 0);
        }

        var snapshot = await LoadAsync(_staleMs).ConfigureAwait(false);
        var freshSince = snapshot.NowMs - _staleMs;
        var live = snapshot.Members.Count(m => m.SwarmId == swarmId && m.LastHeartbeat >= freshSince);
        int? previous = snapshot.Targets.TryGetValue(swarmId, out var t) ? t : null;
        if (!snapshot.Knows(swarmId, freshSince))
        {
            return new ScaleResult(ScaleOutcome.SwarmNotFound, swarmId, null, null, 0);
        }

        if (snapshot.PausedAt is not null && size > (previous ?? live))
        {
            _logger.LogWarning("Swarm scale-up refused: spawning is paused swarm={SwarmId} targetSize={TargetSize} current={Current}",
                swarmId, size, previous ?? live);
            return new ScaleResult(ScaleOutcome.SpawningPaused, swarmId, null, previous, live);
        }

        await _redis.Database.HashSetAsync(Keys.SwarmTargets, swarmId, size).ConfigureAwait(false);
        await _redis.Database.PublishAsync(Keys.SwarmManagerChannel, "scale").ConfigureAwait(false);
        _logger.LogInformation("Swarm scaled swarm={SwarmId} previousTarget={Previous} newSize={NewSize} live={Live}",
            swarmId, previous?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none", size, live);
        return new ScaleResult(ScaleOutcome.Scaled, swarmId, size, previous, live);
    }

    /// <summary>
    /// <c>cfn up</c>: creates spawn requests with reason <c>initial</c> for the coordinators <paramref name="size"/> still
    /// lacks (live and in-flight count), then sets the target. Returns the new coordinator IDs. While paused the requests
    /// wait, pending, for the resume.
    /// </summary>
    /// <exception cref="InvalidIdException"><paramref name="swarmId"/> is invalid.</exception>
    public async Task<IReadOnlyList<string>> InitializeSwarmAsync(string swarmId, int size)
    {
        Ids.RequireName(swarmId, "swarmId");
        ArgumentOutOfRangeException.ThrowIfLessThan(size, 1);
        var snapshot = await LoadAsync(_windowMs).ConfigureAwait(false);
        var present = snapshot.Members.Count(m => m.SwarmId == swarmId);
        var inFlight = snapshot.Requests.Count(r => r.SwarmId == swarmId && r.Status is SpawnStatus.Pending or SpawnStatus.Spawning);
        var created = new List<string>();
        // Requests first, target second: a reconcile running in between sees them in flight and adds nothing.
        for (var i = present + inFlight; i < size; i++)
        {
            created.Add((await CreateRequestAsync(swarmId, "initial", snapshot.NowMs).ConfigureAwait(false)).NewCoordinatorId);
        }

        await _redis.Database.HashSetAsync(Keys.SwarmTargets, swarmId, size).ConfigureAwait(false);
        await _redis.Database.PublishAsync(Keys.SwarmManagerChannel, "initialize").ConfigureAwait(false);
        _logger.LogInformation("Swarm initialized swarm={SwarmId} size={Size} present={Present} inFlight={InFlight} requested={Requested}",
            swarmId, size, present, inFlight, created.Count);
        return created;
    }

    /// <summary>One pass now (the loop runs them; tests and <c>cfn up</c> may call it directly). Passes never overlap.</summary>
    public async Task<SwarmManagerPass> RunOnceAsync()
    {
        await _passLock.WaitAsync().ConfigureAwait(false);
        try
        {
            return await PassAsync().ConfigureAwait(false);
        }
        finally
        {
            _passLock.Release();
        }
    }

    /// <summary>
    /// Creates <c>coordinator_spawns_total</c> at 0 for every reason of every swarm this manager knows, so that
    /// <c>rate()</c> (runbook #8) sees a swarm's first spawn: a series that first appears at 1 hides its first increment.
    /// Bounded by the number of swarms.
    /// </summary>
    private void InitializeSpawnSeries(SwarmSnapshot snapshot)
    {
        var swarms = snapshot.Members.Select(m => m.SwarmId).Concat(snapshot.Targets.Keys).Concat(snapshot.Requests.Select(r => r.SwarmId));
        foreach (var swarm in swarms.Where(s => _spawnSeries.Add(s)))
        {
            foreach (var reason in Reasons)
            {
                _metrics.Spawns.WithLabels(swarm, reason);
            }
        }
    }

    /// <summary>An unreadable spawn request is skipped, logged and counted once (it is read again every pass until it expires).</summary>
    private void SkipMalformedRequest(string key, string reason)
    {
        if (_malformedSeen.Count > 10_000)
        {
            _malformedSeen.Clear(); // bounded: at worst one more line per key
        }

        if (_malformedSeen.Add(key))
        {
            _redis.Loops.SkipRecord(LoopNames.SwarmManager, _logger, key, "malformed spawn request: " + reason);
        }
    }

    private async Task<SwarmManagerPass> PassAsync()
    {
        var localNow = _redis.Time.GetUtcNow().ToUnixTimeMilliseconds();
        var since = localNow - (_options.SpawnTtlSeconds * 1000L);
        foreach (var old in _final.Where(f => f.Value < since).Select(f => f.Key).ToList())
        {
            _final.Remove(old);
        }

        var snapshot = await SwarmSnapshot.LoadAsync(_redis.Database, _windowMs, since, _final.ContainsKey, SkipMalformedRequest).ConfigureAwait(false);
        InitializeSpawnSeries(snapshot);
        var freshSince = snapshot.NowMs - _staleMs;
        var fresh = snapshot.Members.Where(m => m.LastHeartbeat >= freshSince).ToDictionary(m => m.CoordinatorId, StringComparer.Ordinal);
        var requests = new Dictionary<string, SpawnRequest>(StringComparer.Ordinal);
        foreach (var request in snapshot.Requests)
        {
            requests[request.NewCoordinatorId] = request;
            if (request.Status is SpawnStatus.Ready or SpawnStatus.Failed or SpawnStatus.Cancelled)
            {
                // First seen final (a host failed the start, another manager settled it, or this manager restarted):
                // its escalation record may still wait for the outcome. Before _final, so a Redis error retries it.
                if (request.Status is SpawnStatus.Ready or SpawnStatus.Failed)
                {
                    try
                    {
                        await SettleEscalationAsync(request, request.Status, request.Error, localNow).ConfigureAwait(false);
                    }
                    catch (Exception e) when (LoopHealth.IsRecordFault(e))
                    {
                        // One request's bad escalation record must not stop the pass; it is tried again next pass.
                        _redis.Loops.RecordFailed(LoopNames.SwarmManager, _logger, Keys.Spawn(request.NewCoordinatorId).ToString(), e);
                        continue;
                    }
                }

                _final[request.NewCoordinatorId] = request.Timestamp;
            }
        }

        var pass = new SwarmManagerPass { Paused = snapshot.PausedAt is not null };
        await SettleSpawningAsync(requests, fresh, localNow, pass).ConfigureAwait(false);
        var hosts = await LoadHostsAsync().ConfigureAwait(false);
        pass.HeldLease = await HoldLeaseAsync().ConfigureAwait(false);
        if (pass.HeldLease)
        {
            await ReconcileAsync(snapshot, requests, fresh, hosts, pass).ConfigureAwait(false);
        }

        if (!pass.Paused)
        {
            await ClaimPendingAsync(requests, hosts, pass).ConfigureAwait(false);
        }

        _noRoomLogged.IntersectWith(requests.Values.Where(r => r.Status == SpawnStatus.Pending).Select(r => r.NewCoordinatorId));
        return pass;
    }

    private async Task SettleSpawningAsync(Dictionary<string, SpawnRequest> requests, Dictionary<string, Member> fresh, long localNow, SwarmManagerPass pass)
    {
        // A replacement no host has taken within the spawn timeout will not come in time (no room, spawning paused): its
        // request fails, so the work handed to it goes back to the queue for the coordinators that run (D16).
        foreach (var request in requests.Values.Where(r => r.Status == SpawnStatus.Pending && r.ReplacesCoordinatorId is not null).ToList())
        {
            if (localNow - request.UpdatedAt <= (long)_options.SpawnTimeout.TotalMilliseconds)
            {
                continue;
            }

            var error = $"no coordinator host took it within {(long)_options.SpawnTimeout.TotalMilliseconds} ms";
            if (!await Spawns.TryMoveAsync(request.NewCoordinatorId, SpawnStatus.Pending, SpawnStatus.Failed, error).ConfigureAwait(false))
            {
                continue; // claimed or settled meanwhile: the next pass sees what it became
            }

            pass.Failed++;
            _logger.LogError("Spawn request failed newCoordinatorId={NewId} swarm={SwarmId} reason={Reason}: {Error}",
                request.NewCoordinatorId, request.SwarmId, request.Reason, error);
            await SettleEscalationAsync(request, SpawnStatus.Failed, error, localNow).ConfigureAwait(false);
            requests[request.NewCoordinatorId] = request with { Status = SpawnStatus.Failed };
            _final[request.NewCoordinatorId] = request.Timestamp;
        }

        foreach (var request in requests.Values.Where(r => r.Status == SpawnStatus.Spawning).ToList())
        {
            var id = request.NewCoordinatorId;
            if (fresh.ContainsKey(id))
            {
                if (await Spawns.TryMoveAsync(id, SpawnStatus.Spawning, SpawnStatus.Ready).ConfigureAwait(false))
                {
                    var reason = Reasons.Contains(request.Reason) ? request.Reason : "other";
                    _metrics.Spawns.WithLabels(request.SwarmId, reason).Inc();
                    pass.Ready++;
                    _logger.LogInformation("Coordinator spawned newCoordinatorId={NewId} swarm={SwarmId} reason={Reason} host={HostId} replaces={Replaces}",
                        id, request.SwarmId, reason, request.HostId ?? "unknown", request.ReplacesCoordinatorId ?? "none");
                    if (request.ReplacesCoordinatorId is { } old)
                    {
                        await SettleEscalationAsync(request, SpawnStatus.Ready, null, localNow).ConfigureAwait(false);
                        // C2: the swarm's other coordinators learn that the replacement runs (SPEC §2.13), so they can hand it work and answer the escalation.
                        await _redis.Database.PublishAsync(Keys.SwarmReplacement(request.SwarmId), Json.Serialize(
                            new ReplacementNotice(old, id, request.SwarmId, localNow))).ConfigureAwait(false);
                    }
                }

                requests[id] = request with { Status = SpawnStatus.Ready };
                _final[id] = request.Timestamp;
            }
            else if (localNow - request.UpdatedAt > (long)_options.SpawnTimeout.TotalMilliseconds)
            {
                var error = $"no heartbeat within {(long)_options.SpawnTimeout.TotalMilliseconds} ms of the claim (host {request.HostId ?? "unknown"})";
                if (await Spawns.TryMoveAsync(id, SpawnStatus.Spawning, SpawnStatus.Failed, error).ConfigureAwait(false))
                {
                    pass.Failed++;
                    _logger.LogError("Spawn request failed newCoordinatorId={NewId} swarm={SwarmId} reason={Reason}: {Error}",
                        id, request.SwarmId, request.Reason, error);
                    await SettleEscalationAsync(request, SpawnStatus.Failed, error, localNow).ConfigureAwait(false);
                }

                requests[id] = request with { Status = SpawnStatus.Failed };
                _final[id] = request.Timestamp;
            }
        }
    }

    /// <summary>
    /// Moves the K8 escalation record of the coordinator <paramref name="request"/> replaces to <c>replaced</c> (the spawn
    /// is <c>ready</c>) or <c>failed</c>, by compare-and-set with the key's TTL kept. Only a record still waiting for this
    /// very replacement (status <c>escalated</c> or <c>replacement_requested</c>, the same new coordinator ID) changes: a
    /// settled record or a later incident's is left alone, so calling it again is harmless.
    /// </summary>
    private async Task SettleEscalationAsync(SpawnRequest request, string spawnStatus, string? error, long localNow)
    {
        if (request.ReplacesCoordinatorId is not { } deadId || !Ids.IsValidName(deadId))
        {
            return;
        }

        var newId = request.NewCoordinatorId;
        var status = spawnStatus == SpawnStatus.Ready ? EscalationStatus.Replaced : EscalationStatus.Failed;
        if (status == EscalationStatus.Failed && Ids.IsValidName(request.SwarmId))
        {
            // The replacement never came up (D16): what was handed to it goes back to the front of the swarm's queue and
            // its never-read inbox goes. Before the record turns final, so a manager dying in between repeats it.
            var requeued = await _work.RequeueAllAsync(request.SwarmId, newId, "replacement_failed").ConfigureAwait(false);
            var dropped = await _redis.Database.KeyDeleteAsync([Keys.Inbox(newId), Keys.Signal(newId), Keys.Owned(request.SwarmId, newId)])
                .ConfigureAwait(false);
            if (requeued > 0 || dropped > 0)
            {
                _logger.LogWarning("Replacement never came up newCoordinatorId={NewId} replaces={DeadId} swarm={SwarmId}: {Requeued} work item(s) back in the queue, {Dropped} key(s) of its removed",
                    newId, deadId, request.SwarmId, requeued, dropped);
            }
        }

        var settled = await EscalationRecords.TryUpdateAsync(_redis.Database, deadId, current =>
            current.NewCoordinatorId == newId && current.Status is EscalationStatus.Escalated or EscalationStatus.ReplacementRequested
                ? current with
                {
                    Status = status,
                    UpdatedAt = localNow,
                    Error = status == EscalationStatus.Failed ? error ?? "replacement failed to start" : current.Error,
                }
                : null).ConfigureAwait(false);
        if (settled is not null)
        {
            _logger.LogInformation("Escalation record settled deadCoordinator={DeadId} newCoordinator={NewId} swarm={SwarmId} status={Status}",
                deadId, newId, request.SwarmId, status);
            if (status == EscalationStatus.Failed && Ids.IsValidName(settled.SwarmId))
            {
                // Waits on the dead coordinator end now (peer_dead) instead of at their timeout (D18).
                await DeathNotices.PublishAsync(_redis.Database,
                    new DeathNotice(deadId, settled.SwarmId, localNow, DeathNotice.ReplacementFailed, newId)).ConfigureAwait(false);
            }
        }
    }

    private async Task ReconcileAsync(
        SwarmSnapshot snapshot, Dictionary<string, SpawnRequest> requests, Dictionary<string, Member> fresh, List<HostRecord> hosts, SwarmManagerPass pass)
    {
        var database = _redis.Database;
        var stopping = await database.SortedSetRangeByScoreWithScoresAsync(Keys.CoordinatorStops).ConfigureAwait(false);
        var stillStopping = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in stopping)
        {
            var id = (string)entry.Element!;
            // Gone (its graceful stop removed it from the registry) or stuck past the spawn timeout: forget the stop.
            if (!fresh.ContainsKey(id) || entry.Score < snapshot.NowMs - _options.SpawnTimeout.TotalMilliseconds)
            {
                await database.SortedSetRemoveAsync(Keys.CoordinatorStops, entry.Element).ConfigureAwait(false);
            }
            else
            {
                stillStopping.Add(id);
            }
        }

        var placement = hosts.SelectMany(h => h.Running.Select(c => (Host: h.HostId, Coordinator: c)))
            .Where(p => p.Coordinator.Starting is not true)
            .GroupBy(p => p.Coordinator.CoordinatorId, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.First(), StringComparer.Ordinal);
        foreach (var (swarmId, target) in snapshot.Targets)
        {
            var present = snapshot.Members.Count(m => m.SwarmId == swarmId && !stillStopping.Contains(m.CoordinatorId));
            var pending = requests.Values.Where(r => r.SwarmId == swarmId && r.Status == SpawnStatus.Pending).ToList();
            var spawning = requests.Values.Count(r => r.SwarmId == swarmId && r.Status == SpawnStatus.Spawning);
            var total = present + pending.Count + spawning;
            var targetRose = !_lastTargets.TryGetValue(swarmId, out var lastTarget) || target > lastTarget;
            _lastTargets[swarmId] = target;
            if (total >= target)
            {
                _shortSince.Remove(swarmId);
            }

            if (total < target)
            {
                if (pass.Paused)
                {
                    continue;
                }

                // A raised target is served at once; a coordinator that left gets DeficitGrace to come back (a StatefulSet
                // pod restarting in a rollout), so a rollout does not spawn one coordinator per pod and then stop them again.
                // Dead coordinators are not waited for twice: escalation's replacement requests are already in flight.
                if (!targetRose)
                {
                    if (!_shortSince.TryGetValue(swarmId, out var since))
                    {
                        _shortSince[swarmId] = since = snapshot.NowMs;
                        _logger.LogInformation("Swarm below target swarm={SwarmId} target={Target} present={Present} inFlight={InFlight}: waiting up to {GraceMs} ms for coordinators to return",
                            swarmId, target, present, pending.Count + spawning, (long)_options.DeficitGrace.TotalMilliseconds);
                    }

                    if (snapshot.NowMs - since < _options.DeficitGrace.TotalMilliseconds)
                    {
                        continue;
                    }
                }

                _shortSince.Remove(swarmId);

                for (var i = total; i < target; i++)
                {
                    var created = await CreateRequestAsync(swarmId, "scale", snapshot.NowMs).ConfigureAwait(false);
                    requests[created.NewCoordinatorId] = created;
                    pass.Created++;
                }

                _logger.LogInformation("Scaling up swarm={SwarmId} target={Target} present={Present} inFlight={InFlight} requested={Requested}",
                    swarmId, target, present, pending.Count + spawning, target - total);
                continue;
            }

            // Over target: withdraw surplus requests first (newest first; replacements carry handed-over work), then stop live ones.
            var surplus = total - target;
            foreach (var request in pending.Where(r => r.Reason != "replacement").OrderByDescending(r => r.Timestamp).Take(surplus))
            {
                if (await Spawns.TryMoveAsync(request.NewCoordinatorId, SpawnStatus.Pending, SpawnStatus.Cancelled, "swarm scaled down").ConfigureAwait(false))
                {
                    pass.Cancelled++;
                    _logger.LogInformation("Spawn request cancelled newCoordinatorId={NewId} swarm={SwarmId} reason={Reason}: swarm scaled down to {Target}",
                        request.NewCoordinatorId, swarmId, request.Reason, target);
                }

                requests[request.NewCoordinatorId] = request with { Status = SpawnStatus.Cancelled };
            }

            var toStop = present - target;
            if (toStop <= 0)
            {
                _unstoppableLogged.Remove(swarmId);
                continue;
            }

            var victims = fresh.Values
                .Where(m => m.SwarmId == swarmId && !stillStopping.Contains(m.CoordinatorId) && placement.ContainsKey(m.CoordinatorId))
                .Select(m => placement[m.CoordinatorId])
                .OrderByDescending(p => p.Coordinator.Spawned)
                .ThenByDescending(p => p.Coordinator.StartedAt)
                .ThenBy(p => p.Coordinator.CoordinatorId, StringComparer.Ordinal)
                .Take(toStop)
                .ToList();
            foreach (var (hostId, coordinator) in victims)
            {
                // The stop set is shared: a coordinator is told to stop once, and is not counted while it stops.
                if (await database.SortedSetAddAsync(Keys.CoordinatorStops, coordinator.CoordinatorId, snapshot.NowMs, SortedSetWhen.NotExists).ConfigureAwait(false))
                {
                    await SendAsync(hostId, new HostCommand { Type = HostCommand.Stop, CoordinatorId = coordinator.CoordinatorId, IssuedBy = ManagerId })
                        .ConfigureAwait(false);
                    pass.StopsRequested++;
                    _logger.LogInformation("Stopping surplus coordinator coordinator={CoordinatorId} swarm={SwarmId} host={HostId} target={Target} present={Present}",
                        coordinator.CoordinatorId, swarmId, hostId, target, present);
                }
            }

            if (victims.Count < toStop && _unstoppableLogged.Add(swarmId))
            {
                _logger.LogWarning("Swarm over target but {Count} surplus coordinator(s) run on no coordinator host, so cannot be stopped from here swarm={SwarmId} target={Target} present={Present}",
                    toStop - victims.Count, swarmId, target, present);
            }
        }
    }

    private async Task ClaimPendingAsync(Dictionary<string, SpawnRequest> requests, List<HostRecord> hosts, SwarmManagerPass pass)
    {
        var load = hosts.ToDictionary(h => h.HostId, h => h.Running.Select(c => c.CoordinatorId).ToHashSet(StringComparer.Ordinal), StringComparer.Ordinal);
        foreach (var request in requests.Values.Where(r => r.Status == SpawnStatus.Spawning && r.HostId is not null && load.ContainsKey(r.HostId)))
        {
            load[request.HostId!].Add(request.NewCoordinatorId);
        }

        var pending = requests.Values.Where(r => r.Status == SpawnStatus.Pending)
            .OrderBy(r => r.Priority == "high" ? 0 : 1)
            .ThenBy(r => r.Timestamp)
            .ToList();
        foreach (var request in pending)
        {
            var id = request.NewCoordinatorId;
            var host = hosts.Where(h => load[h.HostId].Count < h.Capacity)
                .OrderByDescending(h => h.Capacity - load[h.HostId].Count)
                .ThenBy(h => h.HostId, StringComparer.Ordinal)
                .FirstOrDefault();
            if (host is null)
            {
                if (_noRoomLogged.Add(id))
                {
                    _logger.LogWarning("No coordinator host has room for spawn request newCoordinatorId={NewId} swarm={SwarmId} hosts={Hosts}; it stays pending",
                        id, request.SwarmId, hosts.Count);
                }

                continue;
            }

            if (!await Spawns.TryMoveAsync(id, SpawnStatus.Pending, SpawnStatus.Spawning, hostId: host.HostId).ConfigureAwait(false))
            {
                continue; // another manager claimed (or cancelled) it
            }

            requests[id] = request with { Status = SpawnStatus.Spawning, HostId = host.HostId };
            load[host.HostId].Add(id);
            await SendAsync(host.HostId, new HostCommand
            {
                Type = HostCommand.Start,
                CoordinatorId = id,
                SwarmId = request.SwarmId,
                SpawnRequestId = id,
                IssuedBy = ManagerId,
            }).ConfigureAwait(false);
            pass.Claimed++;
            _logger.LogInformation("Spawn request claimed newCoordinatorId={NewId} swarm={SwarmId} reason={Reason} priority={Priority} host={HostId} manager={ManagerId}",
                id, request.SwarmId, request.Reason, request.Priority, host.HostId, ManagerId);
        }
    }

    private async Task<SpawnRequest> CreateRequestAsync(string swarmId, string reason, long nowMs)
    {
        while (true)
        {
            var request = new SpawnRequest
            {
                NewCoordinatorId = SpawnRequests.NewCoordinatorId(nowMs),
                SwarmId = swarmId,
                Timestamp = nowMs,
                Status = SpawnStatus.Pending,
                Priority = "normal",
                Reason = reason,
                RequestedBy = ManagerId,
                UpdatedAt = _redis.Time.GetUtcNow().ToUnixTimeMilliseconds(),
            };
            if (await Spawns.CreateAsync(request).ConfigureAwait(false))
            {
                _logger.LogInformation("Spawn request created newCoordinatorId={NewId} swarm={SwarmId} reason={Reason}", request.NewCoordinatorId, swarmId, reason);
                return request;
            }
        }
    }

    private async Task SendAsync(string hostId, HostCommand command)
    {
        var database = _redis.Database;
        var key = Keys.HostCommands(hostId);
        await database.ListRightPushAsync(key, Json.Serialize(command)).ConfigureAwait(false);
        await database.KeyExpireAsync(key, CommandTtl).ConfigureAwait(false);
        await database.PublishAsync(Keys.HostChannel(hostId), command.Type).ConfigureAwait(false);
    }

    private async Task<List<HostRecord>> LoadHostsAsync()
    {
        var database = _redis.Database;
        var ids = (await database.SortedSetRangeByRankAsync(Keys.Hosts).ConfigureAwait(false))
            .Select(v => (string)v!).Where(Ids.IsValidName).ToArray();
        if (ids.Length == 0)
        {
            return [];
        }

        var raws = await database.StringGetAsync(ids.Select(id => Keys.Host(id)).ToArray()).ConfigureAwait(false);
        var hosts = new List<HostRecord>(ids.Length);
        for (var i = 0; i < ids.Length; i++)
        {
            if (raws[i].IsNull)
            {
                // Its record expired: the host is gone (it writes the record before its index entry).
                await database.SortedSetRemoveAsync(Keys.Hosts, ids[i]).ConfigureAwait(false);
            }
            else if (Json.TryDeserialize<HostRecord>(raws[i], out var host, out _) && host!.HostId == ids[i])
            {
                hosts.Add(host with { Running = host.Running ?? [] });
            }
        }

        return hosts;
    }

    private async Task<bool> HoldLeaseAsync()
    {
        var database = _redis.Database;
        var ttl = TimeSpan.FromTicks(Math.Max(3 * _options.Interval.Ticks, TimeSpan.FromSeconds(3).Ticks));
        // The holder extends (one check-and-expire); the others try to take it, which succeeds once it has lapsed.
        var held = _holdsLease
            ? await database.LockExtendAsync(Keys.SwarmManagerLease, ManagerId, ttl).ConfigureAwait(false) ||
              await database.LockTakeAsync(Keys.SwarmManagerLease, ManagerId, ttl).ConfigureAwait(false)
            : await database.LockTakeAsync(Keys.SwarmManagerLease, ManagerId, ttl).ConfigureAwait(false);
        if (held != _holdsLease)
        {
            _holdsLease = held;
            if (held)
            {
                _logger.LogInformation("Swarm manager reconciles swarm targets manager={ManagerId}", ManagerId);
            }
            else
            {
                _logger.LogInformation("Swarm manager no longer reconciles swarm targets manager={ManagerId}", ManagerId);
            }
        }

        return held;
    }

    private Task<SwarmSnapshot> LoadAsync(long windowMs) =>
        SwarmSnapshot.LoadAsync(_redis.Database, windowMs, _redis.Time.GetUtcNow().ToUnixTimeMilliseconds() - (_options.SpawnTtlSeconds * 1000L));

    private async Task LoopPassAsync()
    {
        if (!_subscribed)
        {
            _subscribed = true;
            await SubscribeAsync().ConfigureAwait(false);
        }

        // One bad pass must not end the manager: the loop logs and counts it, the next one retries.
        try
        {
            await RunOnceAsync().ConfigureAwait(false);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            _logger.LogWarning("Redis error in swarm manager pass: {Error}", RedisErrors.FirstClause(e));
        }
    }

    private async Task SubscribeAsync()
    {
        try
        {
            await _redis.Multiplexer.GetSubscriber().SubscribeAsync(Keys.SwarmManagerChannel, _onWake).ConfigureAwait(false);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e))
        {
            _logger.LogWarning("Swarm manager could not subscribe, passes run every {IntervalMs} ms only: {Error}",
                (long)_options.Interval.TotalMilliseconds, RedisErrors.FirstClause(e));
        }

        _logger.LogInformation("Swarm manager started manager={ManagerId} intervalMs={IntervalMs} spawnTimeoutMs={SpawnTimeoutMs}",
            ManagerId, (long)_options.Interval.TotalMilliseconds, (long)_options.SpawnTimeout.TotalMilliseconds);
    }

    /// <summary>Stops the loop and gives the reconcile lease back.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        await _loop.DisposeAsync().ConfigureAwait(false);

        try
        {
            await _redis.Multiplexer.GetSubscriber().UnsubscribeAsync(Keys.SwarmManagerChannel, _onWake).ConfigureAwait(false);
            await _redis.Database.LockReleaseAsync(Keys.SwarmManagerLease, ManagerId).ConfigureAwait(false);
        }
        catch (Exception e) when (RedisErrors.IsTransient(e) || e is ObjectDisposedException)
        {
            _logger.LogWarning("Swarm manager lease left to expire manager={ManagerId}: {Error}", ManagerId, e.Message);
        }

        _passLock.Dispose();
    }
}

/// <summary>What one pass did.</summary>
public sealed class SwarmManagerPass
{
    /// <summary>Spawning paused during the pass.</summary>
    public bool Paused { get; init; }

    /// <summary>This manager held the reconcile lease.</summary>
    public bool HeldLease { get; set; }

    /// <summary>Requests moved to <c>ready</c> (coordinators counted as spawned).</summary>
    public int Ready { get; set; }

    /// <summary>Requests failed for want of a heartbeat.</summary>
    public int Failed { get; set; }

    /// <summary>Requests claimed and sent to a host.</summary>
    public int Claimed { get; set; }

    /// <summary>Requests created to reach a target.</summary>
    public int Created { get; set; }

    /// <summary>Pending requests cancelled by a scale-down.</summary>
    public int Cancelled { get; set; }

    /// <summary>Surplus coordinators told to stop.</summary>
    public int StopsRequested { get; set; }
}

/// <summary>How a scale request ended.</summary>
public enum ScaleOutcome
{
    /// <summary>The target was set.</summary>
    Scaled,

    /// <summary>No target size, or one below 1 (400 VALIDATION_ERROR).</summary>
    InvalidTargetSize,

    /// <summary>No live coordinator, target or spawn request names the swarm (404 SWARM_NOT_FOUND).</summary>
    SwarmNotFound,

    /// <summary>A scale-up while spawning is paused (409 SPAWNING_PAUSED).</summary>
    SpawningPaused,
}

/// <summary>The result of <see cref="SwarmManager.ScaleAsync"/>.</summary>
public sealed record ScaleResult(ScaleOutcome Outcome, string SwarmId, int? NewSize, int? PreviousTarget, int LiveCoordinators);
