using Cfn.Coordination.Acks;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests;

/// <summary>
/// <see cref="Coordinator.AttachAsync"/>, what a <c>cfn agent</c> verb does inside <c>cfn agent run</c>: it acts as the
/// running instance (its epoch fences its writes) without taking a new epoch or touching the instance's keys.
/// </summary>
[Collection(RedisCollection.Name)]
public sealed class CoordinatorAttachTests(RedisServer server)
{
    [Fact]
    public async Task Attached_SendsAndWaitsAsTheRunningInstance_WhichStaysCurrentAndAlive()
    {
        await using var h = Harness.Create(server);
        var id = TestIds.New("agent");
        await using var owner = await h.StartAsync(id, "swarm-attach");
        await using var peer = await h.StartAsync(TestIds.New("peer"), "swarm-attach");
        var reading = Task.Run(async () =>
        {
            await foreach (var _ in peer.Inbox.ReadAllAsync(new CancellationTokenSource(TimeSpan.FromSeconds(20)).Token))
            {
                return;
            }
        });

        await using (var attached = await Coordinator.AttachAsync(h.Redis, h.Keys, id, "swarm-attach", owner.Epoch, h.Metrics))
        {
            Assert.True(attached.IsAttached);
            Assert.Equal(owner.Epoch, attached.Epoch);
            var sent = await attached.Signals.SendAsync(peer.Id, SignalTypes.Validation, iteration: 1);
            var result = await attached.Waiter.WaitForAcksAsync([peer.Id], sent.MessageId, TimeSpan.FromSeconds(20));
            Assert.Equal(AckWaitStatus.Completed, result.Status);
        }

        await reading;
        // Disposing the attached instance removed nothing, and no new epoch was taken.
        Assert.True(await h.Database.KeyExistsAsync(Keys.Heartbeat(id)));
        Assert.Equal(owner.Epoch, (long)await h.Database.StringGetAsync(Keys.Epoch(id)));
        Assert.False(owner.IsSuperseded);
    }

    [Fact]
    public async Task Attach_StaleEpoch_SupersededAndNothingWritten()
    {
        await using var h = Harness.Create(server);
        var id = TestIds.New("agent");
        await using var first = await h.StartAsync(id, "swarm-attach");
        var stale = first.Epoch;
        await using var second = await h.StartAsync(id, "swarm-attach"); // the ID was restarted

        var e = await Assert.ThrowsAsync<CoordinatorSupersededException>(() => Coordinator.AttachAsync(h.Redis, h.Keys, id, "swarm-attach", stale));

        Assert.Equal(stale, e.Epoch);
        Assert.Equal(second.Epoch, (long)await h.Database.StringGetAsync(Keys.Epoch(id)));
    }

    [Fact]
    public async Task Attach_NeverStarted_Superseded()
    {
        await using var h = Harness.Create(server);

        await Assert.ThrowsAsync<CoordinatorSupersededException>(() => Coordinator.AttachAsync(h.Redis, h.Keys, TestIds.New("ghost"), "swarm-attach", 1));
    }

    [Fact]
    public async Task Attached_OwnerRestartedMeanwhile_ItsSendIsFenced()
    {
        await using var h = Harness.Create(server);
        var id = TestIds.New("agent");
        await using var owner = await h.StartAsync(id, "swarm-attach");
        await using var peer = await h.StartAsync(TestIds.New("peer"), "swarm-attach");
        await using var attached = await Coordinator.AttachAsync(h.Redis, h.Keys, id, "swarm-attach", owner.Epoch);
        await using var restarted = await h.StartAsync(id, "swarm-attach");

        await Assert.ThrowsAsync<CoordinatorSupersededException>(() => attached.Signals.SendAsync(peer.Id, SignalTypes.Validation, iteration: 1));
        Assert.Equal(0, await h.Database.StreamLengthAsync(Keys.Inbox(peer.Id)));
    }
}
