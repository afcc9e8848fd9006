using Cfn.Coordination.Redis;
using Cfn.Coordination.Swarms;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Swarms;

/// <summary>The parent coordinator's side of escalation (SPEC §2.13, C1/C2, L8) over real Redis pub/sub.</summary>
[Collection(SwarmsCollection.Name)]
public sealed class ReplacementListenerTests(RedisServer server)
{
    [Fact]
    public async Task ReplacementStarted_ParentInTheSwarmLogsReplacementCoordinatorAcknowledged()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        var swarm = TestIds.New("swarm");
        await using var listener = new ReplacementListener(world.Redis, s => s == swarm ? ["parent-1"] : []);
        await listener.StartAsync();
        await world.HostAsync();
        world.Manager().Start();

        var request = await world.RequestAsync(swarm);

        Assert.True(await EventuallyAsync(() => Task.FromResult(listener.Acknowledged == 1)));
        var line = Assert.Single(RecoveryKit.Lines(world.H, "Replacement coordinator acknowledged")).Message;
        Assert.Contains($"old={request.ReplacesCoordinatorId} new={request.NewCoordinatorId} swarm={swarm} by=parent-1", line, StringComparison.Ordinal);
    }

    [Fact]
    public async Task OperatorPublish_OtherSwarmIgnored_MalformedWarned()
    {
        await using var world = await SwarmWorld.CreateAsync(server);
        var swarm = TestIds.New("swarm");
        await using var listener = new ReplacementListener(world.Redis, s => s == swarm ? ["parent-1", "parent-2"] : []);
        await listener.StartAsync();
        var publisher = world.Redis.Multiplexer.GetSubscriber();

        // The playbook's manual step: redis-cli publish swarm:{id}:coordinator:replacement '{…}'.
        await publisher.PublishAsync(Keys.SwarmReplacement(TestIds.New("other")), "{\"oldCoordinatorId\":\"c-1\",\"newCoordinatorId\":\"c-2\"}");
        await publisher.PublishAsync(Keys.SwarmReplacement(swarm), "{\"oldCoordinatorId\":\"c 1\",\"newCoordinatorId\":\"c-2\"}");
        await publisher.PublishAsync(Keys.SwarmReplacement(swarm), "{\"oldCoordinatorId\":\"c-1\",\"newCoordinatorId\":\"c-2\"}");
        await publisher.PublishAsync(Keys.SwarmDead(swarm), "{\"deadCoordinatorId\":\"c-1\"}");

        // Messages of the two channel patterns may be handled in any order: wait for all three outcomes.
        Assert.True(await EventuallyAsync(() => Task.FromResult(
            RecoveryKit.Lines(world.H, "Dead coordinator notice received").Count == 1 && listener.Acknowledged == 1 &&
            RecoveryKit.Lines(world.H, "Malformed replacement message ignored").Count == 1)));
        // A negative check: nothing more arrives (the other swarm's message is ignored), and an ignored message leaves no event to await.
        await Task.Delay(200);
        Assert.Equal(1, listener.Acknowledged);
        Assert.Contains("old=c-1 new=c-2", Assert.Single(RecoveryKit.Lines(world.H, "Replacement coordinator acknowledged")).Message, StringComparison.Ordinal);
        Assert.Single(RecoveryKit.Lines(world.H, "Malformed replacement message ignored"));
    }
}
