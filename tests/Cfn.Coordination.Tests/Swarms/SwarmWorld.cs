using System.Collections.Concurrent;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Swarms;
using Cfn.Coordination.Tests.Infrastructure;
using Prometheus;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Swarms;

/// <summary>The swarm tests share Redis database 1, so they run one at a time (each flushes it first).</summary>
[CollectionDefinition(Name)]
public sealed class SwarmsCollection : ICollectionFixture<RedisServer>
{
    public const string Name = "swarms";
}

/// <summary>
/// One swarm test's world on its own database (<see cref="DedicatedDatabase.SwarmTests"/>): managers, hosts whose
/// factory starts real <see cref="Coordinator"/>s, and everything stopped and flushed at the end.
/// </summary>
internal sealed class SwarmWorld : IAsyncDisposable
{
    private readonly RedisServer _server;
    private readonly List<IAsyncDisposable> _owned = [];

    private SwarmWorld(RedisServer server, Harness h, RedisContext redis)
    {
        _server = server;
        H = h;
        Redis = redis;
        Registry = Prometheus.Metrics.NewCustomRegistry();
        Metrics = new SwarmMetrics(Registry);
    }

    public Harness H { get; }

    public RedisContext Redis { get; }

    public IDatabase Database => Redis.Database;

    public CollectorRegistry Registry { get; }

    public SwarmMetrics Metrics { get; }

    /// <summary>How often the default factory was asked for each coordinator.</summary>
    public ConcurrentDictionary<string, int> FactoryCalls { get; } = new(StringComparer.Ordinal);

    public static async Task<SwarmWorld> CreateAsync(RedisServer server)
    {
        var h = Harness.Create(server);
        await server.Server.FlushDatabaseAsync(DedicatedDatabase.SwarmTests);
        var redis = new RedisContext(server.Multiplexer, h.Options, database: DedicatedDatabase.SwarmTests, loggerFactory: h.LoggerFactory);
        return new SwarmWorld(server, h, redis);
    }

    public static SwarmManagerOptions Options(int capacity = 8) => new()
    {
        HostCapacity = capacity,
        Interval = TimeSpan.FromMilliseconds(200),
        SpawnTimeout = TimeSpan.FromSeconds(20),
        HostReportInterval = TimeSpan.FromSeconds(1),
    };

    /// <summary>Starts a real coordinator on this world's database (no heartbeat loop: its first heartbeat keeps it live for the test).</summary>
    public async Task<IAsyncDisposable> StartCoordinatorAsync(string coordinatorId, string swarmId, CancellationToken cancellationToken = default)
    {
        FactoryCalls.AddOrUpdate(coordinatorId, 1, (_, n) => n + 1);
        return await Coordinator.StartAsync(Redis, H.Keys, coordinatorId, swarmId, H.Metrics, runHeartbeatLoop: false);
    }

    public SwarmManager Manager(string? id = null, SwarmMetrics? metrics = null, SwarmManagerOptions? options = null)
    {
        var manager = new SwarmManager(Redis, options ?? Options(), new RecoveryOptions(), metrics ?? Metrics, id ?? TestIds.New("manager"), expectedCoordinators: 12);
        _owned.Add(manager);
        return manager;
    }

    public async Task<CoordinatorHost> HostAsync(string? id = null, int capacity = 8, CoordinatorFactory? factory = null)
    {
        var host = new CoordinatorHost(Redis, id ?? TestIds.New("host"), factory ?? StartCoordinatorAsync, Options(capacity));
        _owned.Add(host);
        await host.StartAsync();
        return host;
    }

    /// <summary>A pending request as the escalation writes it.</summary>
    public async Task<SpawnRequest> RequestAsync(string swarmId, string reason = "replacement")
    {
        var now = await RedisTime.NowMsAsync(Database);
        var request = new SpawnRequest
        {
            NewCoordinatorId = SpawnRequests.NewCoordinatorId(now),
            ReplacesCoordinatorId = reason == "replacement" ? TestIds.New("dead") : null,
            SwarmId = swarmId,
            Timestamp = now,
            Status = SpawnStatus.Pending,
            Priority = reason == "replacement" ? "high" : "normal",
            Reason = reason,
            RequestedBy = "test",
            UpdatedAt = now,
        };
        Assert.True(await Spawns.CreateAsync(request));
        return request;
    }

    public SpawnRequests Spawns => new(Database, TimeProvider.System, 3600);

    public async Task<string?> StatusOfAsync(string newCoordinatorId) => (await Spawns.GetAsync(newCoordinatorId))?.Status;

    /// <summary>Every request of <paramref name="swarmId"/> in the index.</summary>
    public async Task<List<SpawnRequest>> RequestsOfAsync(string swarmId)
    {
        var result = new List<SpawnRequest>();
        foreach (var id in await Spawns.ListAsync())
        {
            if (await Spawns.GetAsync(id) is { } request && request.SwarmId == swarmId)
            {
                result.Add(request);
            }
        }

        return result;
    }

    /// <summary>Live coordinators of <paramref name="swarmId"/> as the status endpoint reports them.</summary>
    public static async Task<IReadOnlyList<string>> LiveAsync(SwarmManager manager, string swarmId) =>
        (await manager.Status.ReadAsync()).Swarms.FirstOrDefault(s => s.SwarmId == swarmId)?.Coordinators ?? [];

    public async ValueTask DisposeAsync()
    {
        // Managers first (no new commands), then hosts (their coordinators stop gracefully).
        foreach (var owned in _owned.OfType<SwarmManager>())
        {
            await owned.DisposeAsync();
        }

        foreach (var owned in _owned.OfType<CoordinatorHost>())
        {
            await owned.DisposeAsync();
        }

        await Redis.DisposeAsync();
        await H.DisposeAsync();
        await _server.Server.FlushDatabaseAsync(DedicatedDatabase.SwarmTests);
    }
}
