using System.Collections.Concurrent;
using System.Text.Json;
using Cfn.Coordination.Acks;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Tests.Swarms;
using StackExchange.Redis;

namespace Cfn.Coordination.Tests.Acks;

/// <summary>
/// D18: a wait on a peer whose replacement never starts ends at once with <c>peer_dead</c>, told by the swarm manager's
/// <c>replacement_failed</c> notice. Runs on the swarm tests' database with a real swarm manager and a host that fails
/// every start.
/// </summary>
[Collection(SwarmsCollection.Name)]
public sealed class PeerDeathSpawnFailedTests(RedisServer server)
{
    [Fact]
    public async Task WaitForAcks_ReplacementFailsToStart_EndsAtOncePeerDead()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        var swarm = TestIds.New("swarm");
        var notices = new ConcurrentQueue<string>();
        var channel = Keys.SwarmDead(swarm);
        Action<RedisChannel, RedisValue> capture = (_, m) => notices.Enqueue((string)m!);
        await server.Multiplexer.GetSubscriber().SubscribeAsync(channel, capture);
        try
        {
            await world.HostAsync(factory: (_, _, _) => throw new InvalidOperationException("image pull failed"));
            var waiter = await Coordinator.StartAsync(world.Redis, world.H.Keys, TestIds.New("waiter"), swarm, world.H.Metrics, runHeartbeatLoop: false);
            await using var stopWaiter = waiter;
            var dead = await Coordinator.StartAsync(world.Redis, world.H.Keys, TestIds.New("dead"), swarm, world.H.Metrics, runHeartbeatLoop: false);
            var sent = await waiter.Signals.SendAsync(dead.Id, SignalTypes.Completion, 1);
            var wait = waiter.Waiter.WaitForAcksAsync([dead.Id], sent.MessageId, TimeSpan.FromSeconds(120));
            await PeerDeathWorld.WaitingAsync(waiter);

            // What the monitor does on a confirmed death, then the real escalation.
            var lastBeat = dead.Heartbeats.LastSentAt;
            await dead.AbandonAsync();
            var fence = await world.Database.StringIncrementAsync(Keys.Epoch(dead.Id));
            var options = new RecoveryOptions();
            var metrics = new RecoveryMetrics(Prometheus.Metrics.NewCustomRegistry());
            var service = new EscalationService(world.Redis, world.H.Keys, options, metrics, new CoordinatorCleanup(world.Redis, options, metrics));
            var escalated = await service.EscalateAsync(dead.Id, swarm, fence, lastBeat, "monitor-test");
            var newId = escalated.NewCoordinatorId!;
            Assert.True(await EventuallyAsync(
                () => Task.FromResult(RecoveryKit.Lines(world.H, "ACK wait follows hand-over", $"replacement={newId} ").Count == 1),
                TimeSpan.FromSeconds(10)));
            Assert.False(wait.IsCompleted);

            world.Manager().Start(); // the host fails the start; the manager settles K8 failed and says so
            var result = await wait.WaitAsync(TimeSpan.FromSeconds(20));

            Assert.Equal(AckWaitStatus.PeerDead, result.Status);
            Assert.Equal([dead.Id], result.DeadPeers);
            Assert.Equal([dead.Id], result.Missing);
            Assert.Empty(result.Acks);
            Assert.Equal(1, world.H.Metrics.BlockingDuration.WithLabels(swarm, waiter.Id, "peer_dead").Count);
            Assert.True(world.Redis.Wakeups.DeathNoticesConfirmed >= 2, $"{world.Redis.Wakeups.DeathNoticesConfirmed} notices confirmed");
            var line = Assert.Single(RecoveryKit.Lines(world.H, "ACK wait peer dead", $"deadPeers={dead.Id} "));
            Assert.Contains("image pull failed", line.Message, StringComparison.Ordinal);

            // The notices: spawn_replacement from the escalation, then replacement_failed naming the same replacement.
            Assert.True(await EventuallyAsync(() => Task.FromResult(notices.Count >= 2), TimeSpan.FromSeconds(5)));
            var actions = notices.Select(n => JsonDocument.Parse(n).RootElement.Clone()).ToList();
            Assert.Equal(["spawn_replacement", "replacement_failed"], actions.Select(a => a.GetProperty("action").GetString()));
            Assert.All(actions, a => Assert.Equal(dead.Id, a.GetProperty("deadCoordinatorId").GetString()));
            Assert.All(actions, a => Assert.Equal(newId, a.GetProperty("newCoordinatorId").GetString()));
            Assert.All(actions, a => Assert.Equal(swarm, a.GetProperty("swarmId").GetString()));
        }
        finally
        {
            await server.Multiplexer.GetSubscriber().UnsubscribeAsync(channel, capture);
        }
    }
}
