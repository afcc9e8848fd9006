using System.Globalization;
using System.Text;
using Cfn.Coordination.Background;
using Cfn.Coordination.Deadlocks;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Swarms;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Prometheus;
using StackExchange.Redis;

namespace Cfn.Coordination.Inspection;

/// <summary>
/// The live dashboard's read model (issue 15): one reader per process builds a snapshot of the system from the same
/// reads as <c>cfn status</c> (registry, activity records, spawn index, escalations, breakers, swarm targets, the wait
/// graph) every refresh, and fans it out to every open page; a timeline of what changed between snapshots (deaths,
/// escalation steps, replacements, stuck waits, deadlocks, breaker changes) goes with it. Pages never read Redis: a
/// thousand pages cost the same Redis reads as one. The six runbook alerts are evaluated from the snapshots and this
/// process's own metrics as a stand-in for a Prometheus that is not there.
/// </summary>
public sealed class LiveView : IAsyncDisposable
{
    /// <summary>Timeline entries kept for pages that open later.</summary>
    public const int TimelineCapacity = 200;

    private readonly RedisContext _redis;
    private readonly RecoveryOptions _recovery;
    private readonly CoordinationInspector _inspector;
    private readonly SwarmStatusReader _swarms;
    private readonly LiveAlerts _alerts;
    private readonly BackgroundLoop _loop;
    private readonly ILogger _logger;
    private readonly string _processId;
    private readonly IReadOnlyList<string> _roles;
    private readonly object _gate = new();
    private readonly LinkedList<string> _timeline = new();
    private readonly List<Action<string, string>> _subscribers = [];
    private readonly Dictionary<string, long> _noticed = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _refreshing = new(1, 1);
    private LiveState? _previous;
    private string _snapshotJson = "{}";
    private ChannelMessageQueue? _notices;

    /// <summary>
    /// A view over <paramref name="redis"/>, refreshed every <paramref name="refresh"/> once <see cref="Start"/> is
    /// called; <paramref name="processId"/> and <paramref name="roles"/> name this process on the page, and
    /// <paramref name="metrics"/> is the registry whose counters the alert stand-ins read (the default registry).
    /// </summary>
    public LiveView(RedisContext redis, RecoveryOptions recovery, string processId, IReadOnlyList<string> roles, TimeSpan refresh,
        CollectorRegistry? metrics = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(redis);
        ArgumentNullException.ThrowIfNull(recovery);
        ArgumentNullException.ThrowIfNull(roles);
        _redis = redis;
        _recovery = recovery;
        _processId = processId;
        _roles = roles;
        _logger = logger ?? NullLogger.Instance;
        _inspector = new CoordinationInspector(redis, recovery);
        _swarms = new SwarmStatusReader(redis.Database, recovery.HeartbeatStaleThreshold, time: redis.Time);
        _alerts = new LiveAlerts(metrics ?? Prometheus.Metrics.DefaultRegistry, redis.Time);
        _loop = new BackgroundLoop(redis.Loops, LoopNames.LiveView, null, refresh, _ => RefreshAsync(), _logger) { PassAtStart = true };
    }

    /// <summary>The latest snapshot as JSON (<c>{}</c> before the first refresh).</summary>
    public string SnapshotJson => Volatile.Read(ref _snapshotJson);

    /// <summary>The timeline kept (JSON entries, oldest first).</summary>
    public IReadOnlyList<string> Timeline
    {
        get
        {
            lock (_gate)
            {
                return [.. _timeline];
            }
        }
    }

    /// <summary>Starts refreshing, and listening to death notices (C1) so that a death shows at once, with what follows it.</summary>
    public void Start()
    {
        _notices = _redis.Multiplexer.GetSubscriber().Subscribe(Keys.SwarmDeadPattern);
        _notices.OnMessage(message => OnDeathNotice(message.Message));
        _loop.Start();
    }

    private void OnDeathNotice(RedisValue message)
    {
        if (!DeathNotices.TryParse((string?)message, out var notice))
        {
            return;
        }

        var what = notice!.Action switch
        {
            DeathNotice.SpawnReplacement => $"replacement {notice.NewCoordinatorId} requested",
            DeathNotice.ReplacementFailed => $"replacement {notice.NewCoordinatorId} failed",
            _ => "no replacement" + (notice.Reason is { } reason ? $" ({reason})" : ""),
        };
        lock (_gate)
        {
            _noticed[notice.DeadCoordinatorId] = notice.Timestamp;
        }

        var kind = notice.Action == DeathNotice.NoReplacement && notice.Reason == DeathNotice.StoppedWithRequests ? "left" : "death";
        Publish([new LiveEvent(notice.Timestamp, kind, $"{notice.DeadCoordinatorId} ({notice.SwarmId}) declared dead: {what}",
            notice.NewCoordinatorId is { } next ? [notice.DeadCoordinatorId, next] : [notice.DeadCoordinatorId])]);
    }

    /// <summary>
    /// Calls <paramref name="onEvent"/> with (<c>snapshot</c>, JSON) when the snapshot changes and (<c>timeline</c>,
    /// JSON) for each new timeline entry, from the refresh loop: it must not block (queue and return). Dispose the
    /// result to stop.
    /// </summary>
    public IDisposable Subscribe(Action<string, string> onEvent)
    {
        ArgumentNullException.ThrowIfNull(onEvent);
        lock (_gate)
        {
            _subscribers.Add(onEvent);
        }

        return new Subscription(this, onEvent);
    }

    /// <summary>One refresh now (the loop's pass; tests call it directly). Refreshes never overlap.</summary>
    public async Task RefreshAsync()
    {
        await _refreshing.WaitAsync().ConfigureAwait(false);
        try
        {
            await RefreshOnceAsync().ConfigureAwait(false);
        }
        finally
        {
            _refreshing.Release();
        }
    }

    private async Task RefreshOnceAsync()
    {
        var state = await ReadAsync().ConfigureAwait(false);
        var events = _previous is { } previous
            ? LiveTimeline.Between(previous, state, _recovery, await EscalatedAsync(previous, state).ConfigureAwait(false))
            : [];
        _previous = state;
        var snapshot = Json.Serialize(state.ToSnapshot(_processId, _roles, _recovery, await _alerts.EvaluateAsync(state).ConfigureAwait(false)));
        var changed = !string.Equals(snapshot, Volatile.Read(ref _snapshotJson), StringComparison.Ordinal);
        Volatile.Write(ref _snapshotJson, snapshot);
        lock (_gate)
        {
            // A death already told by its notice is not told again when its registry entry goes.
            events.RemoveAll(e => e.Kind is "death" or "left" && e.Ids.Count == 1 && _noticed.Remove(e.Ids[0]));
        }

        Publish(events, changed ? snapshot : null);
    }

    /// <summary>Adds <paramref name="events"/> to the timeline and tells every subscriber, with <paramref name="snapshot"/> when it changed.</summary>
    private void Publish(IReadOnlyList<LiveEvent> events, string? snapshot = null)
    {
        Action<string, string>[] subscribers;
        var entries = events.Select(e => Json.Serialize(e)).ToList();
        lock (_gate)
        {
            foreach (var entry in entries)
            {
                _timeline.AddLast(entry);
                if (_timeline.Count > TimelineCapacity)
                {
                    _timeline.RemoveFirst();
                }
            }

            subscribers = [.. _subscribers];
        }

        foreach (var subscriber in subscribers)
        {
            foreach (var entry in entries)
            {
                subscriber("timeline", entry);
            }

            if (snapshot is not null)
            {
                subscriber("snapshot", snapshot);
            }
        }
    }

    private async Task<LiveState> ReadAsync()
    {
        var status = await _inspector.ReadStatusAsync().ConfigureAwait(false);
        var swarms = await _swarms.ReadAsync().ConfigureAwait(false);
        // The wait-for graph from the activity records the status read already has (no second read, no cap).
        var cycles = CycleFinder.FindDeadlocks(WaitForGraph.FromActivity(status.Coordinators.Where(c => c.Blocking).Select(c => c.Activity!)));
        var database = _redis.Database;
        // Epochs and items in hand: one batch for every participant (O(participants), no SCAN).
        var ids = status.Coordinators.Select(c => c.CoordinatorId).ToList();
        var batch = database.CreateBatch();
        var epochs = batch.StringGetAsync([.. ids.Select(id => Keys.Epoch(id))]);
        // The force-unblock markers (their value is when): a new one is a force-unblock for the timeline.
        var unblocks = batch.StringGetAsync([.. ids.Select(id => Keys.Unblock(id))]);
        var owned = status.Coordinators.Select(c => c.IsValidator ? null : batch.SetMembersAsync(Keys.Owned(c.SwarmId, c.CoordinatorId))).ToList();
        batch.Execute();
        var epochValues = ids.Count == 0 ? [] : await epochs.ConfigureAwait(false);
        var unblockValues = ids.Count == 0 ? [] : await unblocks.ConfigureAwait(false);
        var ownedValues = new List<string[]>(owned.Count);
        foreach (var task in owned)
        {
            ownedValues.Add(task is null ? [] : [.. (await task.ConfigureAwait(false)).Select(v => v.ToString())]);
        }

        return new LiveState(status, swarms, cycles, epochValues.Select(ParseEpoch).ToList(), ownedValues)
        {
            Unblocks = ids.Select((id, i) => (id, value: unblockValues[i])).Where(u => u.value.HasValue)
                .ToDictionary(u => u.id, u => u.value.ToString(), StringComparer.Ordinal),
        };
    }

    /// <summary>
    /// Of the participants gone since <paramref name="before"/>, those with an escalation record: they died (their
    /// escalation may already be over and its cleanup done within one refresh), the others stopped.
    /// </summary>
    private async Task<HashSet<string>> EscalatedAsync(LiveState before, LiveState after)
    {
        var now = after.Status.Coordinators.Select(c => c.CoordinatorId).ToHashSet(StringComparer.Ordinal);
        var gone = before.Status.Coordinators.Select(c => c.CoordinatorId).Where(id => !now.Contains(id)).ToList();
        if (gone.Count == 0)
        {
            return [];
        }

        var records = await _redis.Database.StringGetAsync([.. gone.Select(id => Keys.Escalation(id))]).ConfigureAwait(false);
        return gone.Where((_, i) => records[i].HasValue).ToHashSet(StringComparer.Ordinal);
    }

    private static long? ParseEpoch(RedisValue value) =>
        long.TryParse((string?)value, NumberStyles.None, CultureInfo.InvariantCulture, out var epoch) ? epoch : null;

    /// <inheritdoc/>
    public async ValueTask DisposeAsync()
    {
        if (_notices is not null)
        {
            await _notices.UnsubscribeAsync().ConfigureAwait(false);
        }

        await _loop.DisposeAsync().ConfigureAwait(false);
        _refreshing.Dispose();
        lock (_gate)
        {
            _subscribers.Clear();
        }
    }

    private sealed class Subscription(LiveView view, Action<string, string> onEvent) : IDisposable
    {
        public void Dispose()
        {
            lock (view._gate)
            {
                view._subscribers.Remove(onEvent);
            }
        }
    }
}

/// <summary>What one refresh read.</summary>
internal sealed record LiveState(
    CoordinationStatus Status, SwarmStatusReport Swarms, IReadOnlyList<Deadlock> Cycles, IReadOnlyList<long?> Epochs, IReadOnlyList<string[]> Owned)
{
    /// <summary>Force-unblock markers of the participants, by ID (value: when it was set).</summary>
    public IReadOnlyDictionary<string, string> Unblocks { get; init; } = new Dictionary<string, string>();

    public IEnumerable<(CoordinatorHealth Health, long? Epoch, string[] Owned)> Participants =>
        Status.Coordinators.Select((c, i) => (c, Epochs.Count > i ? Epochs[i] : null, Owned.Count > i ? Owned[i] : []));

    /// <summary>Milliseconds a blocking participant has been waiting, by its activity record.</summary>
    public long? BlockingFor(CoordinatorHealth c) =>
        c.Blocking && c.Activity?.BlockingSince is { } since ? Math.Max(0, Status.Now - since) : null;

    public object ToSnapshot(string processId, IReadOnlyList<string> roles, RecoveryOptions recovery, IReadOnlyList<LiveAlert> alerts)
    {
        var cycles = Cycles.Select(c => c.Coordinators).ToList();
        var targets = Swarms.Swarms.ToDictionary(s => s.SwarmId, s => s.TargetSize, StringComparer.Ordinal);
        return new
        {
            now = Status.Now,
            process = new { id = processId, roles },
            staleThresholdMs = (long)recovery.HeartbeatStaleThreshold.TotalMilliseconds,
            maxWarnings = recovery.MaxWarnings,
            spawningPaused = Swarms.SpawningPaused,
            swarms = Status.Swarms.Select(s => new
            {
                swarmId = s.SwarmId,
                target = targets.GetValueOrDefault(s.SwarmId),
                live = s.Live,
                blocking = s.Blocking,
                stale = s.Stale,
            }).Concat(Swarms.Swarms.Where(s => Status.Swarms.All(x => x.SwarmId != s.SwarmId)).Select(s => new
            {
                swarmId = s.SwarmId,
                target = s.TargetSize,
                live = s.CoordinatorCount,
                blocking = s.ActiveBlockingCoordinators,
                stale = 0,
            })).OrderBy(s => s.swarmId, StringComparer.Ordinal),
            spawnRequests = Status.SpawnRequests.Select(r => new
            {
                newCoordinatorId = r.NewCoordinatorId,
                swarmId = r.SwarmId,
                status = r.Status,
                replaces = r.ReplacesCoordinatorId,
                ageMs = Math.Max(0, Status.Now - r.Timestamp),
                error = r.Error,
            }),
            participants = Participants.Select(p => new
            {
                id = p.Health.CoordinatorId,
                swarmId = p.Health.SwarmId,
                kind = p.Health.IsValidator ? "validator" : "coordinator",
                ts = p.Health.IsTs, // a TS coordinator (CFN_TS_COMPAT): its age is since its heartbeat was last seen to change
                heartbeatAgeMs = p.Health.HeartbeatAgeMs,
                stale = p.Health.Stale,
                warnings = p.Health.Health?.Warnings ?? 0,
                healthState = p.Health.Health?.State ?? "healthy",
                epoch = p.Epoch,
                status = p.Health.Activity?.Status,
                phase = p.Health.Activity?.Phase,
                iteration = p.Health.Activity?.Iteration,
                waitingFor = p.Health.Blocking ? WaitForGraph.SplitWaitingFor(p.Health.Activity?.WaitingFor) : [],
                waitingForSignal = p.Health.Blocking ? p.Health.Activity?.WaitingForSignal : null,
                blockingForMs = BlockingFor(p.Health),
                ownedItems = p.Owned,
            }),
            waits = new
            {
                edges = Status.Coordinators.Where(c => c.Blocking).SelectMany(c => WaitForGraph.SplitWaitingFor(c.Activity?.WaitingFor).Select(to => new
                {
                    from = c.CoordinatorId,
                    to,
                    signal = c.Activity?.WaitingForSignal,
                    forMs = BlockingFor(c),
                })),
                cycles,
            },
            escalations = Status.Escalations.Select(e => new
            {
                deadCoordinatorId = e.Record.DeadCoordinatorId,
                swarmId = e.Record.SwarmId,
                status = e.Record.Status,
                step = e.Record.Step,
                state = e.State,
                newCoordinatorId = e.Record.NewCoordinatorId,
                leaseLeftMs = e.LeaseLeftMs,
            }),
            breakers = Status.Breakers.SelectMany(b => b.Breakers.Select(kv => new { process = b.ProcessId, name = kv.Key, state = kv.Value })),
            alerts,
        };
    }
}

/// <summary>One line of the dashboard's timeline.</summary>
/// <param name="At">Redis time of the refresh that saw it (Unix ms).</param>
/// <param name="Kind"><c>joined</c>, <c>left</c>, <c>warning</c>, <c>death</c>, <c>escalation</c>, <c>replacement</c>, <c>spawn</c>, <c>stuck_wait</c>, <c>force_unblock</c>, <c>deadlock</c> or <c>breaker</c>.</param>
/// <param name="Text">What happened, for people.</param>
/// <param name="Ids">The coordinators it names.</param>
internal sealed record LiveEvent(long At, string Kind, string Text, IReadOnlyList<string> Ids);

/// <summary>What changed between two snapshots, as timeline entries.</summary>
internal static class LiveTimeline
{
    public static List<LiveEvent> Between(LiveState before, LiveState after, RecoveryOptions recovery, IReadOnlySet<string> escalated)
    {
        var now = after.Status.Now;
        var events = new List<LiveEvent>();
        var old = before.Status.Coordinators.ToDictionary(c => c.CoordinatorId, StringComparer.Ordinal);
        var current = after.Status.Coordinators.ToDictionary(c => c.CoordinatorId, StringComparer.Ordinal);
        var replacing = after.Status.SpawnRequests.Where(r => r.ReplacesCoordinatorId is not null)
            .ToDictionary(r => r.NewCoordinatorId, r => r.ReplacesCoordinatorId!, StringComparer.Ordinal);
        foreach (var (id, c) in current)
        {
            var kind = c.IsValidator ? "validator" : "coordinator";
            if (!old.TryGetValue(id, out var was))
            {
                events.Add(replacing.TryGetValue(id, out var replaced)
                    ? new LiveEvent(now, "replacement", $"{kind} {id} started, replacing {replaced}", [id, replaced])
                    : new LiveEvent(now, "joined", $"{kind} {id} joined swarm {c.SwarmId}", [id]));
                continue;
            }

            var state = c.Health?.State ?? "healthy";
            if (state != (was.Health?.State ?? "healthy") || (c.Health?.Warnings ?? 0) > (was.Health?.Warnings ?? 0))
            {
                if (state == "dead")
                {
                    events.Add(new LiveEvent(now, "death", $"{kind} {id} declared dead (heartbeat {c.HeartbeatAgeMs / 1000.0:0.0} s old)", [id]));
                }
                else if (state == "warning")
                {
                    events.Add(new LiveEvent(now, "warning", $"{kind} {id}: heartbeat stale, warning {c.Health?.Warnings}/{recovery.MaxWarnings}", [id]));
                }
            }

            var blockedFor = after.BlockingFor(c);
            var threshold = (long)recovery.StuckWaitGrace.TotalMilliseconds;
            if (c.Activity?.TimeoutMs is { } timeout && blockedFor is { } ms && ms > timeout + threshold &&
                !(before.BlockingFor(was) is { } earlier && earlier > timeout + threshold))
            {
                events.Add(new LiveEvent(now, "stuck_wait", $"{id} has waited {ms / 1000} s for {c.Activity.WaitingFor}, past its {timeout / 1000} s timeout", [id]));
            }
        }

        foreach (var (id, was) in old)
        {
            if (!current.ContainsKey(id))
            {
                var dead = escalated.Contains(id) || was.Health?.State == "dead";
                events.Add(new LiveEvent(now, dead ? "death" : "left", dead ? $"{id} declared dead and removed (escalated)" : $"{id} left (stopped)", [id]));
            }
        }

        foreach (var (id, at) in after.Unblocks)
        {
            if (!before.Unblocks.TryGetValue(id, out var was) || was != at)
            {
                events.Add(new LiveEvent(now, "force_unblock", $"{id} force-unblocked (its waits end as forced)", [id]));
            }
        }

        var escalations = before.Status.Escalations.ToDictionary(e => e.Record.DeadCoordinatorId, StringComparer.Ordinal);
        foreach (var e in after.Status.Escalations)
        {
            var dead = e.Record.DeadCoordinatorId;
            if (!escalations.TryGetValue(dead, out var was) || was.Record.Step != e.Record.Step || was.State != e.State)
            {
                events.Add(new LiveEvent(now, "escalation", $"escalation of {dead}: step {e.Record.Step} ({e.State}), replacement {e.Record.NewCoordinatorId}",
                    [dead, e.Record.NewCoordinatorId]));
            }
        }

        var spawns = before.Status.SpawnRequests.ToDictionary(r => r.NewCoordinatorId, StringComparer.Ordinal);
        foreach (var r in after.Status.SpawnRequests)
        {
            if (!spawns.TryGetValue(r.NewCoordinatorId, out var was) || was.Status != r.Status)
            {
                events.Add(new LiveEvent(now, "spawn", $"spawn request {r.NewCoordinatorId} ({r.SwarmId}): {r.Status}" +
                    (r.ReplacesCoordinatorId is { } replaces ? $", replaces {replaces}" : "") + (r.Error is { } error ? $": {error}" : ""),
                    r.ReplacesCoordinatorId is { } rid ? [r.NewCoordinatorId, rid] : [r.NewCoordinatorId]));
            }
        }

        var cycles = before.Cycles.Select(Key).ToHashSet(StringComparer.Ordinal);
        foreach (var cycle in after.Cycles.Where(c => !cycles.Contains(Key(c))))
        {
            events.Add(new LiveEvent(now, "deadlock", "deadlock: " + string.Join(" → ", cycle.Path), cycle.Coordinators));
        }

        var breakers = before.Status.Breakers.SelectMany(b => b.Breakers.Select(kv => (b.ProcessId, kv.Key, kv.Value)))
            .ToDictionary(b => (b.ProcessId, b.Key), b => b.Value);
        foreach (var (process, name, state) in after.Status.Breakers.SelectMany(b => b.Breakers.Select(kv => (b.ProcessId, kv.Key, kv.Value))))
        {
            if (breakers.TryGetValue((process, name), out var was) && was != state)
            {
                events.Add(new LiveEvent(now, "breaker", $"breaker {name} of {process}: {was} → {state}", []));
            }
        }

        return events;
    }

    private static string Key(Deadlock cycle) => string.Join(',', cycle.Coordinators.Order(StringComparer.Ordinal));
}

/// <summary>One of the runbook's six alerts as the dashboard shows it.</summary>
internal sealed record LiveAlert(string Name, string Severity, string State, string Summary, string Runbook);

/// <summary>
/// Stand-ins for the runbook's six alerts (deploy/kubernetes/monitoring): each condition evaluated at every refresh,
/// <c>pending</c> while it holds for less than the rule's <c>for</c>, then <c>firing</c>. The blocking ones read the
/// fleet (the snapshot); latency, heartbeat failures and timeouts read this process's own metrics, so they cover only
/// what this process saw. Prometheus' rules stay the real ones.
/// </summary>
internal sealed class LiveAlerts(CollectorRegistry registry, TimeProvider time)
{
    private const string RunbookBase = "https://runbooks.example.com/cfn/docs/runbook.md#alert-";
    private readonly Dictionary<string, long> _since = new(StringComparer.Ordinal);
    private readonly Queue<(long At, MetricTotals Totals)> _samples = new();

    public async Task<IReadOnlyList<LiveAlert>> EvaluateAsync(LiveState state)
    {
        var now = time.GetTimestamp();
        var totals = await MetricTotals.ReadAsync(registry).ConfigureAwait(false);
        _samples.Enqueue((now, totals));
        while (_samples.Count > 1 && time.GetElapsedTime(_samples.Peek().At, now) > TimeSpan.FromMinutes(5))
        {
            _samples.Dequeue();
        }

        var blocking = state.Status.Coordinators.Where(c => c.Blocking).Select(c => state.BlockingFor(c) ?? 0).Order().ToList();
        var p95 = blocking.Count == 0 ? 0 : blocking[(int)Math.Ceiling(0.95 * blocking.Count) - 1];
        var longest = blocking.Count == 0 ? 0 : blocking[^1];
        var latency = Rate(t => t.LatencySum, TimeSpan.FromMinutes(5)) is { } sum && Rate(t => t.LatencyCount, TimeSpan.FromMinutes(5)) is > 0 and var count
            ? sum / count : 0;
        var heartbeatFailures = Rate(t => t.HeartbeatFailures, TimeSpan.FromMinutes(2)) ?? 0;
        var timeouts = Rate(t => t.TimeoutEvents, TimeSpan.FromMinutes(2)) ?? 0;
        return
        [
            Alert("HighBlockingCoordinators", "warning", blocking.Count > 10, TimeSpan.FromMinutes(5),
                $"{blocking.Count} coordinators blocking (fires above 10 for 5m)", "highblockingcoordinators"),
            Alert("HighBlockingDuration", "warning", p95 > 300_000, TimeSpan.FromMinutes(5),
                $"p95 of the current waits {p95 / 1000.0:0.#} s (fires above 300 s for 5m)", "highblockingduration"),
            Alert("StuckCoordinator", "critical", longest > 1_800_000, TimeSpan.FromMinutes(10),
                $"longest current wait {longest / 1000.0:0.#} s (fires above 1800 s for 10m)", "stuckcoordinator"),
            Alert("HighSignalLatency", "warning", latency > 5, TimeSpan.FromMinutes(5),
                $"mean signal delivery latency {latency:0.###} s in this process over 5m (fires above 5 s for 5m)", "highsignallatency"),
            Alert("HeartbeatFailures", "critical", heartbeatFailures > 0.1, TimeSpan.FromMinutes(2),
                $"{heartbeatFailures:0.###}/s heartbeat failures in this process over 2m (fires above 0.1/s for 2m)", "heartbeatfailures"),
            Alert("TimeoutEvents", "critical", timeouts > 0.1, TimeSpan.FromMinutes(2),
                $"{timeouts:0.###}/s timeout events in this process over 2m (fires above 0.1/s for 2m)", "timeoutevents"),
        ];

        LiveAlert Alert(string name, string severity, bool holds, TimeSpan forDuration, string summary, string anchor)
        {
            string status;
            if (!holds)
            {
                _since.Remove(name);
                status = "ok";
            }
            else
            {
                var since = _since.TryGetValue(name, out var s) ? s : _since[name] = now;
                status = time.GetElapsedTime(since, now) >= forDuration ? "firing" : "pending";
            }

            return new LiveAlert(name, severity, status, summary, RunbookBase + anchor);
        }

        double? Rate(Func<MetricTotals, double> value, TimeSpan window)
        {
            var first = _samples.FirstOrDefault(s => time.GetElapsedTime(s.At, now) <= window);
            var seconds = time.GetElapsedTime(first.At, now).TotalSeconds;
            return seconds < 1 ? null : (value(totals) - value(first.Totals)) / seconds;
        }
    }
}

/// <summary>The totals the alert stand-ins need, summed over every label, from this process's exposition text.</summary>
internal readonly record struct MetricTotals(double LatencySum, double LatencyCount, double HeartbeatFailures, double TimeoutEvents)
{
    public static async Task<MetricTotals> ReadAsync(CollectorRegistry registry)
    {
        using var stream = new MemoryStream();
        await registry.CollectAndExportAsTextAsync(stream).ConfigureAwait(false);
        double latencySum = 0, latencyCount = 0, heartbeat = 0, timeouts = 0;
        foreach (var line in Encoding.UTF8.GetString(stream.ToArray()).Split('\n'))
        {
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }

            var space = line.LastIndexOf(' ');
            if (space < 0 || !double.TryParse(line.AsSpan(space + 1), NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
            {
                continue;
            }

            var name = line.AsSpan(0, line.IndexOfAny(['{', ' ']));
            switch (name)
            {
                case "signal_delivery_latency_seconds_sum": latencySum += value; break;
                case "signal_delivery_latency_seconds_count": latencyCount += value; break;
                case "heartbeat_failures_total": heartbeat += value; break;
                case "timeout_events_total": timeouts += value; break;
            }
        }

        return new MetricTotals(latencySum, latencyCount, heartbeat, timeouts);
    }
}
