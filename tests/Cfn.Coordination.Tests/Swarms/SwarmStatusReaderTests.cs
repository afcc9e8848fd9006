using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Swarms;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Swarms;

/// <summary><c>GET /api/swarms/status</c>'s numbers from the registry, the swarm hash, the waits and the spawn requests (SPEC §3.1 #1).</summary>
[Collection(SwarmsCollection.Name)]
public sealed class SwarmStatusReaderTests(RedisServer server)
{
    [Fact]
    public async Task ReadAsync_LiveOnlyPendingSpawnsBlockingTargetAndExpected()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        var a = new List<Coordinator>();
        for (var i = 0; i < 3; i++)
        {
            a.Add((Coordinator)await world.StartCoordinatorAsync($"coordinator-a{i}", "swarm-a"));
        }

        // A coordinator whose last heartbeat is older than the stale threshold is not live.
        var now = await RedisTime.NowMsAsync(world.Database);
        await world.Database.SortedSetAddAsync(Keys.Registry, "coordinator-stale", now - 200_000);
        await world.Database.HashSetAsync(Keys.Swarms, "coordinator-stale", "swarm-a");
        // One live coordinator blocks on an ACK that never comes.
        using var cts = new CancellationTokenSource();
        var wait = a[0].Waiter.WaitForAcksAsync(["coordinator-a1"], TestIds.New("sig"), TimeSpan.FromSeconds(30), cts.Token);
        Assert.True(await EventuallyAsync(async () => await world.Database.SortedSetScoreAsync(Keys.Deadlines, "coordinator-a0") is not null));
        var pending = await world.RequestAsync("swarm-b");
        var manager = world.Manager();
        Assert.Equal(ScaleOutcome.Scaled, (await manager.ScaleAsync("swarm-a", 5)).Outcome);

        var report = await new SwarmStatusReader(world.Database, new RecoveryOptions().HeartbeatStaleThreshold, expectedCoordinators: 12).ReadAsync();

        Assert.False(report.SpawningPaused);
        Assert.Null(report.PausedAt);
        Assert.Equal(12, report.ExpectedCoordinators);
        Assert.InRange(report.Timestamp, now, now + 60_000);
        Assert.Equal(["swarm-a", "swarm-b"], report.Swarms.Select(s => s.SwarmId));
        var swarmA = report.Swarms[0];
        Assert.Equal(3, swarmA.CoordinatorCount);
        Assert.Equal(["coordinator-a0", "coordinator-a1", "coordinator-a2"], swarmA.Coordinators);
        Assert.Equal(1, swarmA.ActiveBlockingCoordinators);
        Assert.Equal(0, swarmA.PendingSpawns);
        Assert.Equal(5, swarmA.TargetSize);
        Assert.Equal("scaling", swarmA.Status);
        var swarmB = report.Swarms[1];
        Assert.Equal(0, swarmB.CoordinatorCount);
        Assert.Equal(1, swarmB.PendingSpawns);
        Assert.Null(swarmB.TargetSize);
        Assert.Equal("scaling", swarmB.Status);

        await cts.CancelAsync();
        try
        {
            await wait;
        }
        catch (OperationCanceledException)
        {
            // the wait was cancelled on purpose
        }

        foreach (var coordinator in a)
        {
            await coordinator.DisposeAsync();
        }

        var after = await new SwarmStatusReader(world.Database, new RecoveryOptions().HeartbeatStaleThreshold).ReadAsync();
        Assert.Equal(0, after.Swarms.Single(s => s.SwarmId == "swarm-a").CoordinatorCount);
        Assert.Null(after.ExpectedCoordinators);
        Assert.Equal(pending.NewCoordinatorId, (await world.Spawns.GetAsync(pending.NewCoordinatorId))!.NewCoordinatorId);
    }

    [Fact]
    public async Task ReadAsync_Empty_NoSwarms()
    {
        await using var world = await SwarmWorld.CreateAsync(server);

        var report = await new SwarmStatusReader(world.Database, TimeSpan.FromMinutes(2)).ReadAsync();

        Assert.Empty(report.Swarms);
        Assert.False(report.SpawningPaused);
    }
}
