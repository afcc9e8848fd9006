using Cfn.Coordination.Recovery;
using StackExchange.Redis;

namespace Cfn.Coordination.Swarms;

/// <summary>
/// <c>GET /api/swarms/status</c> (SPEC §3.1 #1): every known swarm (a live coordinator, a target or a spawn request of
/// the last K9 TTL names it) with its live coordinators, read from the registry and the swarm hash (no SCAN).
/// </summary>
internal sealed class SwarmStatusReader
{
    private readonly IDatabase _database;
    private readonly TimeSpan _staleThreshold;
    private readonly int? _expectedCoordinators;
    private readonly int _spawnTtlSeconds;
    private readonly TimeProvider _time;

    /// <summary>
    /// <paramref name="staleThreshold"/>: a coordinator is live while its heartbeat is newer than this
    /// (<see cref="RecoveryOptions.HeartbeatStaleThreshold"/>); <paramref name="expectedCoordinators"/>:
    /// <c>SWARM_EXPECTED_COORDINATORS</c>, reported as is.
    /// </summary>
    public SwarmStatusReader(IDatabase database, TimeSpan staleThreshold, int? expectedCoordinators = null, int spawnTtlSeconds = 3600, TimeProvider? time = null)
    {
        ArgumentNullException.ThrowIfNull(database);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(staleThreshold, TimeSpan.Zero);
        _database = database;
        _staleThreshold = staleThreshold;
        _expectedCoordinators = expectedCoordinators;
        _spawnTtlSeconds = spawnTtlSeconds;
        _time = time ?? TimeProvider.System;
    }

    /// <summary>The status now.</summary>
    public async Task<SwarmStatusReport> ReadAsync()
    {
        var since = _time.GetUtcNow().ToUnixTimeMilliseconds() - (_spawnTtlSeconds * 1000L);
        var snapshot = await SwarmSnapshot.LoadAsync(_database, (long)_staleThreshold.TotalMilliseconds, since).ConfigureAwait(false);
        return Build(snapshot, _expectedCoordinators);
    }

    internal static SwarmStatusReport Build(SwarmSnapshot snapshot, int? expectedCoordinators)
    {
        var live = snapshot.Members.ToLookup(m => m.SwarmId, StringComparer.Ordinal);
        var inFlight = snapshot.Requests.Where(r => r.Status is SpawnStatus.Pending or SpawnStatus.Spawning)
            .ToLookup(r => r.SwarmId, StringComparer.Ordinal);
        var swarmIds = live.Select(g => g.Key)
            .Concat(snapshot.Targets.Keys)
            .Concat(snapshot.Requests.Select(r => r.SwarmId))
            .Distinct(StringComparer.Ordinal)
            .Order(StringComparer.Ordinal);
        var swarms = new List<SwarmStatus>();
        foreach (var swarmId in swarmIds)
        {
            var coordinators = live[swarmId].Select(m => m.CoordinatorId).Order(StringComparer.Ordinal).ToList();
            var pending = inFlight[swarmId].Count();
            int? target = snapshot.Targets.TryGetValue(swarmId, out var t) ? t : null;
            swarms.Add(new SwarmStatus
            {
                SwarmId = swarmId,
                CoordinatorCount = coordinators.Count,
                Coordinators = coordinators,
                ActiveBlockingCoordinators = coordinators.Count(snapshot.Blocking.Contains),
                PendingSpawns = pending,
                TargetSize = target,
                Status = StatusOf(coordinators.Count, pending, target),
            });
        }

        return new SwarmStatusReport
        {
            Swarms = swarms,
            SpawningPaused = snapshot.PausedAt is not null,
            PausedAt = snapshot.PausedAt,
            ExpectedCoordinators = expectedCoordinators,
            Timestamp = snapshot.NowMs,
        };
    }

    private static string StatusOf(int live, int pending, int? target) =>
        pending > 0 || (target is { } t && live != t) ? "scaling" : live > 0 ? "running" : "empty";
}

/// <summary>The body of <c>GET /api/swarms/status</c>.</summary>
public sealed record SwarmStatusReport
{
    /// <summary>Every known swarm, by ID.</summary>
    public required IReadOnlyList<SwarmStatus> Swarms { get; init; }

    /// <summary>True while spawning is paused.</summary>
    public required bool SpawningPaused { get; init; }

    /// <summary>When it was paused (ms), or null.</summary>
    public required long? PausedAt { get; init; }

    /// <summary><c>SWARM_EXPECTED_COORDINATORS</c> (the runbook's <c>swarm-config</c> value), or null.</summary>
    public required int? ExpectedCoordinators { get; init; }

    /// <summary>Redis time of the read, ms.</summary>
    public required long Timestamp { get; init; }
}

/// <summary>One swarm in <see cref="SwarmStatusReport"/>.</summary>
public sealed record SwarmStatus
{
    /// <summary>The swarm.</summary>
    public required string SwarmId { get; init; }

    /// <summary>Live coordinators (heartbeat newer than the stale threshold).</summary>
    public required int CoordinatorCount { get; init; }

    /// <summary>Their IDs, sorted.</summary>
    public required IReadOnlyList<string> Coordinators { get; init; }

    /// <summary>Live coordinators blocking in an ACK wait now.</summary>
    public required int ActiveBlockingCoordinators { get; init; }

    /// <summary>Spawn requests still pending or spawning.</summary>
    public required int PendingSpawns { get; init; }

    /// <summary>The target size, or null when the swarm was never scaled.</summary>
    public required int? TargetSize { get; init; }

    /// <summary><c>scaling</c> (spawns in flight, or live ≠ target), <c>running</c> (live coordinators) or <c>empty</c>.</summary>
    public required string Status { get; init; }
}
