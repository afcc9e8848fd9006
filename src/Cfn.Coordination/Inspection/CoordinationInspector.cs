using Cfn.Coordination.Activity;
using Cfn.Coordination.Inspection;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Resilience;
using Microsoft.Extensions.Logging;

// An entry point of the library: public at the namespace root (SPEC D22), its machinery stays in Inspection.
namespace Cfn.Coordination;

/// <summary>
/// The read model for operators: what <c>cfn status</c>, <c>/api/locks/status</c>, <c>/api/coordinator/state</c> and the
/// SIGQUIT dump show, read from Redis (or from a coordinator in memory) and returned as records, so that callers only
/// format. Reads only; nothing is written except the expired entries the spawn index prunes as it is listed. A stored value
/// that cannot be parsed is skipped with a warning naming its key (or, in <see cref="ReadLocksAsync"/>, returned with its
/// error).
/// </summary>
public sealed class CoordinationInspector
{
    /// <summary>At most this many work items of one coordinator are listed by <see cref="ReadLocksAsync"/>.</summary>
    public const int MaxWorkFences = 1000;

    /// <summary>At most this many blocking coordinators are read by <see cref="ReadBlockingActivityAsync"/> by default.</summary>
    public const int DefaultMaxBlocking = 500;

    /// <summary>The <c>redis-cli --scan --pattern</c> pattern of every coordinator's heartbeat key (an operator's hint).</summary>
    public static string HeartbeatKeyPattern => Keys.HeartbeatPrefix + "*";

    /// <summary>The <c>redis-cli --scan --pattern</c> pattern of every coordinator's activity record (an operator's hint).</summary>
    public static string ActivityKeyPattern => Keys.ActivityPrefix + "*";

    private readonly RedisContext _redis;
    private readonly RecoveryOptions _options;
    private readonly ILogger _logger;

    /// <summary>An inspector reading through <paramref name="redis"/>.</summary>
    /// <param name="redis">The connection to read through.</param>
    /// <param name="options">The stale threshold and escalation TTL status is judged by; the defaults when null.</param>
    public CoordinationInspector(RedisContext redis, RecoveryOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(redis);
        _redis = redis;
        _options = options ?? new RecoveryOptions();
        _logger = redis.LoggerFactory.CreateLogger<CoordinationInspector>();
    }

    /// <summary>
    /// What <paramref name="coordinator"/> holds or is named in: escalation records about it, the batch cleanup lock, its
    /// work items (found by SCAN of its own key pattern, an operator read) and its stored epoch. Read through the
    /// coordinator's own connection.
    /// </summary>
    /// <exception cref="StackExchange.Redis.RedisException">Redis failed.</exception>
    public static Task<CoordinatorLocks> ReadLocksAsync(Coordinator coordinator)
    {
        ArgumentNullException.ThrowIfNull(coordinator);
        var redis = coordinator.Redis;
        return new LockReader(redis, redis.LoggerFactory.CreateLogger<CoordinationInspector>()).ReadAsync(coordinator);
    }

    /// <summary>The in-memory state of <paramref name="coordinator"/> in this process; no Redis read.</summary>
    public static CoordinatorState Describe(Coordinator coordinator)
    {
        ArgumentNullException.ThrowIfNull(coordinator);
        var redis = coordinator.Redis;
        var waits = coordinator.Activity.GetRunningWaits();
        var heartbeats = coordinator.Heartbeats;
        return new CoordinatorState(
            coordinator.Id,
            coordinator.SwarmId,
            coordinator.InstanceId,
            coordinator.Epoch,
            coordinator.Status,
            coordinator.Phase,
            coordinator.Iteration,
            coordinator.IsSuperseded,
            coordinator.Activity.LastActivity,
            waits.Count == 0 ? null : waits.MinBy(w => w.StartedAt),
            waits.Count,
            new HeartbeatState(coordinator.HeartbeatKey!, (long)redis.Options.HeartbeatInterval.TotalMilliseconds,
                heartbeats.LastSentAt, heartbeats.Sequence, heartbeats.LastError),
            redis.Breakers.All.ToDictionary(b => b.Name, b => b.State.ToLabel(), StringComparer.Ordinal),
            redis.Time.GetUtcNow().ToUnixTimeMilliseconds());
    }

    /// <summary>
    /// The activity record <paramref name="coordinator"/> would write now (its status and, when blocking, whom it waits
    /// for); no Redis read.
    /// </summary>
    public static ActivityRecord CurrentActivity(Coordinator coordinator)
    {
        ArgumentNullException.ThrowIfNull(coordinator);
        return coordinator.Activity.Snapshot();
    }

    /// <summary>Everything <c>cfn status</c> prints: swarms, coordinators, spawn requests, open escalations and breakers.</summary>
    /// <exception cref="StackExchange.Redis.RedisException">Redis failed.</exception>
    public Task<CoordinationStatus> ReadStatusAsync() => new StatusReader(_redis, _options, _logger).ReadAsync();

    /// <summary>Every registered coordinator and validator with its heartbeat age, the monitor's warnings and its activity.</summary>
    /// <exception cref="StackExchange.Redis.RedisException">Redis failed.</exception>
    public async Task<IReadOnlyList<CoordinatorHealth>> ReadCoordinatorsAsync()
    {
        var now = await RedisTime.NowMsAsync(_redis.Database).ConfigureAwait(false);
        return await new StatusReader(_redis, _options, _logger).ReadCoordinatorsAsync(now).ConfigureAwait(false);
    }

    /// <summary>The spawn requests in the index (created within the escalation TTL), oldest first.</summary>
    /// <exception cref="StackExchange.Redis.RedisException">Redis failed.</exception>
    public Task<IReadOnlyList<SpawnRequest>> ReadSpawnRequestsAsync() =>
        StatusReader.ReadSpawnRequestsAsync(new SpawnRequests(_redis.Database, _redis.Time, _options.EscalationTtlSeconds));

    /// <summary>The escalations that are not over: running, stuck, or waiting for their replacement.</summary>
    /// <exception cref="StackExchange.Redis.RedisException">Redis failed.</exception>
    public async Task<IReadOnlyList<OpenEscalation>> ReadOpenEscalationsAsync()
    {
        var now = await RedisTime.NowMsAsync(_redis.Database).ConfigureAwait(false);
        return await new StatusReader(_redis, _options, _logger)
            .ReadOpenEscalationsAsync(new SpawnRequests(_redis.Database, _redis.Time, _options.EscalationTtlSeconds), now).ConfigureAwait(false);
    }

    /// <summary>The circuit-breaker states every running cfn process publishes, by process ID.</summary>
    /// <exception cref="StackExchange.Redis.RedisException">Redis failed.</exception>
    public Task<IReadOnlyList<BreakerReport>> ReadBreakersAsync() => BreakerStatePublisher.ReadAllAsync(_redis.Database);

    /// <summary>
    /// The activity records of the coordinators with a running wait (the members of the deadlines index, at most
    /// <paramref name="max"/>), each named by its key: the input of the wait-for graph.
    /// </summary>
    /// <exception cref="StackExchange.Redis.RedisException">Redis failed.</exception>
    public Task<IReadOnlyList<ActivityRecord>> ReadBlockingActivityAsync(int max = DefaultMaxBlocking)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(max, 1);
        return new WaitReader(_redis, _logger).ReadAsync(max);
    }

    /// <summary>
    /// The wait-for graph of the blocking coordinators (at most <paramref name="max"/>): who waits for whom, and the
    /// cycles in it. A read for operators (the SIGQUIT dump); the timeout handler's deadlock check reads the same records.
    /// </summary>
    /// <exception cref="StackExchange.Redis.RedisException">Redis failed.</exception>
    public async Task<WaitGraphReport> ReadWaitGraphAsync(int max = DefaultMaxBlocking)
    {
        var records = await ReadBlockingActivityAsync(max).ConfigureAwait(false);
        var graph = Deadlocks.WaitForGraph.FromActivity(records);
        var edges = records.Where(Deadlocks.WaitForGraph.IsBlocking)
            .OrderBy(r => r.CoordinatorId, StringComparer.Ordinal)
            .Select(r => new WaitGraphEdges(r.CoordinatorId, Deadlocks.WaitForGraph.SplitWaitingFor(r.WaitingFor)))
            .ToList();
        return new WaitGraphReport(graph.NodeCount, graph.EdgeCount, edges, Deadlocks.CycleFinder.FindDeadlocks(graph));
    }
}
