using System.Collections;
using Cfn.Coordination.Background;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Swarms;
using Cfn.Coordination.Tests.Faults;
using Cfn.Coordination.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;

namespace Cfn.Coordination.Tests.Swarms;

/// <summary>
/// SPEC §3.6 extras: <c>COORDINATOR_HOST_CAPACITY</c>, <c>SPAWN_TIMEOUT_MS</c> and <c>SWARM_MANAGER_INTERVAL_MS</c>,
/// read by <see cref="SwarmManagerOptions.FromEnvironment"/>, change what real hosts and managers do.
/// </summary>
[Collection(SwarmsCollection.Name)]
public sealed class EnvironmentEffectTests(RedisServer server)
{
    private static SwarmManagerOptions Read(params (string Name, string Value)[] variables)
    {
        var env = new Hashtable();
        foreach (var (name, value) in variables)
        {
            env[name] = value;
        }

        return SwarmManagerOptions.FromEnvironment(env);
    }

    private static SwarmManager Manager(RedisContext redis, SwarmManagerOptions options) =>
        new(redis, options, new RecoveryOptions(), new SwarmMetrics(Prometheus.Metrics.NewCustomRegistry()), TestIds.New("manager"));

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task CoordinatorHostCapacity_HostRunsThatManyTheRestStaysPending(int capacity)
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        await using var host = new CoordinatorHost(world.Redis, TestIds.New("host"), world.StartCoordinatorAsync,
            Read(("COORDINATOR_HOST_CAPACITY", $"{capacity}")));
        await host.StartAsync();
        await using var manager = Manager(world.Redis, SwarmWorld.Options());
        manager.Start();

        var requests = new[] { await world.RequestAsync("swarm-cap"), await world.RequestAsync("swarm-cap") };

        Assert.True(await EventuallyAsync(async () => (await world.RequestsOfAsync("swarm-cap")).Count(r => r.Status == SpawnStatus.Ready) == capacity));
        await manager.RunOnceAsync();
        await manager.RunOnceAsync();
        var statuses = (await world.RequestsOfAsync("swarm-cap")).Select(r => r.Status).ToList();
        Assert.Equal(capacity, statuses.Count(s => s == SpawnStatus.Ready));
        Assert.Equal(2 - capacity, statuses.Count(s => s == SpawnStatus.Pending));
        Assert.Equal(capacity, host.Running.Count);
        var record = await Probe.ReadJsonAsync(world.Database, Keys.Host(host.HostId)!);
        Assert.Equal(capacity, record.GetProperty("capacity").GetInt32());
        var pending = requests.Where(r => !host.Running.Any(c => c.CoordinatorId == r.NewCoordinatorId)).ToList();
        Assert.Equal(2 - capacity, pending.Count);
        Assert.All(pending, r => Assert.Single(RecoveryKit.Lines(world.H, "No coordinator host has room", r.NewCoordinatorId, "it stays pending")));
        Assert.Equal(2 - capacity, RecoveryKit.Lines(world.H, "No coordinator host has room").Count);
    }

    [Theory]
    [InlineData("800", true)]
    [InlineData("60000", false)]
    public async Task SpawnTimeoutMs_NoHeartbeatAfterClaim_FailedAfterIt(string timeoutMs, bool fails)
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        // The factory "starts" something that never heartbeats (an image that hangs before its coordinator runs).
        await world.HostAsync(factory: (_, _, _) => Task.FromResult<IAsyncDisposable>(new NeverHeartbeats()));
        await using var manager = Manager(world.Redis, Read(("SPAWN_TIMEOUT_MS", timeoutMs), ("SWARM_MANAGER_INTERVAL_MS", "100")));
        manager.Start();

        var request = await world.RequestAsync("swarm-slow");

        Assert.True(await EventuallyAsync(async () => await world.StatusOfAsync(request.NewCoordinatorId) != SpawnStatus.Pending));
        if (fails)
        {
            Assert.True(await EventuallyAsync(async () => await world.StatusOfAsync(request.NewCoordinatorId) == SpawnStatus.Failed));
            var failed = await world.Spawns.GetAsync(request.NewCoordinatorId);
            Assert.StartsWith("no heartbeat within 800 ms of the claim", failed!.Error, StringComparison.Ordinal);
            var claimed = Assert.Single(RecoveryKit.Lines(world.H, "Spawn request claimed", request.NewCoordinatorId));
            var failedLine = Assert.Single(RecoveryKit.Lines(world.H, "Spawn request failed", request.NewCoordinatorId));
            Assert.True(failedLine.Timestamp - claimed.Timestamp >= TimeSpan.FromMilliseconds(700), "not failed before the spawn timeout");
        }
        else
        {
            // A negative check: a claim 1.5 s old is not failed under a 60 s timeout; no event marks "not failed".
            await Task.Delay(1500);
            await manager.RunOnceAsync();
            Assert.Equal(SpawnStatus.Spawning, await world.StatusOfAsync(request.NewCoordinatorId));
            Assert.Empty(RecoveryKit.Lines(world.H, "Spawn request failed"));
        }
    }

    /// <summary>
    /// On a redis-server of its own, so no other test's spawn request (whose creation publishes on the manager channel,
    /// which is server-wide) can wake this manager: only its interval does.
    /// </summary>
    [Theory]
    [InlineData("300", true)]
    [InlineData("60000", false)]
    public async Task SwarmManagerIntervalMs_WithoutWakeUps_PassRunsEveryInterval(string intervalMs, bool claimedWithoutWake)
    {
        await using var redisServer = await PrivateRedisServer.StartAsync();
        await using var h = Harness.Create(server);
        // The interval is the manager's own clock: a fake one, moved to a millisecond short of the interval, then onto it.
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var redis = new RedisContext(await redisServer.ConnectAsync(), h.Options, time: time, loggerFactory: h.LoggerFactory, ownsMultiplexer: true);
        await using var host = new CoordinatorHost(redis, "host-interval", (_, _, _) => Task.FromResult<IAsyncDisposable>(new NeverHeartbeats()));
        await host.StartAsync();
        await using var manager = Manager(redis, Read(("SWARM_MANAGER_INTERVAL_MS", intervalMs)));
        manager.Start();
        // The first pass took its snapshot before it logs holding the lease: a request written after that is not in it. Its
        // sleep starts as the pass ends, on the fake clock.
        Assert.True(await EventuallyAsync(() => Task.FromResult(RecoveryKit.Lines(h, "Swarm manager reconciles swarm targets").Count == 1)));
        await EventuallyAsync(() => redis.Loops.Snapshot().Any(l => l.Loop == LoopNames.SwarmManager && l.Passes == 1), "the first pass never ended");

        // Written as SpawnRequests.CreateAsync writes it, but without its PUBLISH.
        var spawns = new SpawnRequests(redis.Database, TimeProvider.System, 3600);
        var now = await RedisTime.NowMsAsync(redis.Database);
        var id = SpawnRequests.NewCoordinatorId(now);
        var request = new SpawnRequest
        {
            NewCoordinatorId = id, SwarmId = "swarm-quiet", Timestamp = now, Status = SpawnStatus.Pending, Priority = "normal",
            Reason = "scale", RequestedBy = "test", UpdatedAt = now,
        };
        await redis.Database.StringSetAsync(Keys.Spawn(id), Json.Serialize(request), TimeSpan.FromHours(1));
        await redis.Database.SortedSetAddAsync(Keys.SpawnIndex, id, now);

        time.Advance(Read(("SWARM_MANAGER_INTERVAL_MS", intervalMs)).Interval - TimeSpan.FromMilliseconds(1));
        // A negative check: a pass a millisecond early would have claimed it within 200 ms; no event marks a pass that does not run.
        await Task.Delay(200);
        Assert.Equal(SpawnStatus.Pending, (await spawns.GetAsync(id))?.Status);
        if (claimedWithoutWake)
        {
            time.Advance(TimeSpan.FromMilliseconds(1));
            Assert.True(await EventuallyAsync(async () => (await spawns.GetAsync(id))?.Status == SpawnStatus.Spawning, TimeSpan.FromSeconds(10)));
        }
        else
        {
            // A wake-up makes the very same manager claim it at once.
            await redis.Database.PublishAsync(Keys.SwarmManagerChannel, id);
            Assert.True(await EventuallyAsync(async () => (await spawns.GetAsync(id))?.Status == SpawnStatus.Spawning, TimeSpan.FromSeconds(10)));
        }

        // The claim line is logged just after the status moves: wait for it rather than race it.
        Assert.True(await EventuallyAsync(() => Task.FromResult(RecoveryKit.Lines(h, "Spawn request claimed", id).Count > 0), TimeSpan.FromSeconds(10)));
        Assert.Single(RecoveryKit.Lines(h, "Spawn request claimed", id, "host=host-interval"));
    }

    /// <summary>A started "coordinator" that never heartbeats.</summary>
    private sealed class NeverHeartbeats : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
