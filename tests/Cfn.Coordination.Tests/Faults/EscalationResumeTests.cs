using System.Text.Json;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Tests.Infrastructure;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace Cfn.Coordination.Tests.Faults;

/// <summary>
/// D17: an escalation finishes although it is interrupted in the middle. Redis is paused (<c>CLIENT PAUSE</c>) between
/// two steps of a running escalation, so the handler's next step fails; once Redis answers again the escalation is
/// resumed from its recorded step (by a monitor pass, after its lease) and finishes exactly once: one replacement, every
/// unfinished item handed to it, the dead coordinator's keys gone.
/// </summary>
[Collection(FaultsCollection.Name)]
public sealed class EscalationResumeTests(ITestOutputHelper output)
{
    [Fact]
    public async Task RedisPausedMidEscalation_EscalationResumedFromItsStep_OneReplacementWithAllTheWork()
    {
        await using var redis = await PrivateRedisServer.StartAsync();
        await using var world = await FaultWorld.ConnectAsync(redis.Endpoint, extra: ",asyncTimeout=400,syncTimeout=400,connectTimeout=1000");
        await using var inspect = await redis.ConnectAsync();
        var database = inspect.GetDatabase();
        var swarm = TestIds.New("swarm");
        var dead = await world.StartAsync(TestIds.New("dead"), swarm, heartbeatLoop: false);
        for (var i = 0; i < 3; i++)
        {
            Assert.True((await dead.Work.CreateAsync($"w{i}", JsonDocument.Parse("{\"input\":1}").RootElement)).Succeeded);
        }

        await dead.AbandonAsync();
        var options = new RecoveryOptions
        {
            HeartbeatStaleThreshold = TimeSpan.FromMilliseconds(600),
            MonitorInterval = TimeSpan.FromMilliseconds(150),
            MaxWarnings = 3,
            EscalationLease = TimeSpan.FromMilliseconds(1500),
            EscalationStepDelay = TimeSpan.FromMilliseconds(300),
        };
        var handler = world.NewHandler(options, "handler-pause");
        handler.Start();

        // The escalation is running: its work has moved. Redis stops answering right there, for longer than a command's timeout.
        await EventuallyAsync(() => world.Messages.Any(m => m.Contains($"Escalation step coordinator={dead.Id} step=work_transferred", StringComparison.Ordinal)),
            "the work_transferred step never came", TimeSpan.FromSeconds(20), pollMs: 25);
        await inspect.GetServer(inspect.GetEndPoints()[0]).ExecuteAsync("CLIENT", "PAUSE", "3000", "ALL");

        await EventuallyAsync(() => (string?)database.StringGet(Keys.Escalation(dead.Id)) is { } raw && raw.Contains("\"step\":\"cleaned\"", StringComparison.Ordinal),
            "the escalation's last step never came", TimeSpan.FromSeconds(30), pollMs: 25);
        foreach (var line in world.Messages.Where(m => m.Contains(dead.Id, StringComparison.Ordinal)))
        {
            output.WriteLine(line);
        }

        var record = JsonDocument.Parse((string)database.StringGet(Keys.Escalation(dead.Id))!).RootElement;
        var newId = record.GetProperty("newCoordinatorId").GetString()!;
        Assert.True(world.Recovery.Escalations.WithLabels("failed").Value >= 1, "the paused step did not fail: the fault missed the escalation");
        Assert.Contains(world.Messages, m => m.Contains($"Resuming escalation coordinator={dead.Id}", StringComparison.Ordinal));
        Assert.Equal(1, world.Recovery.Escalations.WithLabels("escalated").Value);
        Assert.Equal(3, record.GetProperty("workItemsTransferred").GetInt64());
        var spawns = (await database.SortedSetRangeByRankAsync(Keys.SpawnIndex)).Select(v => (string)v!).ToList();
        Assert.Equal([newId], spawns);
        for (var i = 0; i < 3; i++)
        {
            Assert.Contains("\"status\":\"transferred\"", (string?)await database.StringGetAsync(Keys.Work(swarm, newId, $"w{i}")), StringComparison.Ordinal);
        }

        Assert.Equal(3, await database.SetLengthAsync(Keys.Owned(swarm, newId)));
        Assert.Null(await database.SortedSetScoreAsync(Keys.Registry, dead.Id));
        Assert.False(await database.KeyExistsAsync(Keys.Owned(swarm, dead.Id)));
        Assert.Empty(await inspect.GetServer(inspect.GetEndPoints()[0]).KeysAsync(0, $"blocking:*{dead.Id}*").ToListAsync());
    }

    [Fact]
    public async Task HandlerGoneMidEscalation_DeadIdRestartedMeanwhile_ResumedEscalationGivesTheWorkBackAndLeavesTheNewInstanceAlone()
    {
        await using var redis = await PrivateRedisServer.StartAsync();
        await using var inspect = await redis.ConnectAsync();
        var database = inspect.GetDatabase();
        var swarm = TestIds.New("swarm");
        var options = new RecoveryOptions
        {
            HeartbeatStaleThreshold = TimeSpan.FromMilliseconds(600),
            MonitorInterval = TimeSpan.FromMilliseconds(150),
            MaxWarnings = 3,
            EscalationLease = TimeSpan.FromMilliseconds(1500),
            EscalationStepDelay = TimeSpan.FromMilliseconds(1000),
        };
        var deadId = TestIds.New("dead");
        await using var fleet = await FaultWorld.ConnectAsync(redis.Endpoint, o => o.HeartbeatInterval = TimeSpan.FromMilliseconds(100));
        var dead = await fleet.StartAsync(deadId, swarm, heartbeatLoop: false);
        for (var i = 0; i < 3; i++)
        {
            Assert.True((await dead.Work.CreateAsync($"w{i}", JsonDocument.Parse("{\"input\":1}").RootElement)).Succeeded);
        }

        await dead.AbandonAsync();

        // The first handler gets as far as moving the work, then disappears (its connection and its loops go).
        await using var first = await FaultWorld.ConnectAsync(redis.Endpoint);
        first.NewHandler(options, "handler-gone").Start();
        await EventuallyAsync(() => first.Messages.Any(m => m.Contains($"Escalation step coordinator={deadId} step=work_transferred", StringComparison.Ordinal)),
            "the work_transferred step never came", TimeSpan.FromSeconds(20), pollMs: 25);
        await first.Redis.Multiplexer.CloseAsync(allowCommandsToComplete: false); // its next step cannot reach Redis
        var newId = JsonDocument.Parse((string)database.StringGet(Keys.Escalation(deadId))!).RootElement.GetProperty("newCoordinatorId").GetString()!;
        Assert.Equal(3, await database.SetLengthAsync(Keys.Owned(swarm, newId)));

        // The dead ID runs again (a pod restarted under its name) before anybody resumes the escalation.
        var restarted = await fleet.StartAsync(deadId, swarm, heartbeatLoop: true);
        await using var second = await FaultWorld.ConnectAsync(redis.Endpoint);
        options.EscalationStepDelay = TimeSpan.Zero;
        second.NewHandler(options, "handler-next").Start();

        await EventuallyAsync(() => (string?)database.StringGet(Keys.Escalation(deadId)) is { } raw && raw.Contains("\"step\":\"cleaned\"", StringComparison.Ordinal),
            "the resumed escalation's end never came", TimeSpan.FromSeconds(30), pollMs: 25);
        foreach (var line in first.Messages.Select(m => "first: " + m).Concat(second.Messages.Select(m => "second: " + m)).Where(m => m.Contains(deadId, StringComparison.Ordinal)))
        {
            output.WriteLine(line);
        }

        var record = JsonDocument.Parse((string)database.StringGet(Keys.Escalation(deadId))!).RootElement;
        Assert.Equal("failed", record.GetProperty("status").GetString());
        Assert.Contains(second.Messages, m => m.Contains($"Escalation stopped: coordinator={deadId} was restarted", StringComparison.Ordinal));
        // What had moved to the replacement that will never be requested is back at the front of the queue, released.
        Assert.Equal(3, await database.ListLengthAsync(Keys.SwarmQueue(swarm)));
        for (var i = 0; i < 3; i++)
        {
            Assert.Contains("\"status\":\"released\"", (string?)await database.StringGetAsync(Keys.Work(swarm, newId, $"w{i}")), StringComparison.Ordinal);
        }

        Assert.Empty(await database.SortedSetRangeByRankAsync(Keys.SpawnIndex));
        Assert.Empty(await database.SortedSetRangeByRankAsync(Keys.Escalating));
        // The new instance is untouched: registered, heartbeating, not superseded.
        Assert.True(await database.KeyExistsAsync(Keys.Heartbeat(deadId)));
        Assert.False(restarted.IsSuperseded);
    }
}
