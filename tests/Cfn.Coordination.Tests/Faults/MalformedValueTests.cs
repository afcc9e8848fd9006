using System.Text.Json;
using Cfn.Coordination.Detection;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Work;

namespace Cfn.Coordination.Tests.Faults;

/// <summary>
/// Malformed JSON planted where the timeout handler reads (SPEC §2.9 "raise events instead of throwing", W24, §2.13):
/// each is logged, counted in <c>monitor_malformed_values_total{key_type}</c> and skipped, and the same passes still
/// find, declare dead and escalate a genuinely dead coordinator, transferring its good items.
/// </summary>
[Collection(FaultsCollection.Name)]
public sealed class MalformedValueTests
{
    [Fact]
    public async Task MonitorPasses_MalformedHeartbeatActivityAndWork_CountedSkippedAndOtherDeathStillEscalated()
    {
        await using var redis = await PrivateRedisServer.StartAsync();
        await using var inspect = await redis.ConnectAsync();
        var database = inspect.GetDatabase();
        await using var world = await FaultWorld.ConnectAsync(redis.Endpoint, o => o.HeartbeatInterval = TimeSpan.FromMilliseconds(100));
        var options = new RecoveryOptions
        {
            HeartbeatStaleThreshold = TimeSpan.FromSeconds(1),
            MonitorInterval = TimeSpan.FromMilliseconds(200),
            MaxWarnings = 3,
        };
        var swarm = TestIds.New("swarm");
        var now = await database.NowMsAsync();

        // A coordinator in the registry with a stale score and a malformed heartbeat (and no swarm on record, so the
        // monitor must read the heartbeat to find it).
        var badHeartbeat = TestIds.New("badhb");
        await database.SortedSetAddAsync("blocking:coordinators", badHeartbeat, now - 60_000);
        await database.StringSetAsync("blocking:heartbeat:" + badHeartbeat, "{\"coordinatorId\":\"" + badHeartbeat + "\",\"swarmId\":");

        // A live coordinator whose activity record is malformed, with a wait deadline long past.
        var badActivity = await world.StartAsync(TestIds.New("badact"), swarm, heartbeatLoop: true);
        await database.StringSetAsync("coordinator:activity:" + badActivity.Id, "{\"coordinatorId\":\"" + badActivity.Id + "\",\"status\":\"bloc");
        await database.SortedSetAddAsync("coordinator:deadlines", badActivity.Id, now - 120_000);

        // A crashed coordinator with two good items, a completed one and a malformed one.
        var badWork = await world.StartAsync(TestIds.New("badwork"), swarm, heartbeatLoop: false);
        var z0 = (await badWork.Work.CreateAsync("z0", JsonDocument.Parse("{\"n\":0}").RootElement)).Item!;
        await badWork.Work.CreateAsync("z1", JsonDocument.Parse("{\"n\":1}").RootElement);
        var z2 = (await badWork.Work.CreateAsync("z2", JsonDocument.Parse("{\"n\":2}").RootElement)).Item!;
        Assert.True((await badWork.Work.CompleteAsync(z2)).Succeeded);
        const string Garbage = "{\"workId\":\"zbad\",\"status\":\"in-progr";
        var garbageKey = $"coordinator:work:{swarm}:{badWork.Id}:zbad";
        await database.StringSetAsync(garbageKey, Garbage);
        await database.SetAddAsync($"coordinator:owned:{swarm}:{badWork.Id}", "zbad"); // listed in its owner's index, as a real item would be

        // Another crashed coordinator with nothing malformed, last in the pass (the newest heartbeat: started once the Redis
        // clock has passed the other's last beat).
        var badBeat = (await database.SortedSetScoreAsync("blocking:coordinators", badWork.Id))!.Value;
        await EventuallyAsync(async () => await database.NowMsAsync() > badBeat, "the Redis clock never moved past the last heartbeat");
        var healthyDead = await world.StartAsync(TestIds.New("dead"), swarm, heartbeatLoop: false);
        await healthyDead.Work.CreateAsync("d0", JsonDocument.Parse("{\"n\":0}").RootElement);
        await healthyDead.Work.CreateAsync("d1", JsonDocument.Parse("{\"n\":1}").RootElement);
        await badWork.AbandonAsync();
        await healthyDead.AbandonAsync();

        // Wait until all three are stale, so that they are judged in the same passes.
        await EventuallyAsync(async () => (await database.SortedSetScoreAsync("blocking:coordinators", healthyDead.Id))!.Value <= await database.NowMsAsync() - 1100,
            "the crashed coordinators never went stale", TimeSpan.FromSeconds(20), pollMs: 50);

        var handler = world.NewHandler(options, "handler-malformed");
        var passes = new List<MonitorPass>();
        // Passes more than the warning spacing apart: a pass whose scripts run a millisecond short of it for one
        // coordinator (timer and Redis-ms rounding) would leave that one 'pending' and split the deaths over two passes.
        await EventuallyAsync(async () =>
        {
            passes.Add(await handler.Monitor.RunOnceAsync());
            await handler.CheckWaitsAsync();
            return passes.SelectMany(p => p.Deaths).Any(d => d.CoordinatorId == healthyDead.Id);
        }, TimeSpan.FromSeconds(20), pollMs: (int)(options.MonitorInterval + TimeSpan.FromMilliseconds(50)).TotalMilliseconds);

        var deaths = passes.SelectMany(p => p.Deaths).ToList();
        var deathPass = Assert.Single(passes, p => p.Deaths.Any(d => d.CoordinatorId == healthyDead.Id));
        Assert.Equal([badHeartbeat, badWork.Id, healthyDead.Id], deathPass.Deaths.Select(d => d.CoordinatorId));
        Assert.Equal(3, deaths.Count);
        Assert.All(passes, p => Assert.True(p.RedisAvailable));
        Assert.False(badActivity.IsSuperseded);

        // Each malformed value: logged and counted, by key type.
        Assert.Equal(1, world.Recovery.MalformedValues.WithLabels("heartbeat").Value);
        Assert.Equal(1, world.Recovery.MalformedValues.WithLabels("work").Value);
        Assert.True(world.Recovery.MalformedValues.WithLabels("activity").Value >= 1, "the malformed activity record was not counted");
        Assert.Contains(world.Messages, m => m.Contains("malformed", StringComparison.OrdinalIgnoreCase) && m.Contains(badHeartbeat, StringComparison.Ordinal));
        Assert.Contains(world.Messages, m => m.Contains("Malformed work item", StringComparison.Ordinal) && m.Contains(garbageKey, StringComparison.Ordinal));
        Assert.Contains(world.Messages, m => m.Contains("Malformed activity", StringComparison.Ordinal) && m.Contains(badActivity.Id, StringComparison.Ordinal));

        // The coordinator with the malformed heartbeat is still escalated (its swarm unknown).
        var first = deaths.Single(d => d.CoordinatorId == badHeartbeat);
        Assert.Equal(EscalationOutcome.Escalated, first.Escalation!.Outcome);
        Assert.Equal("unknown", first.SwarmId);

        // Good items move; the completed one stays; the malformed one is left as it was.
        var zombie = deaths.Single(d => d.CoordinatorId == badWork.Id).Escalation!;
        Assert.Equal(EscalationOutcome.Escalated, zombie.Outcome);
        Assert.Equal((2, 0, 1), (zombie.Work!.Transferred, zombie.Work.SkippedCompleted, zombie.Work.Failed)); // z2 completed: out of the owner index
        Assert.Equal(Garbage, (string?)await database.StringGetAsync(garbageKey));
        Assert.True(await database.KeyExistsAsync($"coordinator:work:{swarm}:{badWork.Id}:z2"));
        foreach (var workId in new[] { "z0", "z1" })
        {
            var moved = await database.ReadJsonAsync($"coordinator:work:{swarm}:{zombie.NewCoordinatorId}:{workId}");
            Assert.Equal(badWork.Id, moved.Str("transferredFrom"));
        }

        Assert.Equal(WorkWriteOutcome.Fenced, (await badWork.Work.ProgressAsync(z0, null)).Outcome);

        // And the coordinator with nothing malformed, judged after all of them in the same pass.
        var last = deaths.Single(d => d.CoordinatorId == healthyDead.Id).Escalation!;
        Assert.Equal(EscalationOutcome.Escalated, last.Outcome);
        Assert.Equal(2, last.Work!.Transferred);
        foreach (var workId in new[] { "d0", "d1" })
        {
            var moved = await database.ReadJsonAsync($"coordinator:work:{swarm}:{last.NewCoordinatorId}:{workId}");
            Assert.Equal(healthyDead.Id, moved.Str("transferredFrom"));
            Assert.Equal("transferred", moved.Str("status"));
        }

        var spawns = await inspect.SnapshotAsync("coordinator:spawn:*");
        Assert.Equal(3, spawns.Count);
    }
}
