using System.Text.Json;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Work;

namespace Cfn.Coordination.Tests.Recovery;

[Collection(RedisCollection.Name)]
public sealed class EscalationSmokeTests(RedisServer server)
{
    [Fact]
    public async Task DeadCoordinator_DetectedAndEscalated_WorkAndSignalsHandedToReplacement()
    {
        await using var h = Harness.Create(server);
        var options = new RecoveryOptions
        {
            HeartbeatStaleThreshold = TimeSpan.FromMilliseconds(500),
            MonitorInterval = TimeSpan.FromMilliseconds(100),
            MaxWarnings = 3,
        };
        var swarm = TestIds.New("swarm");
        var dead = await h.StartAsync(swarmId: swarm);
        var peer = await h.StartAsync(swarmId: swarm);
        var items = new List<WorkItem>();
        for (var i = 0; i < 3; i++)
        {
            items.Add((await dead.Work.CreateAsync($"w{i}", JsonDocument.Parse($"{{\"n\":{i}}}").RootElement)).Item!);
        }

        await dead.Work.CompleteAsync(items[2]);
        var pending = await peer.Signals.SendAsync(dead.Id, SignalTypes.Completion, 1);
        await dead.AbandonAsync();

        await using var handler = new TimeoutHandler(h.Redis, h.Keys, options, h.Metrics, new RecoveryMetrics(h.Registry), "handler-1");
        Cfn.Coordination.Detection.CoordinatorDeath? death = null;
        await EventuallyAsync(async () => (death = (await handler.Monitor.RunOnceAsync()).Deaths.FirstOrDefault(d => d.CoordinatorId == dead.Id)) is not null,
            $"{dead.Id} was never declared dead", TimeSpan.FromSeconds(10), pollMs: 50);

        Assert.NotNull(death);
        var escalation = death.Escalation!;
        Assert.Equal(EscalationOutcome.Escalated, escalation.Outcome);
        Assert.Equal(2, escalation.Work!.Transferred);
        Assert.Equal(0, escalation.Work.SkippedCompleted); // the completed item left its owner's index: nothing to skip
        Assert.Equal(1, escalation.SignalsHandedOver);
        var newId = escalation.NewCoordinatorId!;
        var spawn = await handler.Escalation.Spawns.GetAsync(newId);
        Assert.Equal(SpawnStatus.Pending, spawn!.Status);
        Assert.Equal(dead.Id, spawn.ReplacesCoordinatorId);

        var replacement = await h.StartAsync(newId, swarm);
        var adopted = await replacement.Work.AdoptAsync("w0");
        Assert.Equal(WorkWriteOutcome.Ok, adopted.Outcome);
        Assert.Equal(dead.Id, adopted.Item!.TransferredFrom);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        await foreach (var received in replacement.Inbox.ReadAllAsync(cts.Token))
        {
            Assert.Equal(pending.MessageId, received.Signal.HandedOverFrom);
            Assert.Contains($":{replacement.Id}:", received.Signal.MessageId, StringComparison.Ordinal);
            await replacement.Inbox.CompleteAsync(received);
            break;
        }

        var leftovers = new List<string>();
        await foreach (var key in h.Server.Server.KeysAsync(pattern: $"blocking:*{dead.Id}*"))
        {
            leftovers.Add(key!);
        }

        Assert.Empty(leftovers);
        Assert.Equal(1, h.Metrics.TimeoutEvents.WithLabels(dead.Id, "heartbeat", "heartbeat").Value);
        Assert.Equal(1, h.Metrics.HeartbeatFailures.WithLabels(dead.Id, "stale", "stale").Value);
        Assert.Contains(h.Messages, m => m.Contains("Dead coordinator escalation complete", StringComparison.Ordinal));
        Assert.Equal(WorkWriteOutcome.Fenced, (await dead.Work.ProgressAsync(items[0], null)).Outcome);
    }
}
