using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Cfn.Coordination.Detection;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Infrastructure;

/// <summary>Helpers shared by the detection and recovery tests.</summary>
internal static class RecoveryKit
{
    /// <summary>Short thresholds: stale after 500 ms, warnings 100 ms apart, dead after 3 warnings (700 ms).</summary>
    public static RecoveryOptions FastOptions(int maxWarnings = 3) => new()
    {
        HeartbeatStaleThreshold = TimeSpan.FromMilliseconds(500),
        MonitorInterval = TimeSpan.FromMilliseconds(100),
        MaxWarnings = maxWarnings,
    };

    /// <summary>Captured log lines containing every one of <paramref name="literals"/>, oldest first.</summary>
    public static List<FakeLogRecord> Lines(Harness h, params string[] literals) =>
        h.Logs.GetSnapshot().Where(r => literals.All(l => r.Message.Contains(l, StringComparison.Ordinal))).ToList();

    /// <summary>Runs monitor passes (about every 20 ms) until <paramref name="id"/> is declared dead; returns the death and the Redis time it was seen.</summary>
    public static async Task<(CoordinatorDeath? Death, long SeenAtMs)> RunUntilDeadAsync(Harness h, HeartbeatMonitor monitor, string id, TimeSpan timeout)
    {
        CoordinatorDeath? death = null;
        if (await EventuallyAsync(async () => (death = (await monitor.RunOnceAsync()).Deaths.FirstOrDefault(d => d.CoordinatorId == id)) is not null, timeout))
        {
            return (death, await RedisKit.NowAsync(h.Database));
        }

        return (null, 0);
    }

    /// <summary>Removes coordinators from every shared index, so later tests' monitors never judge them.</summary>
    public static async Task ForgetAsync(IDatabase database, params string[] ids)
    {
        foreach (var id in ids)
        {
            await database.SortedSetRemoveAsync(Keys.Registry, id);
            await database.SortedSetRemoveAsync(Keys.Deadlines, id);
            await database.HashDeleteAsync(Keys.Health, id);
            await database.HashDeleteAsync(Keys.Swarms, id);
            await database.HashDeleteAsync(Keys.StuckReported, id);
        }
    }
}

/// <summary>The Redis clock, as the library reads it.</summary>
internal static class RedisKit
{
    public static Task<long> NowAsync(IDatabase database) => RedisTime.NowMsAsync(database);
}

/// <summary>
/// A Redis database of its own (flushed before and after), for the few tests that need an empty world: the shared
/// database 0 holds other tests' coordinators, which the monitor and the batch cleanup would count. Each index is
/// used by one test class only, whose tests run one at a time.
/// </summary>
internal sealed class DedicatedDatabase : IAsyncDisposable
{
    public const int MonitorTests = 11;
    public const int BatchCleanupTests = 12;
    public const int MalformedStateTests = 13;
    public const int SignalRetryTests = 10;
    public const int LoopHealthTests = 24;

    /// <summary>The operators' read model: the registry, health hash and deadlines index it reads are global keys.</summary>
    public const int InspectionTests = 27;

    /// <summary>The swarm manager tests (collection <c>swarms</c>, one test at a time); the Cfn.Tests swarm API tests use 2.</summary>
    public const int SwarmTests = 1;

    /// <summary>
    /// Validation tests: never flushed, every key is per-test (unique IDs and inputs); shared with Cfn.Tests'
    /// ValidatorApiTests, which runs in parallel (so no test here records an average over 300000 ms).
    /// </summary>
    public const int ValidationTests = 3;

    /// <summary>Work-loop tests: an empty world, because coordinators pick any live validator of the database.</summary>
    public const int LoopTests = 4;

    /// <summary>Waits on peers that die (D18): the heartbeat monitor there judges only the test's own coordinators.</summary>
    public const int PeerDeathTests = 20;

    /// <summary>Script library tests that read inbox views other tests' sweeps of database 0 may remove.</summary>
    public const int ScriptLibraryTests = 21;

    /// <summary>The restart race: the monitor must judge only the test's own coordinator.</summary>
    public const int RestartRaceTests = 23;

    /// <summary>TS coordinators watched by the monitor (CFN_TS_COMPAT on): the watch keys are global.</summary>
    public const int TsCompatTests = 58;

    /// <summary>The same TS heartbeats with CFN_TS_COMPAT off: nothing of the watch may appear.</summary>
    public const int TsCompatOffTests = 59;

    private readonly RedisServer _server;
    private readonly List<Coordinator> _coordinators = [];

    private DedicatedDatabase(RedisServer server, RedisContext redis, int index)
    {
        _server = server;
        Redis = redis;
        Index = index;
    }

    public RedisContext Redis { get; }

    public IDatabase Database => Redis.Database;

    public int Index { get; }

    /// <summary>Flushes database <paramref name="index"/> and opens a context on it; <paramref name="time"/> is the clock its timers run on.</summary>
    public static async Task<DedicatedDatabase> CreateAsync(RedisServer server, Harness h, int index, TimeProvider? time = null)
    {
        await server.Server.FlushDatabaseAsync(index);
        var redis = new RedisContext(server.Multiplexer, h.Options, database: index, loggerFactory: h.LoggerFactory, time: time);
        return new DedicatedDatabase(server, redis, index);
    }

    public async Task<Coordinator> StartAsync(Harness h, string id, string swarmId, bool heartbeatLoop = false)
    {
        var coordinator = await Coordinator.StartAsync(Redis, h.Keys, id, swarmId, h.Metrics, heartbeatLoop);
        _coordinators.Add(coordinator);
        return coordinator;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var coordinator in _coordinators)
        {
            await coordinator.DisposeAsync();
        }

        await Redis.DisposeAsync();
        await _server.Server.FlushDatabaseAsync(Index);
    }
}
