using Cfn.Coordination.Identity;
using Cfn.Coordination.Redis;
using Cfn.Coordination.Signals;
using Cfn.Coordination.Tests.Infrastructure;

namespace Cfn.Coordination.Tests.Identity;

/// <summary>
/// D7: every public entry point refuses an invalid ID with <see cref="InvalidIdException"/> and writes nothing.
/// Runs alone (DBSIZE is server-wide): the valid coordinators start first, then DBSIZE is taken, then the invalid
/// call is made, then DBSIZE is compared.
/// </summary>
[Collection(IsolatedRedisCollection.Name)]
public sealed class InvalidIdTests(RedisServer server)
{
    public static TheoryData<string, string, string> Cases => new()
    {
        // entry point, bad value, field named in the exception
        { "start-coordinator", "a*b", "coordinatorId" },
        { "start-coordinator", "coord:malicious", "coordinatorId" },
        { "start-coordinator", "", "coordinatorId" },
        { "start-swarm", "swarm 1", "swarmId" },
        { "start-swarm", "../../../etc/passwd", "swarmId" },
        { "send-receiver", "signal*", "receiverId" },
        { "send-receiver", "coord:malicious", "receiverId" },
        { "send-idempotency", "key:1", "idempotencyKey" },
        { "ack-signal", "a::b", "signalId" },
        { "ack-signal", "a*b:c", "signalId" },
        { "ack-sender", "peer*", "senderId" },
        { "wait-target", "peer*", "coordinatorIds" },
        { "wait-target", "a:b", "coordinatorIds" },
        { "wait-signal", ":a", "signalId" },
        { "wait-signal", "a:", "signalId" },
        { "work-create", "../x", "workId" },
        { "work-create", "w 1", "workId" },
        { "work-claim-from", "coord*", "coordinatorId" },
        { "work-claim-id", "w*", "workId" },
        { "work-get", "w:1", "workId" },
        { "is-acknowledged", "a*", "coordinatorId" },
        { "get-ack", "a::b", "signalId" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task EntryPoint_InvalidId_ThrowsAndWritesNothing(string entryPoint, string bad, string field)
    {
        await using var h = Harness.Create(server);
        var swarm = TestIds.New("swarm");
        var c = await h.StartAsync(swarmId: swarm);
        var peer = await h.StartAsync(swarmId: swarm);
        var fresh = TestIds.New("fresh");
        var before = await DbSizeAsync();

        var e = await Assert.ThrowsAsync<InvalidIdException>(() => Invoke(entryPoint, bad, h, c, peer, swarm, fresh));

        var after = await DbSizeAsync();
        Assert.Equal(field, e.Field);
        Assert.Equal(field, e.ParamName);
        Assert.Contains(field, e.Message, StringComparison.Ordinal);
        Assert.False(string.IsNullOrEmpty(e.Rule));
        Assert.Contains(e.Rule, e.Message, StringComparison.Ordinal);
        Assert.Equal(before, after);
        // A start with a bad swarm ID must not even take an epoch for the (valid) coordinator ID.
        Assert.False(await h.Database.KeyExistsAsync(Keys.Epoch(fresh)));
        Assert.False(await h.Database.KeyExistsAsync(Keys.Heartbeat(fresh)));
    }

    [Fact]
    public async Task WaitForAcks_OneInvalidTargetAmongValid_WritesNothingAndLeavesNoWait()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();
        var activityBefore = (string?)await h.Database.StringGetAsync(Keys.Activity(c.Id));
        var before = await DbSizeAsync();

        await Assert.ThrowsAsync<InvalidIdException>(() =>
            c.Waiter.WaitForAcksAsync([TestIds.New("peer"), "bad*", TestIds.New("peer")], TestIds.New("sig"), TimeSpan.FromSeconds(5)));

        Assert.Equal(before, await DbSizeAsync());
        Assert.Equal(activityBefore, (string?)await h.Database.StringGetAsync(Keys.Activity(c.Id)));
        Assert.Equal("idle", c.Status);
    }

    [Fact]
    public async Task SendAsync_InvalidReceiver_CountsValidationFailure()
    {
        await using var h = Harness.Create(server);
        var c = await h.StartAsync();

        await Assert.ThrowsAsync<InvalidIdException>(() => c.Signals.SendAsync("bad*", SignalTypes.Completion, 1));

        Assert.Equal(1, h.Metrics.SignalsFailed.WithLabels(c.Id, SignalTypes.Completion, "validation").Value);
        Assert.Equal(0, h.Metrics.SignalsSent.WithLabels(c.Id, SignalTypes.Completion).Value);
    }

    private static Task Invoke(string entryPoint, string bad, Harness h, Coordinator c, Coordinator peer, string swarm, string fresh) =>
        entryPoint switch
        {
            "start-coordinator" => Coordinator.StartAsync(h.Redis, h.Keys, bad, swarm, h.Metrics, runHeartbeatLoop: false),
            "start-swarm" => Coordinator.StartAsync(h.Redis, h.Keys, fresh, bad, h.Metrics, runHeartbeatLoop: false),
            "send-receiver" => c.Signals.SendAsync(bad, SignalTypes.Completion, 1),
            "send-idempotency" => c.Signals.SendAsync(peer.Id, SignalTypes.Completion, 1, idempotencyKey: bad),
            "ack-signal" => c.Acks.AcknowledgeAsync(bad, peer.Id, SignalTypes.Completion, null, 0),
            "ack-sender" => c.Acks.AcknowledgeAsync(TestIds.New("sig"), bad, SignalTypes.Completion, null, 0),
            "wait-target" => c.Waiter.WaitForAcksAsync([peer.Id, bad], TestIds.New("sig"), TimeSpan.FromSeconds(5)),
            "wait-signal" => c.Waiter.WaitForAcksAsync([peer.Id], bad, TimeSpan.FromSeconds(5)),
            "work-create" => c.Work.CreateAsync(bad),
            "work-claim-from" => c.Work.ClaimAsync(bad, TestIds.New("work")),
            "work-claim-id" => c.Work.ClaimAsync(peer.Id, bad),
            "work-get" => c.Work.GetAsync(bad),
            "is-acknowledged" => c.Acks.IsAcknowledgedAsync(bad, TestIds.New("sig")),
            "get-ack" => c.Acks.GetAckAsync(bad),
            _ => throw new ArgumentOutOfRangeException(nameof(entryPoint)),
        };

    private async Task<long> DbSizeAsync() => (long)await server.Database.ExecuteAsync("DBSIZE");
}
