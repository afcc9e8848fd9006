using System.Text.Json;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Swarms;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Swarms;

/// <summary>The swarm manager with real coordinator hosts and real coordinators (SPEC §3.1 #1–#3, K9, D7).</summary>
[Collection(SwarmsCollection.Name)]
public sealed class SwarmManagerTests(RedisServer server)
{
    [Fact]
    public async Task PendingReplacement_HostStartsRealCoordinator_ReadyAndCountedOnceWithLabels()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        var host = await world.HostAsync();
        var manager = world.Manager();
        manager.Start();

        var request = await world.RequestAsync("swarm-a");

        Assert.True(await EventuallyAsync(async () => await world.StatusOfAsync(request.NewCoordinatorId) == SpawnStatus.Ready));
        var id = request.NewCoordinatorId;
        var ready = await world.Spawns.GetAsync(id);
        Assert.Equal(host.HostId, ready!.HostId);
        Assert.Equal("replacement", ready.Reason);
        Assert.Equal(request.ReplacesCoordinatorId, ready.ReplacesCoordinatorId);
        var heartbeat = await Probe.ReadJsonAsync(world.Database, Keys.Heartbeat(id)!);
        Assert.Equal("swarm-a", heartbeat.GetProperty("swarmId").GetString());
        var hosted = Assert.Single(host.Running);
        Assert.Equal(id, hosted.CoordinatorId);
        Assert.True(hosted.Spawned);
        var record = await Probe.ReadJsonAsync(world.Database, Keys.Host(host.HostId)!);
        Assert.Equal(8, record.GetProperty("capacity").GetInt32());
        Assert.Equal(id, record.GetProperty("running")[0].GetProperty("coordinatorId").GetString());

        // More passes never count it again.
        for (var i = 0; i < 3; i++)
        {
            await manager.RunOnceAsync();
        }

        Assert.Equal(1, world.FactoryCalls[id]);
        var text = await Probe.ExportAsync(world.Registry);
        Assert.Contains("coordinator_spawns_total{swarm_id=\"swarm-a\",reason=\"replacement\"} 1\n", text, StringComparison.Ordinal);
        // The swarm's other reasons exist at 0, so rate() will see their first spawn (runbook #8).
        Assert.Contains("coordinator_spawns_total{swarm_id=\"swarm-a\",reason=\"scale\"} 0\n", text, StringComparison.Ordinal);
        Assert.Single(RecoveryKit.Lines(world.H, "Coordinator spawned", id));
        Assert.Single(RecoveryKit.Lines(world.H, "Spawn request claimed", id));
    }

    [Fact]
    public async Task FactoryThrows_RequestFailedWithTheError_NothingCounted()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        var host = await world.HostAsync(factory: (_, _, _) => throw new InvalidOperationException("image pull failed"));
        var manager = world.Manager();
        manager.Start();

        var request = await world.RequestAsync("swarm-f");

        Assert.True(await EventuallyAsync(async () => await world.StatusOfAsync(request.NewCoordinatorId) == SpawnStatus.Failed));
        var failed = await world.Spawns.GetAsync(request.NewCoordinatorId);
        Assert.Contains("image pull failed", failed!.Error, StringComparison.Ordinal);
        Assert.Equal(host.HostId, failed.HostId);
        Assert.Empty(host.Running);
        await manager.RunOnceAsync();
        Assert.Equal(SpawnStatus.Failed, await world.StatusOfAsync(request.NewCoordinatorId));
        // Nothing counted: the swarm's series exist, all at 0.
        var text = await Probe.ExportAsync(world.Registry);
        Assert.Contains("coordinator_spawns_total{swarm_id=\"swarm-f\",reason=\"replacement\"} 0\n", text, StringComparison.Ordinal);
        Assert.DoesNotMatch("coordinator_spawns_total\\{swarm_id=\"swarm-f\",reason=\"[a-z]+\"\\} [1-9]", text);
        Assert.Single(RecoveryKit.Lines(world.H, "Coordinator start failed", request.NewCoordinatorId));
    }

    [Fact]
    public async Task Paused_RequestStaysPending_NewManagerStillPaused_ResumeSpawns()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        await world.HostAsync();
        var first = world.Manager();
        var pausedAt = await first.Spawning.PauseAsync();
        var request = await world.RequestAsync("swarm-p");

        var pass = await first.RunOnceAsync();
        Assert.True(pass.Paused);
        Assert.Equal(0, pass.Claimed);
        Assert.Equal(SpawnStatus.Pending, await world.StatusOfAsync(request.NewCoordinatorId));
        await first.DisposeAsync();

        // A restarted manager (runbook #13) is still paused, with the first pause time.
        var second = world.Manager();
        Assert.True(await second.Spawning.IsPausedAsync());
        Assert.Equal(pausedAt, await second.Spawning.GetPausedAtAsync());
        Assert.Equal(pausedAt, await second.Spawning.PauseAsync());
        Assert.True((await second.RunOnceAsync()).Paused);
        Assert.Equal(SpawnStatus.Pending, await world.StatusOfAsync(request.NewCoordinatorId));
        var status = await second.Status.ReadAsync();
        Assert.True(status.SpawningPaused);
        Assert.Equal(pausedAt, status.PausedAt);
        Assert.Single(RecoveryKit.Lines(world.H, "Spawning paused"));

        second.Start();
        Assert.True(await second.Spawning.ResumeAsync());
        Assert.True(await EventuallyAsync(async () => await world.StatusOfAsync(request.NewCoordinatorId) == SpawnStatus.Ready));
        Assert.False(await second.Spawning.IsPausedAsync());
        Assert.Null((await second.Status.ReadAsync()).PausedAt);
    }

    [Fact]
    public async Task TwoManagers_FiveRequests_EachStartedAndCountedOnce()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        await world.HostAsync();
        var metricsA = new SwarmMetrics(Prometheus.Metrics.NewCustomRegistry());
        var metricsB = new SwarmMetrics(Prometheus.Metrics.NewCustomRegistry());
        var a = world.Manager(metrics: metricsA);
        var b = world.Manager(metrics: metricsB);
        var requests = new List<SpawnRequest>();
        for (var i = 0; i < 5; i++)
        {
            requests.Add(await world.RequestAsync("swarm-two"));
        }

        // Both race on the same pending requests, by their loops and by direct passes.
        a.Start();
        b.Start();
        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(a.RunOnceAsync)).Concat(Enumerable.Range(0, 4).Select(_ => Task.Run(b.RunOnceAsync))));

        foreach (var request in requests)
        {
            Assert.True(await EventuallyAsync(async () => await world.StatusOfAsync(request.NewCoordinatorId) == SpawnStatus.Ready));
        }

        await Task.WhenAll(a.RunOnceAsync(), b.RunOnceAsync());
        Assert.All(requests, r => Assert.Equal(1, world.FactoryCalls[r.NewCoordinatorId]));
        Assert.Equal(5, world.FactoryCalls.Count);
        var counted = metricsA.Spawns.WithLabels("swarm-two", "replacement").Value + metricsB.Spawns.WithLabels("swarm-two", "replacement").Value;
        Assert.Equal(5, counted);
        Assert.Equal(5, RecoveryKit.Lines(world.H, "Spawn request claimed").Count);
    }

    [Fact]
    public async Task InitializeSwarm_InitialRequestsThenTarget_SecondCallAddsNothing()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        var manager = world.Manager();

        var created = await manager.InitializeSwarmAsync("swarm-init", 2);
        var again = await manager.InitializeSwarmAsync("swarm-init", 2);

        Assert.Equal(2, created.Count);
        Assert.Empty(again);
        foreach (var id in created)
        {
            var json = await Probe.ReadJsonAsync(world.Database, Keys.Spawn(id)!);
            Assert.Equal("initial", json.GetProperty("reason").GetString());
            Assert.Equal("normal", json.GetProperty("priority").GetString());
            Assert.Equal("swarm-init", json.GetProperty("swarmId").GetString());
            Assert.Equal(id, json.GetProperty("newCoordinatorId").GetString());
            Assert.Equal(SpawnStatus.Pending, json.GetProperty("status").GetString());
        }

        Assert.Equal(2, (int)await world.Database.HashGetAsync(Keys.SwarmTargets, "swarm-init"));

        await world.HostAsync();
        manager.Start();
        Assert.True(await EventuallyAsync(async () => (await SwarmWorld.LiveAsync(manager, "swarm-init")).Count == 2));
        Assert.True(await EventuallyAsync(async () => (await world.RequestsOfAsync("swarm-init")).All(r => r.Status == SpawnStatus.Ready)));
        // Counted just after the request is moved to ready in Redis: the count may trail what the test reads there.
        Assert.True(await EventuallyAsync(() => Task.FromResult(world.Metrics.Spawns.WithLabels("swarm-init", "initial").Value == 2)),
            $"coordinator_spawns_total{{reason=initial}} = {world.Metrics.Spawns.WithLabels("swarm-init", "initial").Value}");
        Assert.Equal(2, (await world.RequestsOfAsync("swarm-init")).Count);
    }

    [Fact]
    public async Task ScaleUp_ScaleRequestsStartCoordinators_CountedAsScale()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        await world.HostAsync();
        var manager = world.Manager();
        manager.Start();
        await manager.InitializeSwarmAsync("swarm-up", 1);
        Assert.True(await EventuallyAsync(async () => (await SwarmWorld.LiveAsync(manager, "swarm-up")).Count == 1));

        var result = await manager.ScaleAsync("swarm-up", 3);

        Assert.Equal(ScaleOutcome.Scaled, result.Outcome);
        Assert.Equal(3, result.NewSize);
        Assert.Equal(1, result.PreviousTarget);
        Assert.True(await EventuallyAsync(async () => (await SwarmWorld.LiveAsync(manager, "swarm-up")).Count == 3));
        Assert.True(await EventuallyAsync(async () => (await world.RequestsOfAsync("swarm-up")).All(r => r.Status == SpawnStatus.Ready)));
        var reasons = (await world.RequestsOfAsync("swarm-up")).Select(r => r.Reason).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(["initial", "scale", "scale"], reasons);
        Assert.Equal(2, world.Metrics.Spawns.WithLabels("swarm-up", "scale").Value);
        Assert.Equal(1, world.Metrics.Spawns.WithLabels("swarm-up", "initial").Value);
        var swarm = (await manager.Status.ReadAsync()).Swarms.Single(s => s.SwarmId == "swarm-up");
        Assert.Equal(3, swarm.TargetSize);
        Assert.Equal(0, swarm.PendingSpawns);
        Assert.Equal("running", swarm.Status);
        Assert.Single(RecoveryKit.Lines(world.H, "Swarm scaled", "swarm-up"));
    }

    [Fact]
    public async Task CoordinatorLeaves_NoSpawnWithinTheDeficitGrace_ThenReplacedAsScale_RaisedTargetServedAtOnce()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        var host = await world.HostAsync();
        var pods = new List<Coordinator>();
        foreach (var _ in Enumerable.Range(0, 2))
        {
            var id = TestIds.New("coordinator");
            var pod = (Coordinator)await world.StartCoordinatorAsync(id, "swarm-roll");
            pods.Add(pod);
            await host.RegisterRunningAsync(id, "swarm-roll", pod);
        }

        var options = SwarmManagerOptions.FromEnvironment(new System.Collections.Hashtable
        {
            ["SWARM_DEFICIT_GRACE_MS"] = "1500", ["SWARM_MANAGER_INTERVAL_MS"] = "200", ["SPAWN_TIMEOUT_MS"] = "20000",
        });
        Assert.Equal(TimeSpan.FromMilliseconds(1500), options.DeficitGrace);
        var manager = world.Manager(options: options);
        Assert.Equal(ScaleOutcome.Scaled, (await manager.ScaleAsync("swarm-roll", 2)).Outcome);
        await manager.RunOnceAsync();

        // A pod restarts in a rollout: its coordinator stops gracefully (it leaves the registry at once).
        await pods[0].StopAsync();
        var shortFrom = await RedisTime.NowMsAsync(world.Database); // the grace counts from this pass's snapshot, no earlier
        await manager.RunOnceAsync();
        await manager.RunOnceAsync();
        Assert.Empty(await world.RequestsOfAsync("swarm-roll"));
        Assert.Single(RecoveryKit.Lines(world.H, "Swarm below target", "swarm-roll"));

        // It did not come back within the grace: a scale request fills the gap, and not before the grace has passed on the
        // Redis clock (the manager's snapshots are timed by TIME, so the test passes until one creates it).
        await EventuallyAsync(async () =>
        {
            await manager.RunOnceAsync();
            return (await world.RequestsOfAsync("swarm-roll")).Count > 0;
        }, "no scale request after the deficit grace");
        var scale = Assert.Single(await world.RequestsOfAsync("swarm-roll"));
        Assert.Equal("scale", scale.Reason);
        Assert.True(scale.Timestamp - shortFrom >= 1500, $"requested {scale.Timestamp - shortFrom} ms into the 1500 ms grace");

        // A raised target is not damped.
        Assert.Equal(ScaleOutcome.Scaled, (await manager.ScaleAsync("swarm-roll", 4)).Outcome);
        await manager.RunOnceAsync();
        Assert.Equal(3, (await world.RequestsOfAsync("swarm-roll")).Count);
    }

    [Fact]
    public async Task ScaleDown_SpawnedSurplusStoppedGracefully_StaticCoordinatorKept()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        var host = await world.HostAsync();
        var staticId = TestIds.New("coordinator");
        await host.RegisterRunningAsync(staticId, "swarm-down", await world.StartCoordinatorAsync(staticId, "swarm-down"));
        var manager = world.Manager();
        manager.Start();

        Assert.Equal(ScaleOutcome.Scaled, (await manager.ScaleAsync("swarm-down", 3)).Outcome);
        Assert.True(await EventuallyAsync(async () => (await SwarmWorld.LiveAsync(manager, "swarm-down")).Count == 3));
        var spawned = (await SwarmWorld.LiveAsync(manager, "swarm-down")).Where(id => id != staticId).ToList();
        Assert.Equal(2, spawned.Count);

        var result = await manager.ScaleAsync("swarm-down", 1);

        Assert.Equal(ScaleOutcome.Scaled, result.Outcome);
        Assert.True(await EventuallyAsync(async () => (await SwarmWorld.LiveAsync(manager, "swarm-down")).Count == 1));
        await manager.RunOnceAsync();
        Assert.Equal([staticId], await SwarmWorld.LiveAsync(manager, "swarm-down"));
        foreach (var id in spawned)
        {
            Assert.False(await world.Database.KeyExistsAsync(Keys.Heartbeat(id)), $"{id}'s heartbeat is gone (graceful stop)");
            Assert.False(await world.Database.KeyExistsAsync(Keys.Activity(id)));
            Assert.Null(await world.Database.SortedSetScoreAsync(Keys.Registry, id));
            Assert.Single(RecoveryKit.Lines(world.H, "Stopping surplus coordinator", id));
            Assert.Single(RecoveryKit.Lines(world.H, "Coordinator stopped gracefully on host", id));
        }

        Assert.True(await world.Database.KeyExistsAsync(Keys.Heartbeat(staticId)));
        Assert.Equal([staticId], host.Running.Select(c => c.CoordinatorId));
        Assert.True(await EventuallyAsync(async () => await world.Database.SortedSetLengthAsync(Keys.CoordinatorStops) == 0));
        // Settled: further passes stop nothing more.
        Assert.Equal(0, (await manager.RunOnceAsync()).StopsRequested);
    }

    [Fact]
    public async Task TwoManagers_ScaleUp_OnlyTheLeaseHolderCreatesRequests()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        var a = world.Manager();
        var b = world.Manager();
        var live = TestIds.New("coordinator");
        await using var coordinator = await world.StartCoordinatorAsync(live, "swarm-lease");
        Assert.Equal(ScaleOutcome.Scaled, (await a.ScaleAsync("swarm-lease", 4)).Outcome);

        var passes = await Task.WhenAll(Enumerable.Range(0, 3).SelectMany(_ => new[] { Task.Run(a.RunOnceAsync), Task.Run(b.RunOnceAsync) }));

        Assert.Equal(3, passes.Sum(p => p.Created));
        var creator = Assert.Single(passes, p => p.Created > 0);
        Assert.True(creator.HeldLease);
        Assert.Equal(3, passes.Count(p => p.HeldLease)); // the same manager holds it on every one of its passes
        Assert.Equal(3, (await world.RequestsOfAsync("swarm-lease")).Count(r => r.Reason == "scale"));
        // The holder gives the lease back when it stops; the other then takes it.
        await a.DisposeAsync();
        await b.DisposeAsync();
        var c = world.Manager();
        Assert.True((await c.RunOnceAsync()).HeldLease);
    }

    [Fact]
    public async Task ScaleDown_PendingScaleRequestsCancelled_ReplacementKept()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        var manager = world.Manager();
        var replacement = await world.RequestAsync("swarm-cancel");
        var created = await manager.InitializeSwarmAsync("swarm-cancel", 3); // no host: all stay pending

        Assert.Equal(2, created.Count);
        Assert.Equal(ScaleOutcome.Scaled, (await manager.ScaleAsync("swarm-cancel", 1)).Outcome);
        var pass = await manager.RunOnceAsync();

        Assert.Equal(2, pass.Cancelled);
        foreach (var id in created)
        {
            Assert.Equal(SpawnStatus.Cancelled, await world.StatusOfAsync(id));
        }

        Assert.Equal(SpawnStatus.Pending, await world.StatusOfAsync(replacement.NewCoordinatorId));
    }

    [Fact]
    public async Task Reconcile_PendingReplacementCountsTowardTarget_NoDoubleSpawn()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        var manager = world.Manager();
        var live = TestIds.New("coordinator");
        await using var coordinator = await world.StartCoordinatorAsync(live, "swarm-repl");
        var replacement = await world.RequestAsync("swarm-repl");
        Assert.Equal(ScaleOutcome.Scaled, (await manager.ScaleAsync("swarm-repl", 2)).Outcome);

        var pass = await manager.RunOnceAsync();

        Assert.True(pass.HeldLease);
        Assert.Equal(0, pass.Created);
        Assert.Equal([replacement.NewCoordinatorId], (await world.RequestsOfAsync("swarm-repl")).Select(r => r.NewCoordinatorId));
    }

    [Fact]
    public async Task NoHostRoom_RequestStaysPendingLoggedOnce_ThenNewHostTakesIt()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        var full = await world.HostAsync(capacity: 1);
        var staticId = TestIds.New("coordinator");
        await full.RegisterRunningAsync(staticId, "swarm-room", await world.StartCoordinatorAsync(staticId, "swarm-room"));
        var manager = world.Manager();
        var request = await world.RequestAsync("swarm-room");

        for (var i = 0; i < 3; i++)
        {
            Assert.Equal(0, (await manager.RunOnceAsync()).Claimed);
        }

        Assert.Equal(SpawnStatus.Pending, await world.StatusOfAsync(request.NewCoordinatorId));
        Assert.Single(RecoveryKit.Lines(world.H, "No coordinator host has room", request.NewCoordinatorId));

        var roomy = await world.HostAsync(capacity: 2);
        manager.Start();
        Assert.True(await EventuallyAsync(async () => await world.StatusOfAsync(request.NewCoordinatorId) == SpawnStatus.Ready));
        Assert.Equal(roomy.HostId, (await world.Spawns.GetAsync(request.NewCoordinatorId))!.HostId);
    }

    [Fact]
    public async Task ScaleAsync_BadInput_RefusedAndNothingWritten()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        var manager = world.Manager();
        await world.RequestAsync("swarm-known");

        Assert.Equal(ScaleOutcome.SwarmNotFound, (await manager.ScaleAsync("swarm-unknown", 3)).Outcome);
        Assert.Equal(ScaleOutcome.InvalidTargetSize, (await manager.ScaleAsync("swarm-known", 0)).Outcome);
        Assert.Equal(ScaleOutcome.InvalidTargetSize, (await manager.ScaleAsync("swarm-known", null)).Outcome);
        await Assert.ThrowsAsync<Cfn.Coordination.Identity.InvalidIdException>(() => manager.ScaleAsync("bad swarm", 3));
        Assert.Equal(0, await world.Database.HashLengthAsync(Keys.SwarmTargets));

        Assert.Equal(ScaleOutcome.Scaled, (await manager.ScaleAsync("swarm-known", 3)).Outcome);
        await manager.Spawning.PauseAsync();
        var refused = await manager.ScaleAsync("swarm-known", 4);
        Assert.Equal(ScaleOutcome.SpawningPaused, refused.Outcome);
        Assert.Equal(3, refused.PreviousTarget);
        Assert.Equal(3, (int)await world.Database.HashGetAsync(Keys.SwarmTargets, "swarm-known"));
        // Scaling down stays allowed while paused.
        Assert.Equal(ScaleOutcome.Scaled, (await manager.ScaleAsync("swarm-known", 2)).Outcome);
        Assert.Equal(2, (int)await world.Database.HashGetAsync(Keys.SwarmTargets, "swarm-known"));
    }

    [Fact]
    public async Task HostCommands_MalformedOrUnknown_IgnoredAndLogged()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        var host = await world.HostAsync();
        await world.Database.ListRightPushAsync(Keys.HostCommands(host.HostId), "{oops");
        await world.Database.ListRightPushAsync(Keys.HostCommands(host.HostId),
            JsonSerializer.Serialize(new { type = "explode", coordinatorId = "coordinator-x" }));
        await world.Database.ListRightPushAsync(Keys.HostCommands(host.HostId),
            JsonSerializer.Serialize(new { type = "start", coordinatorId = "coordinator-y", swarmId = "bad swarm" }));

        await host.DrainCommandsAsync();

        Assert.Equal(0, await world.Database.ListLengthAsync(Keys.HostCommands(host.HostId)));
        Assert.Empty(host.Running);
        Assert.Empty(world.FactoryCalls);
        Assert.Equal(3, RecoveryKit.Lines(world.H, "Host command ignored").Count);
    }
}
