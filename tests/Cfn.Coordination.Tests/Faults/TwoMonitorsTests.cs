using System.Collections.Concurrent;
using System.Text.Json;
using Cfn.Coordination.Detection;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Work;
using Xunit.Abstractions;

namespace Cfn.Coordination.Tests.Faults;

/// <summary>
/// Two timeout handlers, each with its own connection, racing over the same 50 crashed coordinators (SPEC D6, §2.9,
/// §2.13, W29, W39, W40b, §7.14 item 8): one death, one escalation, one spawn request and one new owner per coordinator.
/// </summary>
[Collection(FaultsCollection.Name)]
public sealed class TwoMonitorsTests(ITestOutputHelper output)
{
    private const int Coordinators = 50;

    [Fact]
    public async Task TwoHandlers_50CoordinatorsCrash_EachDeclaredDeadEscalatedAndReplacedExactlyOnce()
    {
        await using var redis = await PrivateRedisServer.StartAsync();
        await using var inspect = await redis.ConnectAsync();
        var database = inspect.GetDatabase();
        await using var fleet = await FaultWorld.ConnectAsync(redis.Endpoint);
        await using var worldA = await FaultWorld.ConnectAsync(redis.Endpoint);
        await using var worldB = await FaultWorld.ConnectAsync(redis.Endpoint);
        var options = new RecoveryOptions
        {
            HeartbeatStaleThreshold = TimeSpan.FromSeconds(1),
            MonitorInterval = TimeSpan.FromMilliseconds(200),
            MaxWarnings = 3,
        };
        var swarm = TestIds.New("swarm");
        var crashed = new List<Coordinator>();
        for (var i = 0; i < Coordinators; i++)
        {
            var c = await fleet.StartAsync(TestIds.New("crash"), swarm, heartbeatLoop: false);
            for (var w = 0; w < 2; w++)
            {
                Assert.Equal(WorkWriteOutcome.Ok, (await c.Work.CreateAsync($"w{w}-{i}", JsonDocument.Parse("{\"n\":1}").RootElement)).Outcome);
            }

            crashed.Add(c);
        }

        await Task.WhenAll(crashed.Select(c => c.AbandonAsync()));
        var ids = crashed.Select(c => c.Id).ToHashSet();

        var handlerA = worldA.NewHandler(options, "handler-a");
        var handlerB = worldB.NewHandler(options, "handler-b");
        var deaths = new ConcurrentQueue<(string Handler, CoordinatorDeath Death)>();
        handlerA.Monitor.CoordinatorDied += d => deaths.Enqueue(("handler-a", d));
        handlerB.Monitor.CoordinatorDied += d => deaths.Enqueue(("handler-b", d));
        handlerA.Start();
        handlerB.Start();

        await EventuallyAsync(() => deaths.Count >= Coordinators, $"fewer than {Coordinators} deaths declared", options.DeathAfter + TimeSpan.FromSeconds(30), pollMs: 50);

        // Keep both racing ten monitor intervals longer: no late duplicate may appear. A negative check: no event marks a
        // duplicate that does not come.
        await Task.Delay(options.MonitorInterval * 10);
        var all = deaths.ToList();
        output.WriteLine($"deaths: {all.Count} ({all.Count(d => d.Handler == "handler-a")} by handler-a, {all.Count(d => d.Handler == "handler-b")} by handler-b)");

        Assert.Equal(Coordinators, all.Count);
        Assert.Equal(ids.Order(), all.Select(d => d.Death.CoordinatorId).Order());
        Assert.All(all, d => Assert.Equal(EscalationOutcome.Escalated, d.Death.Escalation!.Outcome));
        Assert.Equal(Coordinators, worldA.Recovery.Escalations.WithLabels("escalated").Value + worldB.Recovery.Escalations.WithLabels("escalated").Value);
        Assert.Equal(0, worldA.Recovery.Escalations.WithLabels("failed").Value + worldB.Recovery.Escalations.WithLabels("failed").Value);
        Assert.Equal(Coordinators, worldA.Recovery.DeadCoordinators.WithLabels(swarm).Value + worldB.Recovery.DeadCoordinators.WithLabels(swarm).Value);

        // One escalation record and one spawn request per dead coordinator, naming the same replacement.
        var escalations = await inspect.SnapshotAsync("coordinator:escalation:*");
        Assert.Equal(ids.Select(id => "coordinator:escalation:" + id).Order(), escalations.Keys.Order());
        var spawns = await inspect.SnapshotAsync("coordinator:spawn:*");
        var replacementOf = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var group in spawns.Select(kv => JsonDocument.Parse(kv.Value).RootElement).GroupBy(s => s.Str("replacesCoordinatorId")))
        {
            var spawn = Assert.Single(group);
            replacementOf[group.Key] = spawn.Str("newCoordinatorId");
        }

        Assert.Equal(ids.Order(), replacementOf.Keys.Order());
        foreach (var id in ids)
        {
            Assert.Equal(1, spawns.Values.Count(v => JsonDocument.Parse(v).RootElement.Str("replacesCoordinatorId") == id));
            var record = JsonDocument.Parse(escalations["coordinator:escalation:" + id]).RootElement;
            Assert.Equal(replacementOf[id], record.Str("newCoordinatorId"));
            Assert.Equal("replacement_requested", record.Str("status"));
        }

        // Each dead coordinator's two items went, whole, to its one replacement.
        var items = await inspect.SnapshotAsync($"coordinator:work:{swarm}:*");
        Assert.Equal(Coordinators * 2, items.Count);
        foreach (var (key, raw) in items)
        {
            var item = JsonDocument.Parse(raw).RootElement;
            var from = item.Str("transferredFrom");
            Assert.True(replacementOf.ContainsKey(from), $"{key} was not transferred: {raw}");
            Assert.Equal($"coordinator:work:{swarm}:{replacementOf[from]}:{item.Str("workId")}", key);
        }
    }
}
