using System.Text.Json;
using Cfn.Coordination.Detection;
using Cfn.Coordination.Recovery;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;

using Cfn.Coordination.Tests.Infrastructure;
using Cfn.Coordination.Work;

namespace Cfn.Coordination.Tests.Recovery;

/// <summary>
/// A coordinator declared dead that comes back (SPEC D6, §2.13, W40(a), W41, §7.14 item 9): everything it writes is
/// refused by the fence, it learns that it was superseded exactly once, and it stops receiving.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class ZombieTests(RedisServer server)
{
    private sealed record Scene(Coordinator Zombie, Coordinator Peer, WorkItem Item, CoordinatorDeath Death, string Swarm);

    /// <summary>A coordinator with a work item goes silent, is declared dead by the monitor and escalated; it still runs.</summary>
    private static async Task<Scene> DeclareDeadAsync(Harness h)
    {
        var swarm = TestIds.New("swarm");
        var zombie = await h.StartAsync(swarmId: swarm);
        var peer = await h.StartAsync(swarmId: swarm);
        var item = (await zombie.Work.CreateAsync("w0", JsonDocument.Parse("{\"step\":1}").RootElement)).Item!;
        await zombie.AbandonAsync(); // a long GC pause or a partition: no heartbeats, but the process lives on
        await using var handler = new TimeoutHandler(h.Redis, h.Keys, RecoveryKit.FastOptions(), h.Metrics, new RecoveryMetrics(h.Registry),
            TestIds.New("handler"));
        var (death, _) = await RecoveryKit.RunUntilDeadAsync(h, handler.Monitor, zombie.Id, TimeSpan.FromSeconds(10));
        Assert.NotNull(death);
        Assert.Equal(EscalationOutcome.Escalated, death.Escalation?.Outcome);
        return new Scene(zombie, peer, item, death, swarm);
    }

    [Fact]
    public async Task Zombie_AfterDeclaredDead_EveryWriteRefusedAndSupersededLoggedOnce()
    {
        await using var h = Harness.Create(server);
        var scene = await DeclareDeadAsync(h);
        var zombie = scene.Zombie;
        var newId = scene.Death.Escalation!.NewCoordinatorId!;
        var transferredKey = Keys.Work(scene.Swarm, newId, "w0");
        var transferredBefore = (string?)await h.Database.StringGetAsync(transferredKey);
        Assert.NotNull(transferredBefore);

        // Its work write on the transferred item.
        var write = await zombie.Work.ProgressAsync(scene.Item, JsonDocument.Parse("{\"step\":2}").RootElement);
        Assert.NotEqual(WorkWriteOutcome.Ok, write.Outcome);
        Assert.Contains(write.Outcome, new[] { WorkWriteOutcome.Fenced, WorkWriteOutcome.NotFound });
        Assert.False(await h.Database.KeyExistsAsync(Keys.Work(scene.Swarm, zombie.Id, "w0")), "the zombie re-created its old item");
        Assert.Equal(transferredBefore, (string?)await h.Database.StringGetAsync(transferredKey));
        var complete = await zombie.Work.CompleteAsync(scene.Item);
        Assert.NotEqual(WorkWriteOutcome.Ok, complete.Outcome);

        // Its next heartbeat.
        Assert.False(await zombie.Heartbeats.BeatAsync());
        Assert.True(zombie.IsSuperseded);
        Assert.True(zombie.SupersededToken.IsCancellationRequested);
        Assert.False(await h.Database.KeyExistsAsync(Keys.Heartbeat(zombie.Id)), "the zombie's heartbeat landed");
        Assert.Null(await h.Database.SortedSetScoreAsync(Keys.Registry, zombie.Id));

        // Its sends.
        var inboxBefore = await h.Database.StreamLengthAsync(Keys.Inbox(scene.Peer.Id));
        var viewBefore = (string?)await h.Database.StringGetAsync(Keys.Signal(scene.Peer.Id));
        await Assert.ThrowsAsync<CoordinatorSupersededException>(() => zombie.Signals.SendAsync(scene.Peer.Id, SignalTypes.Completion, 7));
        Assert.Equal(inboxBefore, await h.Database.StreamLengthAsync(Keys.Inbox(scene.Peer.Id)));
        Assert.Equal(viewBefore, (string?)await h.Database.StringGetAsync(Keys.Signal(scene.Peer.Id)));

        // Its ACKs.
        var signal = SignalSignatures.Sign(h.Keys, new Signal
        {
            Timestamp = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
            SenderId = scene.Peer.Id,
            ReceiverId = zombie.Id,
            Iteration = 1,
            Type = SignalTypes.Completion,
            MessageId = $"{scene.Peer.Id}:{zombie.Id}:completion:1:42",
        });
        var error = await Assert.ThrowsAsync<CoordinatorSupersededException>(() => zombie.Acks.AcknowledgeAsync(signal));
        Assert.Equal(zombie.Id, error.CoordinatorId);
        Assert.False(await h.Database.KeyExistsAsync(Keys.Ack(zombie.Id, signal.MessageId)), "the zombie's ACK landed");

        // Its activity.
        await Assert.ThrowsAsync<CoordinatorSupersededException>(() => zombie.Activity.RecordAsync());
        Assert.False(await h.Database.KeyExistsAsync(Keys.Activity(zombie.Id)));

        // Its inbox enumeration ends at once.
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var received = 0;
        await foreach (var _ in zombie.Inbox.ReadAllAsync(cts.Token))
        {
            received++;
        }

        Assert.False(cts.IsCancellationRequested, "the enumeration only ended at the caller's timeout");
        Assert.Equal(0, received);

        var superseded = RecoveryKit.Lines(h, "Coordinator superseded", zombie.Id);
        Assert.Single(superseded);
        Assert.True(h.Metrics.WorkWritesRefused.WithLabels(zombie.Id, "fenced").Value
                    + h.Metrics.WorkWritesRefused.WithLabels(zombie.Id, "not_found").Value >= 1);
    }

    [Fact]
    public async Task Zombie_HeartbeatFirst_ReturnsFalseSupersededOnceThenSendsRefused()
    {
        await using var h = Harness.Create(server);
        var scene = await DeclareDeadAsync(h);
        var zombie = scene.Zombie;

        Assert.False(await zombie.Heartbeats.BeatAsync());
        Assert.True(zombie.IsSuperseded);
        Assert.False(await zombie.Heartbeats.BeatAsync());
        await Assert.ThrowsAsync<CoordinatorSupersededException>(() => zombie.Signals.SendAsync(scene.Peer.Id, SignalTypes.Completion, 1));
        var write = await zombie.Work.ProgressAsync(scene.Item, null);

        Assert.Contains(write.Outcome, new[] { WorkWriteOutcome.Fenced, WorkWriteOutcome.NotFound });
        Assert.Single(RecoveryKit.Lines(h, "Coordinator superseded", zombie.Id));
        Assert.False(await h.Database.KeyExistsAsync(Keys.Heartbeat(zombie.Id)));
    }

    [Fact]
    public async Task Zombie_InboxEnumerationRunningWhenItLearns_EnumerationEnds()
    {
        await using var h = Harness.Create(server);
        var scene = await DeclareDeadAsync(h);
        var zombie = scene.Zombie;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var reading = Task.Run(async () =>
        {
            var count = 0;
            await foreach (var _ in zombie.Inbox.ReadAllAsync(cts.Token))
            {
                count++;
            }

            return count;
        });
        // A negative check: nothing marks "the enumeration has not ended", so it is given 300 ms in which it must not.
        await Task.Delay(300);
        Assert.False(reading.IsCompleted, "the enumeration ended before the zombie knew it was superseded");

        Assert.False(await zombie.Heartbeats.BeatAsync());

        var received = await reading.WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(0, received);
        Assert.False(cts.IsCancellationRequested);
    }
}
